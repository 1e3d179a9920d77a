"""Builds the objects a run needs from its composed config: data, loaders, model, optimisers."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.data.augment import BatchAugmentation, make_augmentation
from runner.data.datasets import ImageData
from runner.data.folds import fold_split, split_labels
from runner.data.loader import Shard, make_loader
from runner.data.sequence_augment import SequenceAugmentation
from runner.distributed import DistContext
from runner.errors import RunnerError
from runner.models.base import RunnerModel
from runner.runs import handed_in
from runner.training.budget import resolve_budget, resolve_optimizer
from runner.training.loop import Schedule

log = logging.getLogger(__name__)


def _instantiate(node: DictConfig, what: str, *args: Any, **kwargs: Any) -> Any:
    """hydra's instantiate, with a user's RunnerError passed through as itself. The objects get
    plain values (a choice as its string), which their state dicts save as they are."""
    plain = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    try:
        return instantiate(plain, *args, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, RunnerError):
            raise cause from None
        raise RunnerError(f"Could not build {what} from its config: {cause or exc}") from None


def build_data(cfg: DictConfig, processes: int = 1) -> ImageData:
    """Instantiate the dataset and write the shape and class count it found back into the config,
    where model configs read them by interpolation; and the batch size and epochs left auto,
    sized for its training split shared by `processes` processes (runner.training.budget)."""
    data = _instantiate(cfg.dataset, "the dataset")
    if OmegaConf.select(cfg, "cv.fold") is not None:
        data = fold_split(data, cfg.cv.folds, cfg.cv.fold, cfg.cv.seed)
    with open_dict(cfg):
        cfg.dataset.shape = list(data.shape)
        cfg.dataset.num_classes = data.num_classes
    check_classes(cfg, data)
    if OmegaConf.select(cfg, "model._target_"):
        resolve_budget(cfg, len(data.train), processes)
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


def check_classes(cfg: DictConfig, data: ImageData) -> None:
    """Before training: as many classes as the model family needs, and every label a class the
    model has an output for (read from the splits' label lists, no image decoded)."""
    target = OmegaConf.select(cfg, "model._target_")
    needed = getattr(get_object(target), "min_classes", 1) if target else 1
    if data.num_classes < needed:
        raise RunnerError(
            f"model {target} needs at least {needed} classes, but the dataset has "
            f"{data.num_classes} ({', '.join(data.class_names) or 'none'}). Add a folder of "
            "images per class, or train a model that needs no labels on it (model=ae, deep_ae, "
            "vae or gan)."
        )
    outputs = OmegaConf.select(cfg, "model.num_classes", default=None)
    limit = min(data.num_classes, outputs) if isinstance(outputs, int) else data.num_classes
    for name in ("train", "val", "test"):
        labels = split_labels(getattr(data, name))
        bad = sorted({int(v) for v in labels[(labels < 0) | (labels >= limit)]})
        if bad and limit < data.num_classes:
            raise RunnerError(
                f"The {name} split has labels {bad[:10]} outside 0..{limit - 1}: "
                f"model.num_classes={outputs}, but the dataset has {data.num_classes} classes. "
                "Leave model.num_classes at ${dataset.num_classes}."
            )
        if bad:
            raise RunnerError(
                f"The {name} split has labels {bad[:10]} outside 0..{limit - 1}, the "
                f"{data.num_classes} classes the dataset names. Fix the dataset's labels or its "
                "num_classes."
            )


def build_loaders(
    cfg: DictConfig,
    data: ImageData,
    device: torch.device,
    seed: int,
    ddp: DistContext | None = None,
):
    """Train (shuffled in an order drawn from seed + epoch), val and test loaders. With
    data-parallel training each rank reads its own shard of every split, `trainer.batch_size`
    examples per step (a global batch of batch_size x processes)."""
    t = cfg.trainer
    shard = Shard(ddp.rank, ddp.world_size) if ddp else Shard()
    for name in ("val", "test"):
        if len(getattr(data, name)) < shard.world_size:
            raise RunnerError(
                f"The {name} split has {len(getattr(data, name))} examples, fewer than the "
                f"{shard.world_size} processes that share it. Use fewer processes."
            )
    eval_batch = t.eval_batch_size or t.batch_size
    common = {"device": device, "kind": t.loader, "num_workers": t.num_workers, "shard": shard}
    train = make_loader(data.train, t.batch_size, shuffle=True, drop_last=True, seed=seed, **common)
    val = make_loader(data.val, eval_batch, **common)
    test = make_loader(data.test, eval_batch, **common)
    return train, val, test


def build_eval_loader(cfg: DictConfig, split, device: torch.device):
    """One process's loader over a whole split in order, unaugmented, as the test pass reads
    it: the test split for evaluation, the training split for the baselines fitted on it."""
    t = cfg.trainer
    batch = t.eval_batch_size or t.batch_size
    return make_loader(split, batch, device, t.loader, num_workers=t.num_workers)


def build_augmentation(cfg: DictConfig) -> BatchAugmentation | SequenceAugmentation:
    """The augmentation for the loaded data's kind: images [C, H, W] or series [T, C]."""
    shape = OmegaConf.select(cfg, "dataset.shape")
    return make_augmentation(
        OmegaConf.to_container(cfg.regularization.augmentation, resolve=True, enum_to_str=True),
        series=shape is not None and len(shape) == 2,
    )


def build_model(cfg: DictConfig) -> RunnerModel:
    model = _instantiate(cfg.model, "the model", **handed_in(cfg.model._target_))
    if not isinstance(model, RunnerModel):
        raise RunnerError(
            f"model._target_={cfg.model._target_} is not a runner.models.RunnerModel."
        )
    return model


def build_optimizers(cfg: DictConfig, model: RunnerModel) -> dict[str, torch.optim.Optimizer]:
    """The family's optimisers (one per network for the GAN) from the configured partial, its
    keys left null filled from the family's recipe."""
    resolve_optimizer(cfg)
    make_optimizer = _instantiate(cfg.optimizer, "the optimizer")
    try:
        return model.configure_optimizers(make_optimizer)
    except ValueError as exc:  # torch validates hyperparameters (betas, momentum, ...)
        raise RunnerError(f"Invalid optimizer settings: {exc}.") from None


def build_schedules(
    cfg: DictConfig, optimizers: dict[str, torch.optim.Optimizer], steps_per_epoch: int
) -> dict[str, Schedule]:
    """One scheduler per optimiser. OneCycle-style schedulers get `steps_per_epoch` filled in,
    and a peak `max_lr` left unset becomes each param group's own learning rate (so a GAN's two
    optimisers and a fine-tuned backbone's lower rate keep their ratios)."""
    node = cfg.scheduler
    if node is None or node.get("scheduler") is None:
        return {}
    make = _instantiate(node.scheduler, "the scheduler")
    extra = {}
    params = inspect.signature(get_object(node.scheduler._target_)).parameters
    if "steps_per_epoch" in params and node.scheduler.get("steps_per_epoch") is None:
        extra["steps_per_epoch"] = steps_per_epoch
    peak_from_optimizer = "max_lr" in params and node.scheduler.get("max_lr") is None
    schedules = {}
    for name, optimizer in optimizers.items():
        if peak_from_optimizer:
            extra["max_lr"] = [group["lr"] for group in optimizer.param_groups]
        try:
            scheduler = make(optimizer, **extra)
        except (ValueError, TypeError) as exc:
            raise RunnerError(f"Invalid scheduler settings: {exc}.") from None
        schedules[name] = Schedule(scheduler, node.interval, node.get("monitor"))
    return schedules
