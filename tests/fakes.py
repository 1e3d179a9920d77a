"""What the tests build instead of downloads: configs for quick runs and tiny data in the real
formats (MNIST's IDX files, class folders of images)."""

from __future__ import annotations

import gzip
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from runner.config import compose_run_config

# Small, quiet, CPU-only runs.
FAST = (
    "trainer.device=cpu",
    "trainer.progress_bar=false",
    "trainer.max_epochs=2",
    "logger.num_images=8",
)


def make_config(output_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/config.yaml with FAST + overrides, for a run in `output_dir`."""
    return compose_run_config(output_dir, [*FAST, *overrides])


def photos(folder: Path, classes: Sequence[str] = ("cat", "dog"), per_class: int = 10) -> Path:
    """`folder/<class>/<i>.png`, each class its own brightness."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (8, 8, 3), dtype=np.uint8) + k * 70
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write `array` (uint8) in the IDX format of the MNIST files."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def class_images(labels: np.ndarray, size: int = 28, seed: int = 0) -> np.ndarray:
    """Learnable images: class c is a bright bar at a class-specific row and column, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), size, size)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 2 + (c * (size - 6)) // 10
        images[i, row : row + 3, 4 : size - 4] = 255
        images[i, 4 : size - 4, row : row + 2] = 200
    return images


def write_mnist_like(
    root: Path, name: str = "MNIST", n_train: int = 300, n_test: int = 100, compress=False
) -> Path:
    """Tiny IDX files in `root/<name>/raw/`, the layout torchvision's MNIST classes read."""
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", class_images(labels, seed=seed), compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), compress)
    return root


# A tiny autoencoder on digits, quiet and on the CPU: what every sweep test trains.
SWEEP_TINY = (
    "model.hidden_dims=[32]",
    "trainer.max_epochs=3",
    "trainer.progress_bar=false",
    "trainer.device=cpu",
    "logger.log_images=false",
)


def sweep_command(sweep_dir: Path, *overrides: str) -> list[str]:
    """`python -m runner.train -m <the tiny run> <overrides>` into `sweep_dir`."""
    return [sys.executable, "-m", "runner.train", "-m", *SWEEP_TINY, *overrides] + [
        f"hydra.sweep.dir={sweep_dir}"
    ]


# An Optuna grid over 2 x 2 points: dropout 1.5 fails validation inside the job, lr 1e-5 learns
# far slower than lr 1e-2 and is pruned by the median pruner once an lr 1e-2 trial has finished.
OPTUNA_GRID = (
    "hydra/sweeper=optuna4",
    "hydra/sweeper/sampler=grid",
    "hydra.sweeper.sampler.seed=4",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "optimizer.lr=choice(1e-2,1e-5)",
    "regularization.dropout=choice(0.0,1.5)",
)
