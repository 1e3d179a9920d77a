"""A finished run as a model: the one way evaluation, sample scoring and transfer reuse a run.

A run is its folder (`checkpoints/best.pt` or `last.pt` inside) or one of its checkpoint files;
every checkpoint carries the run's resolved config, so the model is rebuilt from it exactly.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from runner.errors import RunnerError
from runner.models.base import RunnerModel
from runner.training.checkpoint import load_checkpoint, load_weights

log = logging.getLogger(__name__)

Which = Literal["best", "last"]


@dataclass
class Run:
    model: RunnerModel  # on the CPU, in eval mode, with the checkpoint's weights
    config: DictConfig  # the run's resolved config, as its checkpoint saved it
    checkpoint: Path
    state: dict[str, Any]  # the whole checkpoint (epoch, metrics, ...)


def checkpoint_file(path: str | Path, which: Which = "best") -> Path:
    """`path` itself when it is a file; else the run folder's checkpoints/<which>.pt."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunnerError(
            f"{path} does not exist. Pass the folder of a finished run (it holds checkpoints/) "
            "or one of its checkpoint files."
        )
    file = path / "checkpoints" / f"{which}.pt"
    if not file.is_file():
        found = sorted(p.name for p in (path / "checkpoints").glob("*.pt"))
        raise RunnerError(
            f"{path} is not a finished run of this project: {file} does not exist"
            + (f" (it has {', '.join(found)})." if found else ".")
            + " Pass the folder that runner.train printed as its run folder."
        )
    return file


def load_run(path: str | Path, which: Which = "best") -> Run:
    """Rebuild a run's model from its config and load its weights (`which`: best or last)."""
    file = checkpoint_file(path, which)
    state = load_checkpoint(file)
    config = state.get("config") or {}
    if "_target_" not in (config.get("model") or {}):
        raise RunnerError(f"{file} holds no model config; it was not written by runner.train.")
    config = OmegaConf.create(config)
    try:
        model = instantiate(config.model, **handed_in(config.model._target_))
    except Exception as exc:
        raise RunnerError(
            f"The model of {file} ({config.model._target_}) cannot be rebuilt: {exc}"
        ) from None
    load_weights(model, state, f"{file} does not fit its own config ({config.model._target_})")
    model.class_names = state.get("class_names")
    log.info("Loaded %s (%s, epoch %s).", file, config.model._target_, state.get("epoch"))
    return Run(model.eval(), config, file, state)


def handed_in(target: str) -> dict[str, Any]:
    """What the application hands a family's constructor beside its config: `load_run` (this
    module's), when the constructor takes it (transfer's model.pretrained=<run folder>)."""
    try:
        params = inspect.signature(get_object(target)).parameters
    except Exception:  # an unknown target: instantiate says so in its own words
        return {}
    return {"load_run": load_run} if "load_run" in params else {}
