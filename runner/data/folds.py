"""Folds of a dataset for cross-validation, and the labels of any split without decoding it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset

from runner.data.datasets import ImageData, Split, TensorSplit, take
from runner.errors import RunnerError


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
    return replace(data, train=take(pool, train_index), val=take(pool, val_index))


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
