"""K-fold cross-validation: `cv.folds=K` trains K models on seeded, stratified folds of
train + val (runner.data.folds), each in its own run folder, and returns the mean of the
monitored metric."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, open_dict

from runner.errors import RunnerError

log = logging.getLogger(__name__)


def run_folds(cfg: DictConfig, run: Callable[[DictConfig], dict[str, float]]) -> dict[str, float]:
    """Train fold 0..K-1 in <run>/fold_<k>; write and return the metrics averaged over folds,
    plus `cv/<metric>_mean` and `cv/<metric>_std` of the monitored metric."""
    folds = cfg.cv.folds
    if folds < 2:
        raise RunnerError(
            f"cv.folds={folds}: cross-validation needs at least 2 folds (or null for off)."
        )
    out = Path(cfg.paths.output_dir)
    per_fold = []
    for fold in range(folds):
        log.info("Cross-validation: fold %d of %d.", fold + 1, folds)
        fold_cfg = copy.deepcopy(cfg)
        with open_dict(fold_cfg):
            fold_cfg.cv.fold = fold
            fold_cfg.paths.output_dir = str(out / f"fold_{fold}")
            fold_cfg.logger.log_hparams = False  # the parent run holds the one HParams row
        per_fold.append(run(fold_cfg))
    monitor = cfg.optimized_metric
    shared = [k for k in per_fold[0] if all(k in m for m in per_fold)]
    means = {k: float(np.mean([m[k] for m in per_fold])) for k in shared}
    scores = np.array([m[monitor] for m in per_fold])
    # Standard deviation over folds with ddof=0, as scikit-learn's cross-validation reports it.
    cv = {f"cv/{monitor}_mean": float(scores.mean()), f"cv/{monitor}_std": float(scores.std())}
    metrics = {**means, **cv}
    out.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": metrics, "optimized_metric": monitor, "folds": per_fold}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log_summary(cfg, out, cv, folds)
    log.info(
        "Cross-validation %s: %.4g +- %.4g over %d folds.",
        monitor,
        scores.mean(),
        scores.std(),
        folds,
    )
    return metrics


def log_summary(cfg: DictConfig, out: Path, cv: dict[str, float], folds: int) -> None:
    """The mean and std as scalars and as the HParams row of the parent run."""
    if not cfg.logger.tensorboard:
        return
    from runner.training.tensorboard import TensorBoardLogger, hparams_of

    logger = TensorBoardLogger(out)
    try:
        logger.scalars(cv, folds)
        if cfg.logger.log_hparams:
            logger.hparams(hparams_of(cfg), cv, folds)
    finally:
        logger.close()
