"""The training loop: epochs, validation, schedulers, early stopping, checkpoints, logging.

Nothing here knows which model family it trains: a family's `training_step` does its own
optimisation through the `OptimizerStep` it is handed.

Under data-parallel training every rank runs this loop on its shard. Metrics are sums and counts
all-reduced over the ranks, so every decision (best checkpoint, early stopping, schedulers, NaN
stops, pruning) is taken on numbers all ranks share; whole-set extras run once on rank 0 and are
broadcast. Only rank 0 writes (its `logger` and `checkpoint_dir` are set, the others' are None).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from runner import distributed
from runner.config import TrainerConfig
from runner.data.loader import BatchPreprocessor
from runner.errors import RunnerError, TrainingDiverged
from runner.models.base import RunnerModel
from runner.models.capabilities import Encoder
from runner.training.checkpoint import load_weights, save_checkpoint
from runner.training.device import rng_state, set_rng_state
from runner.training.early_stopping import EarlyStopping
from runner.training.layer_stats import LayerStats
from runner.training.scoring import SampleScorer
from runner.training.step import OptimizerStep
from runner.training.tensorboard import TensorBoardLogger

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class Schedule:
    """A learning-rate scheduler and when it steps: per `epoch` or per `step`; `monitor` feeds
    ReduceLROnPlateau."""

    scheduler: Any
    interval: str = "epoch"
    monitor: str | None = None


@dataclass
class FitResult:
    best_metrics: dict[str, float]
    best_epoch: int
    epochs_trained: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0  # training passes only (no validation), this session


class MetricMeans:
    """Batch-size-weighted means of metric tensors, kept on the device until `compute`, where
    the sums and counts of every rank are added up: all ranks get the whole split's means."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor], n: int) -> None:
        for name, value in metrics.items():
            value = value.detach().float() * n
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += n

    def compute(self, prefix: str) -> dict[str, float]:
        names = sorted(self.sums)  # the same order on every rank
        if not names:
            return {}
        totals = torch.stack([self.sums[k].reshape(()) for k in names])
        totals = torch.cat([totals, totals.new_tensor([self.count])])
        totals = distributed.all_reduce_sum(totals).tolist()
        count = max(totals[-1], 1)
        return {f"{prefix}/{k}": v / count for k, v in zip(names, totals[:-1])}


class Trainer:
    """Runs the epochs of one run. `settings` is the `trainer` config group as one piece, so a new
    trainer option is a field of TrainerConfig and the code here that reads it."""

    def __init__(
        self,
        settings: TrainerConfig,
        *,
        step: OptimizerStep,
        preprocess: BatchPreprocessor,
        monitor: str,
        mode: str = "min",
        early_stopping: EarlyStopping | None = None,
        checkpoint_dir: Path | None = None,
        logger: TensorBoardLogger | None = None,
        config: dict | None = None,
        callbacks: list[EpochCallback] | None = None,
        layer_stats: LayerStats | None = None,
    ) -> None:
        self.settings = settings
        self.max_epochs = settings.max_epochs
        self.step = step
        self.preprocess = preprocess
        self.best = EarlyStopping(monitor, mode)
        self.early_stopping = early_stopping
        self.checkpoint_dir = checkpoint_dir
        self.logger = logger
        self.config = config or {}
        self.callbacks = callbacks or []
        self.layer_stats = layer_stats  # on rank 0 with logger.layer_stats=true
        self.is_main = distributed.rank() == 0
        self.world_size = distributed.world_size()
        self.epoch = 0
        self.global_step = 0
        self.train_time_s = 0.0
        self.best_epoch = -1
        self.best_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []

    # -----------------------------------------------------------------------------------------
    def fit(
        self,
        model: RunnerModel,
        train_loader,
        val_loader,
        optimizers: dict[str, torch.optim.Optimizer],
        schedules: dict[str, Schedule],
        resume: dict | None = None,
    ) -> FitResult:
        steps = min(len(train_loader), self.settings.limit_train_batches or len(train_loader))
        self._hand_in(model)
        model.on_fit_start(_whole(train_loader), _whole(val_loader), self.preprocess, steps)
        if resume is not None:
            self._restore(resume, model, optimizers, schedules)
        image_batch = self._image_batch(val_loader)
        stopped_early = self.early_stopping is not None and self.early_stopping.should_stop
        while self.epoch < self.max_epochs and not stopped_early:
            started = time.perf_counter()
            train_metrics = self._train_epoch(model, train_loader, optimizers, schedules)
            self.train_time_s += time.perf_counter() - started
            val_metrics = self.evaluate(model, val_loader, "val")
            metrics = {**train_metrics, **val_metrics, **self._learning_rates(optimizers)}
            self._check_monitor(metrics)
            for schedule in schedules.values():
                if schedule.interval == "epoch":
                    self._step_scheduler(schedule, metrics)
            improved = self.best.update(metrics[self.best.monitor])
            if improved:
                self.best_epoch, self.best_metrics = self.epoch, val_metrics
            if self.early_stopping is not None:
                self.early_stopping.update(metrics[self.early_stopping.monitor])
                stopped_early = self.early_stopping.should_stop
            self.history.append({"epoch": self.epoch, **metrics})
            self._log_epoch(model, metrics, image_batch)
            self.epoch += 1
            self._save(model, optimizers, schedules, best=improved)
            log.info(
                "epoch %d/%d  %s  (%.1f s)",
                self.epoch,
                self.max_epochs,
                "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/lr" not in k),
                time.perf_counter() - started,
            )
            model.on_train_epoch_end(metrics)
            for callback in self.callbacks:  # e.g. pruning: decided once, obeyed by every rank
                distributed.run_on_main(partial(callback, self.epoch, metrics))
        if stopped_early:
            log.info(
                "Early stopping: %s did not improve for %d epochs.",
                self.early_stopping.monitor,
                self.early_stopping.wait,
            )
        return FitResult(
            self.best_metrics,
            self.best_epoch,
            self.epoch,
            stopped_early,
            self.history,
            self.train_time_s,
        )

    def _train_epoch(self, model, loader, optimizers, schedules) -> dict[str, float]:
        model.train()
        model.on_train_epoch_start(self.epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.epoch)  # the epoch's seeded order (and this rank's shard)
        means = MetricMeans()
        limit = self.settings.limit_train_batches
        total = len(loader) if limit is None else min(len(loader), limit)
        bar = tqdm(
            loader,
            total=total,
            desc=f"epoch {self.epoch + 1}/{self.max_epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=not (self.settings.progress_bar and self.is_main),
        )
        for i, batch in enumerate(bar):
            if i >= total:
                break
            x, y = self.preprocess(batch, train=True)
            stats = self.layer_stats if i == 0 else None  # each epoch's first step
            with stats.record(model, self.step, self.global_step + 1) if stats else nullcontext():
                losses = model.training_step((x, y), optimizers, self.step)
            means.add(losses, len(x))
            self.global_step += 1
            for schedule in schedules.values():
                if schedule.interval == "step":
                    schedule.scheduler.step()
            if self.global_step % self.settings.log_every_n_steps == 0:
                # The mean over ranks: a NaN on any rank stops all of them at this same step.
                loss = distributed.all_reduce_sum(losses["loss"].detach().float().clone())
                loss = loss.item() / self.world_size
                self._check_finite("train/loss", loss)
                bar.set_postfix(loss=f"{loss:.4g}")
        bar.close()
        # DDP hands rank 0's batch-norm statistics to the others at each forward; take them now,
        # so validation, checkpoints and the next epoch agree on every rank.
        distributed.broadcast_buffers(model)
        metrics = means.compute("train")
        for name, value in metrics.items():
            self._check_finite(name, value)
        return metrics

    @torch.no_grad()
    def evaluate(self, model: RunnerModel, loader, split: str) -> dict[str, float]:
        """Mean metrics over a loader (every rank's shard), prefixed `split/`; `test` uses the
        family's test_step. The family's whole-set validation extras (the GAN's FD) run on rank 0
        over the whole split."""
        model.eval()
        means = MetricMeans()
        run = model.test_step if split == "test" else model.validation_step
        for batch in tqdm(
            loader,
            desc=split,
            leave=False,
            dynamic_ncols=True,
            disable=not (self.settings.progress_bar and self.is_main),
        ):
            x, y = self.preprocess(batch, train=False)
            with self.step.autocast():
                means.add(run((x, y)), len(x))
        metrics = means.compute(split)
        if split == "val":
            metrics.update(
                distributed.run_on_main(
                    lambda: model.on_validation_end(_whole(loader), self.preprocess)
                )
            )
        return metrics

    @torch.no_grad()
    def test(self, model: RunnerModel, loader, train_loader=None) -> dict[str, float]:
        """`test/*` means, then the family's whole-test-set metrics and pictures, and given the
        training split the baselines the model must beat and its codes' metrics (rank 0)."""
        self._hand_in(model)
        metrics = self.evaluate(model, loader, "test")
        model.eval()

        def extras() -> dict[str, float]:
            extra = model.on_test_end(_whole(loader), self.preprocess, self.logger)
            if self.logger is not None and isinstance(model, Encoder):
                from runner.metrics.projector import log_latent_projector

                # Test-set codes with labels (and thumbnails) for TensorBoard's projector.
                log_latent_projector(
                    model.encode_images,
                    _whole(loader),
                    self.preprocess,
                    self.logger,
                    model.class_names,
                )
            if train_loader is not None:
                for hook, what in (
                    (model.baselines, "Baselines"),
                    (model.code_metrics, "Code metrics"),
                ):
                    started = time.perf_counter()
                    found = hook(_whole(train_loader), _whole(loader), self.preprocess)
                    extra.update({f"test/{k}": v for k, v in found.items()})
                    if found:
                        log.info(
                            "%s on the test split (%.1f s): %s",
                            what,
                            time.perf_counter() - started,
                            "  ".join(f"{k}={v:.4g}" for k, v in found.items()),
                        )
            return extra

        metrics.update(distributed.run_on_main(extras))
        return metrics

    def _hand_in(self, model: RunnerModel) -> None:
        """What the family is lent for its whole-set work: a progress bar for long evaluation
        loops, and the sample scorer (FD and coverage in a classifier run's features)."""
        model.progress = partial(
            tqdm,
            leave=False,
            dynamic_ncols=True,
            disable=not (self.settings.progress_bar and self.is_main),
        )
        if model.scorer is None:
            model.scorer = SampleScorer(next(model.parameters(), torch.empty(0)).device)

    # -----------------------------------------------------------------------------------------
    def _check_finite(self, name: str, value: float) -> None:
        if math.isfinite(value):
            return
        last = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        kept = f" The last good checkpoint is {last}." if last and last.exists() else ""
        raise TrainingDiverged(
            f"{name} became {value} in epoch {self.epoch + 1} (step {self.global_step}); training "
            f"stopped.{kept} Lower optimizer.lr, set regularization.grad_clip, or use "
            "trainer.precision=32."
        )

    def _check_monitor(self, metrics: dict[str, float]) -> None:
        wanted = [self.best.monitor] + (
            [self.early_stopping.monitor] if self.early_stopping else []
        )
        for name in wanted:
            if name not in metrics:
                raise RunnerError(
                    f"The monitored metric {name!r} is not logged by this model. Set "
                    f"optimized_metric (or regularization.early_stopping.monitor) to one of: "
                    f"{', '.join(sorted(metrics))}."
                )
            self._check_finite(name, metrics[name])

    @staticmethod
    def _step_scheduler(schedule: Schedule, metrics: dict[str, float]) -> None:
        if schedule.monitor is not None:
            schedule.scheduler.step(metrics[schedule.monitor])
        else:
            schedule.scheduler.step()

    @staticmethod
    def _learning_rates(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        if len(optimizers) == 1:
            (opt,) = optimizers.values()
            return {"train/lr": opt.param_groups[0]["lr"]}
        return {f"train/lr_{name}": opt.param_groups[0]["lr"] for name, opt in optimizers.items()}

    def _image_batch(self, loader) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.logger is None or not self.logger.settings.log_images:
            return None
        x, y = self.preprocess(next(iter(_whole(loader))), train=False)
        n = self.logger.settings.num_images
        return x[:n], y[:n]

    def _log_epoch(self, model: RunnerModel, metrics: dict[str, float], image_batch) -> None:
        if self.logger is None:
            return
        if not self.history[:-1]:  # the first epoch logged: charts for the metrics it has
            self.logger.layout(metrics)
        self.logger.scalars(metrics, self.epoch)
        every = self.logger.settings.image_every_n_epochs or max(1, round(self.max_epochs / 10))
        shown = self.epoch % every == 0 or self.epoch == self.max_epochs - 1
        if image_batch is not None and shown:
            model.eval()
            # Image noise must not shift the training random stream: logging never changes results.
            with torch.random.fork_rng(
                devices=[image_batch[0].device] if image_batch[0].is_cuda else []
            ):
                self.logger.images(
                    {f"val/{k}": v for k, v in model.images(*image_batch).items()}, self.epoch
                )
        self.logger.flush()

    # -----------------------------------------------------------------------------------------
    def state_dict(self, model, optimizers, schedules, rng_by_rank: list[dict]) -> dict:
        """Everything to continue exactly: `rng` is rank 0's random streams, `rng_by_rank` every
        rank's (the loaders' order follows from the seed and the epoch)."""
        return {
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.scheduler.state_dict() for k, s in schedules.items()},
            "scalers": self.step.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best": self.best.state_dict(),
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping else None,
            "history": self.history,
            "class_names": getattr(model, "class_names", None),
            "rng": rng_by_rank[0],
            "rng_by_rank": rng_by_rank,
            "config": self.config,
        }

    def _save(self, model, optimizers, schedules, best: bool) -> None:
        rng_by_rank = distributed.gather_objects(rng_state())  # every rank takes part
        if self.checkpoint_dir is None:
            return
        state = self.state_dict(model, optimizers, schedules, rng_by_rank)
        if best:
            save_checkpoint(state, self.checkpoint_dir / "best.pt")
        save_checkpoint(state, self.checkpoint_dir / "last.pt")

    def _restore(self, state, model, optimizers, schedules) -> None:
        load_weights(
            model,
            state,
            "The checkpoint does not fit this model (trained with another model or dataset?)",
        )
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, schedule in schedules.items():
            if name in state["schedulers"]:
                schedule.scheduler.load_state_dict(state["schedulers"][name])
        self.step.load_state_dict(state["scalers"])
        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.best.load_state_dict(state["best"])
        self.best_epoch = state["best_epoch"]
        self.best_metrics = dict(state["best_metrics"])
        if self.early_stopping is not None and state["early_stopping"] is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self._restore_rng(state)
        log.info("Resumed after epoch %d (step %d).", self.epoch, self.global_step)

    def _restore_rng(self, state: dict) -> None:
        """Each rank continues its own random streams. A run resumed on another number of
        processes cannot: every rank then seeds from a number drawn from rank 0's saved stream,
        plus its rank."""
        saved = state.get("rng_by_rank") or [state["rng"]]
        if len(saved) == self.world_size:
            set_rng_state(saved[distributed.rank()])
            return
        log.warning(
            "The checkpoint was written by %d process(es), this run has %d: random streams "
            "(dropout, noise, augmentation) restart from the seed, so the continuation is not "
            "bit-identical to an uninterrupted run.",
            len(saved),
            self.world_size,
        )
        set_rng_state(saved[0])  # then a seed drawn from it, the same on all ranks, + rank
        torch.manual_seed(int(torch.randint(2**62, ())) + distributed.rank())


def _whole(loader):
    """The loader over the whole split, for work done once on rank 0 (itself when unsharded)."""
    return loader.whole() if hasattr(loader, "whole") else loader
