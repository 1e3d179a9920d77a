"""A family's recipe (steps, batch size, learning rate) turned into a run's settings for the data
at hand: the same defaults learn on 1,300 images and on 50,000.

`trainer.batch_size`, `trainer.max_epochs` and the optimizer's `lr` (and `betas`) default to null
(auto): `resolve_optimizer` fills the optimizer's keys when it is built, `resolve_budget` the
batch size and epochs once the data is loaded. Auto batch size: the recipe's, halved until an
epoch has at least `MIN_STEPS_PER_EPOCH` steps (not below the recipe's minimum). Auto epochs:
enough for the recipe's steps (or `trainer.max_steps`). A value the user or a preset sets is kept
as it is. The resolved values are written into the run's config, so the checkpoint, the HParams
row and any reuse of the run see them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from hydra.utils import get_object
from omegaconf import DictConfig, open_dict

from runner.models.base import Recipe

log = logging.getLogger(__name__)

MIN_STEPS_PER_EPOCH = 32


@dataclass(frozen=True)
class Budget:
    batch_size: int
    max_epochs: int
    steps_per_epoch: int


def plan(
    recipe: Recipe,
    train_examples: int,
    batch_size: int | None = None,
    max_epochs: int | None = None,
    max_steps: int | None = None,
) -> tuple[int, int, int]:
    """(batch size, epochs, steps per epoch) for `train_examples` per process; given values kept.
    `max_steps` replaces the recipe's steps (rounded up to whole epochs)."""
    if batch_size is None:
        batch_size = recipe.batch_size
        while batch_size > recipe.min_batch_size and train_examples < batch_size * (
            MIN_STEPS_PER_EPOCH
        ):
            batch_size //= 2
        batch_size = max(1, min(batch_size, train_examples))
    # The loaders drop a last partial batch when there is more than one batch.
    steps = train_examples // batch_size if train_examples > batch_size else 1
    if max_epochs is None:
        wanted = max_steps or recipe.steps
        max_epochs = min(recipe.max_epochs, max(1, math.ceil(wanted / steps)))
    return batch_size, max_epochs, steps


def recipe_of(cfg: DictConfig) -> Recipe:
    return getattr(get_object(cfg.model._target_), "recipe", Recipe())


def resolve_budget(cfg: DictConfig, train_examples: int, processes: int = 1) -> Budget:
    """Fill the run's auto (null) batch size and epochs from its family's recipe, for
    `train_examples` training examples shared by `processes` processes; log what was chosen."""
    recipe, t = recipe_of(cfg), cfg.trainer
    auto = [k for k in ("batch_size", "max_epochs") if t.get(k) is None]
    per_process = max(1, train_examples // processes)
    batch, epochs, steps = plan(
        recipe, per_process, t.get("batch_size"), t.get("max_epochs"), t.get("max_steps")
    )
    with open_dict(cfg):
        t.batch_size, t.max_epochs = batch, epochs
    if auto:
        log.info(
            "Training budget (%s: %d optimiser steps) for %d training examples%s: %s; "
            "%d steps per epoch, %d in all.",
            "trainer.max_steps"
            if t.get("max_steps")
            else f"{cfg.model._target_.rsplit('.', 1)[-1]}'s recipe",
            t.get("max_steps") or recipe.steps,
            train_examples,
            f" over {processes} processes" if processes > 1 else "",
            ", ".join(f"trainer.{k}={t[k]}" for k in auto),
            steps,
            steps * epochs,
        )
    return Budget(batch, epochs, steps)


def resolve_optimizer(cfg: DictConfig) -> dict:
    """Fill the optimizer keys left null (auto) from the family's recipe; a key it does not name
    is dropped, so torch's own default applies. Returns what was filled."""
    recipe, filled = recipe_of(cfg), {}
    with open_dict(cfg):
        for key in [k for k, v in cfg.optimizer.items() if v is None]:
            if key in recipe.optimizer:
                value = recipe.optimizer[key]
                cfg.optimizer[key] = list(value) if isinstance(value, tuple) else value
                filled[key] = value
            else:
                del cfg.optimizer[key]
    if filled:
        log.info(
            "Optimizer settings from %s's recipe: %s.",
            cfg.model._target_.rsplit(".", 1)[-1],
            ", ".join(f"optimizer.{k}={v}" for k, v in filled.items()),
        )
    return filled
