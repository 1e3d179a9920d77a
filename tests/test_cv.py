"""K-fold cross-validation on digits: K runs on stratified, seeded folds, their mean returned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from runner.data.datasets import digits
from runner.data.folds import fold_split
from runner.search.cv import run_folds
from runner.train import run


def test_folds_partition_train_and_val_stratified_and_seeded():
    data = digits()
    pool = torch.cat([data.train.labels, data.val.labels])
    seen_val = []
    for fold in range(3):
        split = fold_split(data, folds=3, fold=fold, seed=0)
        assert len(split.train) + len(split.val) == len(pool)
        assert split.test is data.test
        # Stratified: each class's share of the fold's val set matches the pool's within one image.
        counts = np.bincount(split.val.labels.numpy(), minlength=10)
        expected = np.bincount(pool.numpy(), minlength=10) / 3
        assert np.all(np.abs(counts - expected) <= 1)
        seen_val.append(split.val.images.reshape(len(split.val), -1))
    rows = torch.cat(seen_val)
    assert len(rows) == len(pool)  # the val folds together are the whole pool
    again = fold_split(data, folds=3, fold=1, seed=0)
    assert torch.equal(again.val.labels, fold_split(data, 3, 1, 0).val.labels)
    other = fold_split(data, folds=3, fold=1, seed=1)
    assert not torch.equal(other.val.images, again.val.images)


def test_cv_trains_one_run_per_fold_and_returns_the_mean(config, tmp_path):
    cfg = config("cv.folds=3", "model.hidden_dims=[32]", "logger.log_images=false")
    metrics = run_folds(cfg, run)

    out = tmp_path / "run"
    folds = [
        json.loads((out / f"fold_{k}" / "metrics.json").read_text())["metrics"] for k in range(3)
    ]
    for k in range(3):
        assert list((out / f"fold_{k}").glob("events.out.tfevents.*")), (
            "each fold is its own TensorBoard run"
        )
    scores = [m["val/loss"] for m in folds]
    assert len(set(scores)) == 3  # different folds, different models
    assert metrics["val/loss"] == pytest.approx(np.mean(scores))
    assert metrics["cv/val/loss_mean"] == pytest.approx(np.mean(scores))
    assert metrics["cv/val/loss_std"] == pytest.approx(np.std(scores))
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"]["cv/val/loss_mean"] == pytest.approx(np.mean(scores))
    assert list(out.glob("events.out.tfevents.*")), "the mean and std are logged in the parent run"
