"""Batches for the loop: uint8 tensors served from the device, or a DataLoader for big folders."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from runner.data.augment import BatchAugmentation
from runner.data.datasets import Split, TensorSplit

Batch = tuple[torch.Tensor, torch.Tensor]


class DeviceLoader:
    """Shuffled index batches over a uint8 TensorSplit that lives on the training device.

    No per-sample Python work: one randperm per epoch, one gather per batch. The shuffling
    generator is exposed so checkpoints can save and restore it.
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last and len(split) > batch_size
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]


class HostLoader:
    """A DataLoader over an on-disk split, moving each uint8 batch to the device."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        num_workers: int = 2,
    ) -> None:
        if isinstance(split, TensorSplit):
            split = torch.utils.data.TensorDataset(split.images, split.labels)
        self.device = device
        self.generator = generator
        self.loader = DataLoader(
            split,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last and len(split) > batch_size,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=generator,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels in self.loader:
            yield (
                images.to(self.device, non_blocking=True),
                torch.as_tensor(labels).to(self.device, non_blocking=True),
            )


def make_loader(
    split: Split,
    batch_size: int,
    device: torch.device,
    kind: str = "auto",
    shuffle: bool = False,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    num_workers: int = 2,
) -> DeviceLoader | HostLoader:
    """A DeviceLoader for in-memory splits (unless `kind="dataloader"`), else a HostLoader."""
    on_device = isinstance(split, TensorSplit) and kind in ("auto", "device")
    if on_device:
        return DeviceLoader(split, batch_size, device, shuffle, drop_last, generator)
    return HostLoader(split, batch_size, device, shuffle, drop_last, generator, num_workers)


class BatchPreprocessor:
    """uint8 [0, 255] -> float [0, 1] on the device (float data such as series is left as it
    is), plus augmentation for training batches."""

    def __init__(self, augmentation: BatchAugmentation | None = None) -> None:
        self.augmentation = augmentation if augmentation and augmentation.enabled else None

    def __call__(self, batch: Batch, train: bool) -> Batch:
        images, labels = batch
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if train and self.augmentation is not None:
            x = self.augmentation(x)
        return x, labels
