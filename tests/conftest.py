"""Shared fixtures: the real config composed in-process, runs and sweeps as a user starts them,
and tiny datasets (tests/fakes.py writes them)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import make_config, sweep_command, write_mnist_like
from omegaconf import DictConfig

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each, and the runs it starts, uses one thread.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def this_checkout_in_subprocesses():
    """Runs and sweeps started in a subprocess (from a temporary folder) import this checkout's
    `runner` and `hydra_plugins`, not whichever copy is installed (an editable install of
    another worktree)."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), previous) if p)
    yield
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous


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


@pytest.fixture(autouse=True)
def restore_logging():
    """Hydra's main configures the root logger with handlers bound to the streams of the test that
    ran it (pytest's capture); later tests would write to those closed streams. Put the root
    logger back as it was after every test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def config(tmp_path):
    """`config(*overrides)` -> composed config whose run folder is tmp_path/run."""

    def _make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return make_config(run_dir or tmp_path / "run", overrides)

    return _make


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
        capsys.readouterr()  # only this command's output is judged
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


@pytest.fixture
def tiny_mnist(tmp_path) -> Path:
    """A data root holding 300 train / 100 test MNIST-format images (no network)."""
    return write_mnist_like(tmp_path / "data")


@pytest.fixture
def multirun() -> Callable[..., subprocess.CompletedProcess]:
    """`multirun(sweep_dir, *overrides, expect=0)` runs a sweep in a subprocess and asserts its
    exit code."""

    def _run(sweep_dir: Path, *overrides: str, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            sweep_command(sweep_dir, *overrides),
            cwd=sweep_dir.parent,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return _run


@pytest.fixture(scope="session")
def session_mnist(tmp_path_factory) -> tuple[str, ...]:
    """Dataset overrides for tiny MNIST-format files (300 train / 100 test) written once."""
    root = write_mnist_like(tmp_path_factory.mktemp("mnist"))
    return ("dataset=mnist", f"dataset.root={root}", "dataset.download=false")


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory, session_mnist) -> Path:
    """The folder of a small cnn trained once per session on `session_mnist`: the finished run
    that evaluation, prediction, sample scoring and transfer tests reuse (read it, never write)."""
    from runner.train import run

    folder = tmp_path_factory.mktemp("cnn_run") / "run"
    overrides = [
        "model=cnn",
        "model.channels=[8,16]",
        "model.hidden_dim=32",
        "trainer.max_epochs=4",
        "optimizer.lr=3e-3",
        "trainer.batch_size=16",
        *session_mnist,
        "optimized_metric=val/acc",
        "optimized_mode=max",
        "logger=none",
    ]
    run(make_config(folder, overrides))
    return folder
