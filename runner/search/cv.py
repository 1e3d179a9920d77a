"""K-fold cross-validation: `cv.folds=K` trains K models on seeded, stratified folds of
train + val, each in its own run folder, and returns the mean of the monitored metric."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch.utils.data import ConcatDataset, Subset

from runner.data.datasets import ImageData, Split, TensorSplit
from runner.errors import RunnerError

log = logging.getLogger(__name__)


def fold_split(data: ImageData, folds: int, fold: int, seed: int) -> ImageData:
    """`data` with train/val replaced by fold `fold` of `folds` over train + val; test untouched."""
    from sklearn.model_selection import KFold, StratifiedKFold  # only for cross-validation

    if isinstance(data.train, TensorSplit) and isinstance(data.val, TensorSplit):
        pool: Split = TensorSplit(
            torch.cat([data.train.images, data.val.images]),
            torch.cat([data.train.labels, data.val.labels]),
        )
    else:
        pool = ConcatDataset([data.train, data.val])
    labels = np.concatenate([split_labels(data.train), split_labels(data.val)])
    if folds > len(labels):
        raise RunnerError(f"cv.folds={folds} is more than the {len(labels)} train + val examples.")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    if np.unique(labels, return_counts=True)[1].min() < folds:  # a class too small for every fold
        splitter = KFold(folds, shuffle=True, random_state=seed)
    train_index, val_index = list(splitter.split(np.zeros(len(labels)), labels))[fold]
    return replace(data, train=_take(pool, train_index), val=_take(pool, val_index))


def split_labels(split: Split) -> np.ndarray:
    """The labels of a split, without decoding its images where the dataset knows them."""
    if isinstance(split, TensorSplit):
        return split.labels.numpy()
    if isinstance(split, Subset):
        return split_labels(split.dataset)[np.asarray(split.indices)]
    if isinstance(split, ConcatDataset):
        return np.concatenate([split_labels(d) for d in split.datasets])
    if hasattr(split, "targets"):
        return np.asarray(split.targets)
    return np.asarray([label for _, label in split])


def _take(split: Split, index: np.ndarray) -> Split:
    return split.subset(index) if isinstance(split, TensorSplit) else Subset(split, index.tolist())


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
    from runner.build import hparams_of
    from runner.training.tensorboard import TensorBoardLogger

    logger = TensorBoardLogger(out)
    try:
        logger.scalars(cv, folds)
        if cfg.logger.log_hparams:
            logger.hparams(hparams_of(cfg), cv, folds)
    finally:
        logger.close()
