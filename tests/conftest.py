"""Shared fixtures: compose the real config in-process, and tiny datasets written by the tests."""

from __future__ import annotations

import gzip
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Caches (decoded data, the reference classifier of model.fd_classifier=auto) go to a folder
    of this test session, not the user's ~/.cache; subprocesses inherit it."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture
def config(tmp_path):
    """`config(*overrides)` -> composed config whose run folder is tmp_path/run."""

    def _make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return make_config(run_dir or tmp_path / "run", overrides)

    return _make


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


@pytest.fixture
def cli_error(monkeypatch, capsys):
    """`cli_error(run_dir, *args)` runs `python -m runner.train args` in-process, asserts that it
    stopped with exit code 2, one paragraph, and no checkpoint in `run_dir`; returns stderr."""
    from hydra.core.global_hydra import GlobalHydra

    import runner.train

    def _run(run_dir: Path, *args: str) -> str:
        argv = ["runner.train", *args, "trainer.progress_bar=false", f"hydra.run.dir={run_dir}"]
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        GlobalHydra.instance().clear()
        with pytest.raises(SystemExit) as exit_info:
            runner.train.main()
        GlobalHydra.instance().clear()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: ") and "Traceback" not in err, err  # one paragraph
        assert not any(line.startswith("Error executing job") for line in lines), err
        assert not (run_dir / "checkpoints").exists()  # rejected before any training
        return err

    return _run


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


@pytest.fixture
def tiny_mnist(tmp_path) -> Path:
    """A data root holding 300 train / 100 test MNIST-format images (no network)."""
    return write_mnist_like(tmp_path / "data")
