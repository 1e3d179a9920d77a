"""What the entrypoints that reuse a finished run share (`runner.eval`, `runner.sample`,
`runner.predict`, `runner.evaluate_samples`): their own options are Hydra config like every other
key (runner/entry_config.py, conf/<entrypoint>.yaml); the run, the options and the data they name
are checked once Hydra has composed the config, before it makes the job's folder; and the job gets
the run's saved config with the command's overrides."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.config import CONF_DIR, RunConfig
from runner.console import exit_on_user_error, handle_user_errors
from runner.entry_config import OPTIONS, register_entry_configs
from runner.errors import RunnerError
from runner.runs import Run, load_run
from runner.validation import check_options, validate

GROUPS = ("model", "dataset", "optimizer", "scheduler", "regularization", "trainer", "logger")
RUN_KEYS = frozenset(f.name for f in dataclasses.fields(RunConfig))


def start(app: Callable[[], object]) -> None:
    """Console entry: run the Hydra `app`; a user's mistake is one paragraph on stderr and exit
    code 2 (before anything is written when the run, the options or the data are wrong)."""
    register_entry_configs()  # the typed schemas conf/<entrypoint>.yaml names
    handle_user_errors(app)


@dataclass
class Reuse:
    """A finished run as one command sees it."""

    run: Run
    config: DictConfig  # the run's saved config with the command's overrides
    options: Any  # the entrypoint's options (runner/entry_config.py), checked


def reuse(composed: DictConfig, entrypoint: str, overrides: Sequence[str]) -> Reuse:
    """The run that `ckpt_path` names, its config with `overrides`, and the entrypoint's options;
    raises RunnerError when the run cannot serve this command (`runner.<entrypoint>.usable`)."""
    options = check_options(composed, OPTIONS[entrypoint])
    run = load_run(ckpt_path_of(composed, entrypoint), str(options.checkpoint))
    cfg = with_overrides(run.config, composed, overrides)
    importlib.import_module(f"runner.{entrypoint}").usable(run, cfg, options)
    return Reuse(run, cfg, options)


class CheckBeforeStart(Callback):
    """Hydra callback of a single run (conf/<entrypoint>.yaml): `reuse` once the config is
    composed, so that a mistake stops the command before Hydra makes the job's folder. A sweep's
    runs are checked in their jobs."""

    def __init__(self, entrypoint: str) -> None:
        self.entrypoint = entrypoint

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        logging.disable(logging.INFO)  # a mistake's paragraph is all that is printed
        try:
            reuse(config, self.entrypoint, config.hydra.overrides.task)
        except Exception as exc:
            exit_on_user_error(exc)  # Hydra would turn an exception here into a warning
            raise
        finally:
            logging.disable(logging.NOTSET)


def ckpt_path_of(cfg: DictConfig, entrypoint: str) -> str:
    if not cfg.get("ckpt_path"):
        raise RunnerError(
            f"runner.{entrypoint} needs ckpt_path=<run folder> (or one of its checkpoint files): "
            f"python -m runner.{entrypoint} ckpt_path=outputs/<date>/<time>"
        )
    return cfg.ckpt_path


def with_overrides(saved: DictConfig, composed: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The run's saved config, with what the command line names taken from the composed one: a
    group choice (`dataset=fashion_mnist`) replaces the whole node, a key only its value. The
    entrypoint's own options, `ckpt_path` and `hydra.*` are not keys of the run's config."""
    cfg = saved.copy()
    with open_dict(cfg):
        for override in overrides:
            key = override.split("=", 1)[0].lstrip("+~")
            if key == "ckpt_path" or key.split(".")[0] not in RUN_KEYS:
                continue
            value = OmegaConf.select(composed, key)
            OmegaConf.update(cfg, key, value, merge=key not in GROUPS, force_add=True)
    validate(cfg, resolved=True)
    return cfg


CONFIG_HEADER = "# The reused run's config with this command's overrides applied.\n"


def prepare(composed: DictConfig, entrypoint: str) -> tuple[Reuse, Path]:
    """Inside an entrypoint's Hydra job: the reused run (see `reuse`) and the job's output
    folder; the run's config with the overrides replaces Hydra's copy in .hydra/config.yaml."""
    from hydra.core.hydra_config import HydraConfig

    found = reuse(composed, entrypoint, HydraConfig.get().overrides.task)
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / ".hydra" / "config.yaml").write_text(CONFIG_HEADER + OmegaConf.to_yaml(found.config))
    return found, out


def compose_entry_config(entrypoint: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m runner.<entrypoint> <overrides>` composes (without Hydra's node), for
    tests and notebooks."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_entry_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(entrypoint, overrides=list(overrides))
