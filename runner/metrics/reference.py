"""`model.fd_classifier=auto`: the classifier whose features score generated images, trained by
this project on the run's dataset once, cached beside the dataset's cache, and reused.

The classifier is an ordinary run of `python -m runner.train model=cnn dataset=<the same>` in a
folder keyed by the dataset's identity and split (`<root>/<Name>/fd_classifiers/cnn-<key>`, or the
user's cache folder). It runs as its own process, never inside the run that needs it; a file lock
makes parallel trials (or the ranks of a DDP run) train it once and wait for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import RunnerError

log = logging.getLogger(__name__)

# Dataset keys that do not change which images a classifier sees.
NOT_IDENTITY = ("download", "cache_dir", "train_subset")
# What the reference classifier is: a smaller cnn than the preset's, 1,000 steps of one-cycle
# Adam whatever the data size (a feature space for the Fréchet distance needs a good classifier,
# not the best one; on MNIST 3 epochs, about a minute on 2 CPU cores).
RECIPE = (
    "model=cnn",
    "model.channels=[32,64]",
    "model.convs_per_block=1",
    "scheduler=onecycle",
    "optimizer.lr=3e-3",
    "trainer.max_steps=1000",
    "optimized_metric=val/acc",
    "optimized_mode=max",
    "trainer.strategy=single",
    "trainer.progress_bar=false",
    "logger.log_images=false",
)
# Launchers' variables: the classifier trains as a plain single process.
LAUNCH_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "SUBMITIT_EXECUTOR",
)


Train = Callable[[Path, list[str]], None]  # (folder, overrides) -> a finished run in folder


def reference_classifier(
    dataset_choice: str, dataset: dict[str, Any], train: Train | None = None
) -> Path:
    """The run folder of the reference classifier for `dataset`, trained first if needed."""
    folder = reference_folder(dataset)
    if finished(folder):
        log.info("Reference classifier for the Fréchet distance: %s (cached).", folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be training it: wait for it
        if not finished(folder):
            log.info("Training the reference classifier for the Fréchet distance once: %s", folder)
            overrides = [*RECIPE, f"dataset={dataset_choice}", *dataset_overrides(dataset)]
            (train or train_in_subprocess)(folder, overrides)
            if not finished(folder):
                raise RunnerError(f"The reference classifier in {folder} did not finish.")
    return folder


def reference_folder(dataset: dict[str, Any]) -> Path:
    from runner.data.datasets import cache_dir_for, user_cache_dir

    identity = {k: v for k, v in dataset.items() if k not in NOT_IDENTITY}
    for key in ("root", "path"):  # the same files, wherever the command was started
        if identity.get(key):
            identity[key] = str(Path(identity[key]).expanduser().resolve())
    # The recipe is part of the key: a classifier trained another way is another feature space.
    keyed = {**identity, "recipe": RECIPE}
    key = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
    if identity.get("root") and identity.get("name"):
        preferred = Path(identity["root"]) / identity["name"] / "fd_classifiers"
        base = cache_dir_for(preferred, "fd_classifiers")
    else:
        base = user_cache_dir() / "fd_classifiers"
    return base / f"cnn-{key[:12]}"


def finished(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "checkpoints" / "best.pt").is_file()


def dataset_overrides(dataset: dict[str, Any]) -> list[str]:
    """`dataset.<key>=<value>` for every key, so the classifier sees exactly the run's data (all
    of its training split: no train_subset)."""
    return [
        f"dataset.{key}={hydra_value(None if key == 'train_subset' else value)}"
        for key, value in dataset.items()
        if not key.startswith("_")
    ]


def hydra_value(value: Any) -> str:
    """A value in Hydra's override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def train_in_subprocess(folder: Path, overrides: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    cmd = [sys.executable, "-m", "runner.train", *overrides, f"hydra.run.dir={folder}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RunnerError(
            f"Training the reference classifier for model.fd_classifier=auto failed ("
            f"{' '.join(tail)}). Pass model.fd_classifier=<a cnn run folder on the same data>, or "
            "model.fd_classifier=null to skip the Fréchet distance."
        )


def resolve_auto(cfg: DictConfig, dataset_choice: str | None) -> None:
    """`model.fd_classifier=auto` -> the reference classifier's folder, in place."""
    if OmegaConf.select(cfg, "model.fd_classifier", default=None) != "auto":
        return
    if dataset_choice is None:
        raise RunnerError(
            "model.fd_classifier=auto needs the dataset's config group (dataset=<name>); pass "
            "model.fd_classifier=<a cnn run folder> instead."
        )
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True, enum_to_str=True)
    cfg.model.fd_classifier = str(reference_classifier(dataset_choice, dataset))
