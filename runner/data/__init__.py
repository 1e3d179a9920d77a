"""Datasets, the in-memory device loader and batch augmentation."""

from runner.data.augment import BatchAugmentation
from runner.data.datasets import ImageData, TensorSplit
from runner.data.loader import BatchPreprocessor, DeviceLoader, HostLoader, make_loader

__all__ = [
    "BatchAugmentation",
    "BatchPreprocessor",
    "DeviceLoader",
    "HostLoader",
    "ImageData",
    "TensorSplit",
    "make_loader",
]
