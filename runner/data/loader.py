"""Batches for the loop: uint8 tensors served from the device, or a DataLoader for big folders."""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from runner.data.augment import BatchAugmentation
from runner.data.datasets import Split, TensorSplit, decode_split
from runner.errors import RunnerError

Batch = tuple[torch.Tensor, torch.Tensor]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Which part of every epoch this process reads: rank r of `world_size` takes every
    `world_size`-th example of the (shuffled) order from position r, as DistributedSampler does."""

    rank: int = 0
    world_size: int = 1


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int, shard: Shard, even: bool):
    """This rank's indices for one epoch: a permutation drawn from `seed + epoch` (the same on
    every rank, so the shards never overlap), cut to a multiple of the world size when `even`
    (training: every rank must take the same number of steps), then strided by rank."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        order = torch.arange(n)
    if even:
        order = order[: n - n % shard.world_size]
    return order[shard.rank :: shard.world_size]


class DeviceLoader:
    """Shuffled index batches over a uint8 TensorSplit that lives on the training device.

    No per-sample Python work: one randperm per epoch, one gather per batch. The order depends
    only on `seed` and the epoch (`set_epoch`), so a resumed run replays it exactly; with several
    ranks each gathers only its own shard.
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        shard: Shard = Shard(),
    ) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.shard = shard
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _examples(self) -> int:
        n, w = len(self.labels), self.shard.world_size
        if self.shuffle or self.drop_last:  # training: an equal share for every rank
            return (n - n % w) // w
        return len(range(self.shard.rank, n, w))

    def _drops(self) -> bool:
        return self.drop_last and self._examples() > self.batch_size

    def __len__(self) -> int:
        n = self._examples()
        return n // self.batch_size if self._drops() else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        even = self.shuffle or self.drop_last
        order = epoch_order(len(self.labels), self.shuffle, self.seed, self.epoch, self.shard, even)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]

    def whole(self) -> DeviceLoader:
        """The same loader over every example (for work done once, on rank 0)."""
        if self.shard.world_size == 1:
            return self
        whole = copy.copy(self)  # shares the tensors already on the device
        whole.shard = Shard()
        return whole

    def in_order(self, batch_size: int) -> DeviceLoader:
        """Every example once, in order, in batches of `batch_size` (what the test pass reads),
        sharing the tensors already on the device instead of copying the split there again."""
        ordered = copy.copy(self)
        ordered.shard, ordered.shuffle, ordered.drop_last = Shard(), False, False
        ordered.batch_size = batch_size
        return ordered


class HostLoader:
    """A DataLoader over an on-disk split, moving each uint8 batch to the device.

    Training batches come from a DistributedSampler (also for one process: the same seeded order
    per epoch as DeviceLoader); evaluation reads this rank's strided subset in order.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        shard: Shard = Shard(),
        num_workers: int = 2,
    ) -> None:
        if isinstance(split, TensorSplit):
            split = torch.utils.data.TensorDataset(split.images, split.labels)
        self.split = split
        self.device = device
        self.shard = shard
        self.settings = (batch_size, shuffle, drop_last, seed, num_workers)
        self._whole: HostLoader | None = None
        self.sampler = None
        if shuffle or drop_last:
            self.sampler = DistributedSampler(
                split, shard.world_size, shard.rank, shuffle=shuffle, seed=seed, drop_last=True
            )
            data = split
        else:
            data = Subset(split, range(shard.rank, len(split), shard.world_size))
        self.loader = DataLoader(
            data,
            batch_size=batch_size,
            sampler=self.sampler,
            drop_last=drop_last and len(data) // shard.world_size > batch_size,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels in self.loader:
            yield (
                images.to(self.device, non_blocking=True),
                torch.as_tensor(labels).to(self.device, non_blocking=True),
            )

    def whole(self) -> HostLoader:
        """The same loader over every example (for work done once, on rank 0)."""
        if self.shard.world_size == 1:
            return self
        if self._whole is None:  # built once: its DataLoader keeps its workers
            batch_size, shuffle, drop_last, seed, num_workers = self.settings
            self._whole = HostLoader(
                self.split, batch_size, self.device, shuffle, drop_last, seed, Shard(), num_workers
            )
        return self._whole

    def in_order(self, batch_size: int) -> HostLoader:
        """Every example once, in order, in batches of `batch_size` (what the test pass reads)."""
        num_workers = self.settings[-1]
        return HostLoader(
            self.split, batch_size, self.device, False, False, 0, Shard(), num_workers
        )


def make_loader(
    split: Split,
    batch_size: int,
    device: torch.device,
    kind: str = "auto",
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    shard: Shard = Shard(),
    num_workers: int = 2,
) -> DeviceLoader | HostLoader:
    """`auto`: a DeviceLoader for in-memory splits, a HostLoader for on-disk ones; `device`: a
    DeviceLoader always (an on-disk split is decoded into memory first); `dataloader`: a
    HostLoader always."""
    if kind == "device" and not isinstance(split, TensorSplit):
        split = to_memory(split, device, num_workers)
    on_device = isinstance(split, TensorSplit) and kind in ("auto", "device")
    if on_device:
        return DeviceLoader(split, batch_size, device, shuffle, drop_last, seed, shard)
    return HostLoader(split, batch_size, device, shuffle, drop_last, seed, shard, num_workers)


def to_memory(split: Split, device: torch.device, num_workers: int = 2) -> TensorSplit:
    """An on-disk split decoded into a uint8 TensorSplit for `trainer.loader=device`, if its
    images fit in the memory the device has free."""
    image, _ = split[0]
    need = len(split) * torch.as_tensor(image).numel()
    free = free_memory(device)
    if need > free:
        raise RunnerError(
            f"trainer.loader=device needs the {len(split)} images of a split in memory "
            f"({need / 2**20:.0f} MiB as uint8), but {device} has {free / 2**20:.0f} MiB free. "
            "Use trainer.loader=auto or dataloader (a DataLoader reads them from disk), or make "
            "them smaller (dataset.shape)."
        )
    log.info("trainer.loader=device: decoding %d on-disk images into memory.", len(split))
    return decode_split(split, num_workers)


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` (the host's available memory for cpu and mps)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no such query here (macOS): try decoding
        return sys.maxsize


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
