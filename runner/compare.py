"""`python -m runner.compare runs=[multirun/<date>/<time>,outputs/<date>/<time>] [out=FOLDER]`

The comparison every sweep ends with, for any run and sweep folders (two runs made a day apart, a
sweep and a run): summary.csv and summary.md, one row per run, best first, led by what differs
between them; curves.png with every run's optimised metric and loss per epoch. Runs of different
tasks (different optimized_metric) cannot be ranked together and are refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from runner.config import CONF_DIR
from runner.console import handle_user_errors, reported
from runner.errors import RunnerError


@dataclass
class CompareConfig:
    """The options of runner.compare (conf/compare.yaml)."""

    runs: list[str] = field(default_factory=list)  # run folders and sweep folders
    out: str | None = None  # the report's folder; None: compare/<date>/<time>


ConfigStore.instance().store(name="compare_schema", node=CompareConfig)
if not OmegaConf.has_resolver("runner.or"):
    # hydra.run.dir is `out` when given: the report's folder is Hydra's output folder.
    OmegaConf.register_new_resolver("runner.or", lambda value, default: value or default)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="compare")
@reported
def compare(cfg: DictConfig) -> None:
    """Hydra's task function: read the runs, write the report, print the best run."""
    from runner.reports import best_run_text, write_report

    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        comparison = write_report([Path(r) for r in cfg.runs], out)
    except BaseException:
        # A refused comparison leaves no empty folder behind (nor compare/<date>/ around it).
        for folder in [out] if cfg.out else [out, out.parent, out.parent.parent]:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    print(best_run_text(comparison, out), flush=True)


def check_quoting(argv: list[str]) -> None:
    """Sweep folders are named `3_optimizer.lr=0.01,model.latent_dim=8`: in a Hydra list such a
    name must be quoted, and Hydra's own parse error does not say so."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "runs" and "=" in value and not any(q in value for q in "'\""):
            raise RunnerError(
                f"{arg}: a folder name with = or , in it goes in quotes inside the list, with "
                "the whole argument quoted for the shell: "
                "runs=\"['multirun/<date>/<time>/0_optimizer.lr=0.01','outputs/exp1']\"."
            )


def main() -> None:
    """Console entry point (runner-compare): a mistake is one paragraph and exit code 2."""
    try:
        check_quoting(sys.argv[1:])
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    handle_user_errors(compare)


if __name__ == "__main__":
    main()
