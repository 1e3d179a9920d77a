"""What the entrypoints that reuse a finished run share (`runner.eval`, `runner.sample`,
`runner.predict`): their own options on the command line beside Hydra's overrides, a check that
`ckpt_path` is a run before Hydra creates a folder, and the run's config with the overrides."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from runner.config import register_configs
from runner.console import handle_user_errors
from runner.errors import RunnerError
from runner.runs import Run, checkpoint_file, load_run
from runner.validation import validate

GROUPS = ("model", "dataset", "optimizer", "scheduler", "regularization", "trainer", "logger")


@dataclass(frozen=True)
class Option:
    """One `key=value` of an entrypoint (not a key of the run's config)."""

    default: Any
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    help: str = ""

    def read(self, key: str, text: str) -> Any:
        if self.choices is not None and text not in self.choices:
            raise RunnerError(
                f"{key}={text!r} is not valid: choose one of {', '.join(self.choices)}."
            )
        try:
            return self.parse(text)
        except ValueError:
            raise RunnerError(f"{key}={text!r} is not valid: {self.help}.") from None


def positive_int(text: str) -> int:
    """An Option parser: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


# (run, option values, Hydra overrides) -> None; raises RunnerError when the run cannot serve.
Check = Callable[[Run, dict[str, Any], list[str]], None]


def read_options(spec: dict[str, Option], argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(this entrypoint's option values, the arguments left for Hydra)."""
    values = {key: option.default for key, option in spec.items()}
    rest = []
    for arg in argv:
        key, _, text = arg.partition("=")
        if key in spec:
            values[key] = spec[key].read(key, text)
        else:
            rest.append(arg)
    return values, rest


def start(
    app: Callable[[], object],
    spec: dict[str, Option],
    values: dict[str, Any],
    usable: Check | None = None,
) -> None:
    """Console entry: fill `values` from the command line, check what can be checked without
    Hydra (the run exists, `usable(run, values)`), then run the Hydra `app` with the rest; a
    user's mistake is one paragraph on stderr and exit code 2, with nothing written."""
    register_configs()  # the typed schemas conf/config.yaml names
    try:
        parsed, rest = read_options(spec, sys.argv[1:])
        runs = [a.split("=", 1)[1] for a in rest if a.startswith("ckpt_path=")]
        sweep = any(a in ("-m", "--multirun") for a in rest)
        if runs and "," not in runs[-1] and not sweep:  # a sweep's runs are checked per job
            checkpoint_file(runs[-1], parsed.get("checkpoint", "best"))
            if usable is not None:
                run = load_run(runs[-1], parsed.get("checkpoint", "best"))
                usable(run, parsed, [a for a in rest if not a.startswith("-")])
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    values.update(parsed)
    sys.argv = [sys.argv[0], *rest]
    handle_user_errors(app)


def ckpt_path_of(cfg: DictConfig, entrypoint: str) -> str:
    if not cfg.get("ckpt_path"):
        raise RunnerError(
            f"runner.{entrypoint} needs ckpt_path=<run folder> (or one of its checkpoint files): "
            f"python -m runner.{entrypoint} ckpt_path=outputs/<date>/<time>"
        )
    return cfg.ckpt_path


def with_overrides(saved: DictConfig, composed: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's saved config, with what the command line names taken from the composed one: a
    group choice (`dataset=fashion_mnist`) replaces the whole node, a key only its value."""
    cfg = saved.copy()
    with open_dict(cfg):
        for override in overrides:
            key = override.split("=", 1)[0].lstrip("+~")
            if key == "ckpt_path" or key.split(".")[0] == "hydra":  # not keys of the run's config
                continue
            value = OmegaConf.select(composed, key)
            OmegaConf.update(cfg, key, value, merge=key not in GROUPS, force_add=True)
    validate(cfg, resolved=True)
    return cfg


CONFIG_HEADER = "# The reused run's config with this command's overrides applied.\n"


def prepare(composed: DictConfig, entrypoint: str, which: str) -> tuple[Run, DictConfig, Path]:
    """Inside an entrypoint's Hydra job: (the run, its config with the command's overrides, the
    job's output folder); that config replaces Hydra's copy in <output>/.hydra/config.yaml."""
    from hydra.core.hydra_config import HydraConfig

    run = load_run(ckpt_path_of(composed, entrypoint), which)
    cfg = with_overrides(run.config, composed, HydraConfig.get().overrides.task)
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / ".hydra" / "config.yaml").write_text(CONFIG_HEADER + OmegaConf.to_yaml(cfg))
    return run, cfg, out
