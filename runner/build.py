"""Builds the objects a run needs from its composed config: data, loaders, model, optimisers."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.data.augment import BatchAugmentation, make_augmentation
from runner.data.datasets import ImageData
from runner.data.loader import make_loader
from runner.data.sequence_augment import SequenceAugmentation
from runner.errors import RunnerError
from runner.models.base import RunnerModel
from runner.search.cv import fold_split
from runner.training.loop import Schedule

log = logging.getLogger(__name__)


def _instantiate(node: DictConfig, what: str, *args: Any, **kwargs: Any) -> Any:
    """hydra's instantiate, with a user's RunnerError passed through as itself."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, RunnerError):
            raise cause from None
        raise RunnerError(f"Could not build {what} from its config: {cause or exc}") from None


def build_data(cfg: DictConfig) -> ImageData:
    """Instantiate the dataset and write the shape and class count it found back into the config,
    where model configs read them by interpolation."""
    data = _instantiate(cfg.dataset, "the dataset")
    if OmegaConf.select(cfg, "cv.fold") is not None:
        data = fold_split(data, cfg.cv.folds, cfg.cv.fold, cfg.cv.seed)
    with open_dict(cfg):
        cfg.dataset.shape = list(data.shape)
        cfg.dataset.num_classes = data.num_classes
    log.info(
        "Data: %s train / %s val / %s test images of shape %s, %d classes: %s.",
        len(data.train),
        len(data.val),
        len(data.test),
        list(data.shape),
        data.num_classes,
        ", ".join(data.class_names[:20]) + (", ..." if data.num_classes > 20 else ""),
    )
    return data


def build_loaders(
    cfg: DictConfig, data: ImageData, device: torch.device, seed: int, world_size: int = 1
):
    """Train (shuffled by a seeded generator that checkpoints save), val and test loaders; with
    data-parallel training the train loader serves global batches of batch_size x world_size."""
    generator = torch.Generator().manual_seed(seed)
    t = cfg.trainer
    eval_batch = t.eval_batch_size or t.batch_size
    common = {"device": device, "kind": t.loader, "num_workers": t.num_workers}
    train = make_loader(
        data.train,
        t.batch_size * world_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
        **common,
    )
    val = make_loader(data.val, eval_batch, **common)
    test = make_loader(data.test, eval_batch, **common)
    return train, val, test


def build_augmentation(cfg: DictConfig) -> BatchAugmentation | SequenceAugmentation:
    """The augmentation for the loaded data's kind: images [C, H, W] or series [T, C]."""
    shape = OmegaConf.select(cfg, "dataset.shape")
    return make_augmentation(
        OmegaConf.to_container(cfg.regularization.augmentation, resolve=True),
        series=shape is not None and len(shape) == 2,
    )


def build_model(cfg: DictConfig) -> RunnerModel:
    model = _instantiate(cfg.model, "the model")
    if not isinstance(model, RunnerModel):
        raise RunnerError(
            f"model._target_={cfg.model._target_} is not a runner.models.RunnerModel."
        )
    return model


def build_optimizers(cfg: DictConfig, model: RunnerModel) -> dict[str, torch.optim.Optimizer]:
    if cfg.optimizer.get("_target_") is None:  # one optimiser per network (the GAN's G and D)
        make_optimizer = {k: _instantiate(v, f"optimizer.{k}") for k, v in cfg.optimizer.items()}
    else:
        make_optimizer = _instantiate(cfg.optimizer, "the optimizer")
    try:
        return model.configure_optimizers(make_optimizer)
    except ValueError as exc:  # torch validates hyperparameters (betas, momentum, ...)
        raise RunnerError(f"Invalid optimizer settings: {exc}.") from None


def build_schedules(
    cfg: DictConfig, optimizers: dict[str, torch.optim.Optimizer], steps_per_epoch: int
) -> dict[str, Schedule]:
    """One scheduler per optimiser; OneCycle-style schedulers get `steps_per_epoch` filled in."""
    node = cfg.scheduler
    if node is None or node.get("scheduler") is None:
        return {}
    make = _instantiate(node.scheduler, "the scheduler")
    extra = {}
    params = inspect.signature(get_object(node.scheduler._target_)).parameters
    if "steps_per_epoch" in params and node.scheduler.get("steps_per_epoch") is None:
        extra["steps_per_epoch"] = steps_per_epoch
    schedules = {}
    for name, optimizer in optimizers.items():
        try:
            scheduler = make(optimizer, **extra)
        except (ValueError, TypeError) as exc:
            raise RunnerError(f"Invalid scheduler settings: {exc}.") from None
        schedules[name] = Schedule(scheduler, node.interval, node.get("monitor"))
    return schedules


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The run's choices and knobs, flat, for TensorBoard's HParams tab."""
    params: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        for group in ("model", "dataset", "optimizer", "scheduler", "experiment"):
            if choices.get(group) is not None:
                params[group] = choices[group]
    for section in ("model", "dataset", "optimizer", "scheduler", "regularization", "trainer"):
        node = OmegaConf.select(cfg, section)
        if isinstance(node, DictConfig):
            _flatten(OmegaConf.to_container(node, resolve=True), section, params)
    return params


_SKIP = {
    "_target_",
    "_partial_",
    "_recursive_",
    "_convert_",
    "root",
    "path",
    "cache_dir",
    "in_shape",
}


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in _SKIP:
                _flatten(value, f"{prefix}.{key}", out)
    else:
        out[prefix] = (
            "null"
            if node is None
            else node
            if isinstance(node, bool | int | float | str)
            else str(node)
        )
