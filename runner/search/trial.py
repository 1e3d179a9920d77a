"""The trial side of an Optuna sweep: report the monitored metric each epoch, stop when pruned,
and give a trial that stopped early its HParams row.

The sweeper passes `search.storage`, `search.study` and `search.trial` (the trial's number, also
its job number and folder name) to every job, so a trial running in another process (joblib,
SLURM) reports to the same study, and builds the study's pruner (its user attribute `pruner`, a
`_target_` config) to see every trial. Only Optuna's public storage API crosses processes: no
Trial object, no private attribute.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner import distributed

log = logging.getLogger(__name__)


class SweepTrial:
    """One trial of a study in its storage, found by its number."""

    def __init__(self, storage: str, study: str, number: int) -> None:
        import optuna
        from hydra.utils import instantiate
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        # The sweeper's storage: a database URL, else a journal file (with an open()-based lock,
        # which works on every file system).
        self.storage = (
            optuna.storages.RDBStorage(storage)
            if "://" in storage
            else JournalStorage(JournalFileBackend(storage, lock_obj=JournalFileOpenLock(storage)))
        )
        self.number = number
        study_id = self.storage.get_study_id_from_name(study)
        self.trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        pruner = self.storage.get_study_user_attrs(study_id).get("pruner")
        self.pruner = instantiate(pruner) if pruner else optuna.pruners.NopPruner()
        self.study = optuna.load_study(study_name=study, storage=self.storage, pruner=self.pruner)

    def report(self, value: float, step: int) -> bool:
        """Record the monitored value at `step`; True when the pruner stops the trial here."""
        self.storage.set_trial_intermediate_value(self.trial_id, step, value)
        return self.pruner.prune(self.study, self.storage.get_trial(self.trial_id))

    def reported(self) -> dict[int, float]:
        """Every value this trial reported, by step."""
        return self.storage.get_trial(self.trial_id).intermediate_values


def sweep_trial(cfg: DictConfig) -> SweepTrial | None:
    """The study trial this run is, when the Optuna sweeper launched it; else None."""
    search = cfg.get("search")
    if search is None or search.get("storage") is None or search.get("trial") is None:
        return None
    return SweepTrial(search.storage, search.study, int(search.trial))


def pruning_callbacks(cfg: DictConfig) -> list[Callable[[int, dict[str, float]], None]]:
    """`[callback]` when this run is a trial of an Optuna sweep, else `[]`."""
    trial = sweep_trial(cfg)
    if trial is None:
        return []
    import optuna

    monitor = cfg.optimized_metric
    # Cross-validation reports fold k's epochs after fold k-1's, so trials compare like with like.
    fold = cfg.cv.fold if cfg.get("cv") is not None and cfg.cv.get("fold") is not None else 0
    offset = fold * cfg.trainer.max_epochs

    def report(epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(monitor)
        if value is None or not math.isfinite(value):
            return  # the loop raises TrainingDiverged for these; the sweeper records a failure
        step = offset + epoch
        if trial.report(value, step):
            log.info(
                "Trial %d pruned after epoch %d (%s=%.4g).", trial.number, epoch, monitor, value
            )
            raise optuna.TrialPruned(f"pruned at step {step} with {monitor}={value:.4g}")

    return [report]


def log_stopped_trial(cfg: DictConfig, exc: BaseException) -> None:
    """A sweep's trial that was pruned or failed still writes its HParams row, with the best value
    it reported, so TensorBoard's HParams tab lists every trial of the sweep."""
    try:
        if not cfg.logger.tensorboard or not cfg.logger.log_hparams or distributed.rank() != 0:
            return
        trial = sweep_trial(cfg)
        if trial is None:
            return
        import optuna

        from runner.training.tensorboard import TensorBoardLogger, hparams_of

        values = trial.reported()
        best = min if cfg.optimized_mode == "min" else max
        metrics = {f"{cfg.optimized_metric}_best": best(values.values())} if values else {}
        state = "PRUNED" if isinstance(exc, optuna.TrialPruned) else "FAIL"
        params: dict[str, Any] = {**hparams_of(cfg), "trial_state": state}
        logger = TensorBoardLogger(Path(cfg.paths.output_dir))
        try:
            logger.hparams(params, metrics, max(values, default=0))
        finally:
            logger.close()
    except Exception as error:  # the trial's own error is the one to report
        log.warning("No HParams row for this stopped trial: %s", error)
