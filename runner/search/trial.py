"""The trial side of an Optuna sweep: report the monitored metric each epoch, stop when pruned.

The sweeper passes `search.storage`, `search.study` and `search.trial_id` to every job, so a trial
running in another process (joblib, SLURM) opens the same study and the pruner sees every trial.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def open_storage(spec: str):
    """An Optuna storage from a URL (`sqlite:///...`, `postgresql://...`) or a journal file path."""
    import optuna

    if "://" in spec:
        return optuna.storages.RDBStorage(spec, heartbeat_interval=None)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    # An open()-based lock works on every file system (symlink locks need POSIX symlinks).
    return JournalStorage(JournalFileBackend(spec, lock_obj=JournalFileOpenLock(spec)))


def pruning_callbacks(cfg: DictConfig) -> list[Callable[[int, dict[str, float]], None]]:
    """`[callback]` when this run is a trial of an Optuna sweep, else `[]`."""
    search = cfg.get("search")
    if search is None or search.get("storage") is None or search.get("trial_id") is None:
        return []
    import optuna

    from runner.search.space import make_pruner

    storage = open_storage(search.storage)
    study = optuna.load_study(study_name=search.study, storage=storage)
    # The sweeper keeps its pruner settings in the study; the trial needs the same pruner.
    pruner = make_pruner(**study.user_attrs.get("pruner", {"name": "median"}))
    study = optuna.load_study(study_name=search.study, storage=storage, pruner=pruner)
    trial = optuna.trial.Trial(study, int(search.trial_id))
    monitor = cfg.optimized_metric
    # Cross-validation reports fold k's epochs after fold k-1's, so trials compare like with like.
    fold = cfg.cv.fold if cfg.get("cv") is not None and cfg.cv.get("fold") is not None else 0
    offset = fold * cfg.trainer.max_epochs

    def report(epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(monitor)
        if value is None or not math.isfinite(value):
            return  # the loop raises TrainingDiverged for these; the sweeper records a failure
        step = offset + epoch
        trial.report(value, step)
        if trial.should_prune():
            log.info(
                "Trial %d pruned after epoch %d (%s=%.4g).", trial.number, epoch, monitor, value
            )
            raise optuna.TrialPruned(f"pruned at step {step} with {monitor}={value:.4g}")

    return [report]
