"""Time series of the UCR/UEA archives (and a user's own `.ts` files), read through aeon.

A split is a TensorSplit whose `images` are float32 series [N, T, C] (time first, then channels:
what the recurrent layers read). Series shorter than the longest one are padded at the end with
NaN, so a batch stays one tensor and models find each series' length from the NaN mask. Values
are z-normalised per channel with statistics of the training part only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from pydantic import PositiveInt

from runner.data.datasets import (
    ImageData,
    SplitFraction,
    TensorSplit,
    carve_splits,
    user_cache_dir,
)
from runner.errors import RunnerError

log = logging.getLogger(__name__)


def timeseries(
    name: str = "GunPoint",
    path: str | None = None,
    download: bool = False,
    val_fraction: SplitFraction = 0.2,
    train_subset: PositiveInt | None = None,
    split_seed: int = 0,
    normalize: bool = True,
    cache_dir: str | None = None,
    shape: list[int] | None = None,
    num_classes: int | None = None,
) -> ImageData:
    """A classification problem of the UCR/UEA archives by `name`, or the `.ts` files at `path`.

    The archive's train/test split is kept; validation is carved from the training part
    (stratified, seeded). `shape` and `num_classes` are filled in from the data.
    """
    train_file, test_file = find_files(name, path, download, cache_dir)
    x_train, y_train = read_ts(train_file)
    x_test, y_test = read_ts(test_file)
    classes = sorted(set(y_train.tolist()) | set(y_test.tolist()), key=_natural)
    index = {c: i for i, c in enumerate(classes)}
    length = max(_longest(x_train), _longest(x_test))
    train = TensorSplit(_padded(x_train, length), _encode(y_train, index))
    test = TensorSplit(_padded(x_test, length), _encode(y_test, index))
    train, val, test = carve_splits(
        train, test, train.labels.numpy(), val_fraction, train_subset, split_seed
    )
    if normalize:
        mean, std = _channel_stats(train.images)
        train, val, test = (
            TensorSplit((s.images - mean) / std, s.labels) for s in (train, val, test)
        )
    found = (length, train.images.shape[2])
    if shape is not None and tuple(shape) != found:
        raise RunnerError(
            f"dataset.shape={list(shape)} does not match {name}'s series {list(found)} "
            "(steps, channels); remove the override."
        )
    return ImageData(train, val, test, found, len(classes), [str(c) for c in classes])


def shipped_names() -> list[str]:
    """Classification problems whose files come inside aeon's wheel (usable offline)."""
    return sorted(
        folder.name
        for folder in _shipped_root().iterdir()
        if (folder / f"{folder.name}_TRAIN.ts").exists()
        and (folder / f"{folder.name}_TEST.ts").exists()
        and _is_classification(folder.name)
    )


def _is_classification(name: str) -> bool:
    from aeon.datasets import tsc_datasets

    return name in tsc_datasets.univariate or name in tsc_datasets.multivariate


def _shipped_root() -> Path:
    import aeon.datasets

    return Path(aeon.datasets.__file__).parent / "data"


def find_files(
    name: str, path: str | None, download: bool, cache_dir: str | None
) -> tuple[Path, Path]:
    """(train, test) `.ts` files: the user's folder, aeon's shipped copy, or the download cache."""
    if path is not None:
        return _user_files(name, Path(path).expanduser())
    shipped = _shipped_root() / name
    if name in shipped_names():
        return shipped / f"{name}_TRAIN.ts", shipped / f"{name}_TEST.ts"
    cache = Path(cache_dir).expanduser() if cache_dir else user_cache_dir() / "timeseries"
    files = cache / name / f"{name}_TRAIN.ts", cache / name / f"{name}_TEST.ts"
    if all(f.exists() for f in files):
        return files
    known = _is_classification(name)
    if download and known:
        _download(name, cache)
        return files
    offline = ", ".join(shipped_names())
    if known:
        why = f"{name} is in the UCR/UEA archive but does not ship with aeon and is not in {cache}."
    else:
        why = f"dataset.name={name!r} is not a classification problem of the UCR/UEA archive."
    raise RunnerError(
        f"{why} The problems available offline are: {offline}. To use another one, put "
        f"{name}_TRAIN.ts and {name}_TEST.ts in a folder and pass dataset.path=<that folder>, "
        f"or pass dataset.download=true on a machine that is online (files go to {cache})."
    )


def _user_files(name: str, folder: Path) -> tuple[Path, Path]:
    if folder.is_file():  # the training file itself was given
        folder, name = folder.parent, folder.name.removesuffix("_TRAIN.ts")
    pairs = [(folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts")]
    if not pairs[0][0].exists():  # a folder with one problem in it: its name does not matter
        pairs = [
            (t, t.with_name(t.name.replace("_TRAIN", "_TEST"))) for t in folder.glob("*_TRAIN.ts")
        ]
    found = [pair for pair in pairs if all(f.exists() for f in pair)]
    if len(found) != 1:
        raise RunnerError(
            f"dataset.path={str(folder)!r} should hold one pair of files <name>_TRAIN.ts and "
            f"<name>_TEST.ts (aeon's .ts format); found {len(found)} pairs"
            + (f". Pick one with dataset.name (looked for {name}_TRAIN.ts)." if found else ".")
        )
    return found[0]


def _download(name: str, cache: Path) -> None:
    from aeon.datasets import load_classification

    log.info("Downloading %s from the UCR/UEA archive into %s.", name, cache)
    try:
        load_classification(name, extract_path=str(cache))
    except Exception as exc:
        raise RunnerError(
            f"Could not download {name} ({str(exc).strip() or type(exc).__name__}). Without "
            f"network access, fetch {name}.zip from https://timeseriesclassification.com on "
            f"another machine and unpack {name}_TRAIN.ts and {name}_TEST.ts into {cache / name}/, "
            "or pass dataset.path=<the folder that holds them>."
        ) from None


def read_ts(file: Path) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    from aeon.datasets import load_from_ts_file

    try:
        x, y = load_from_ts_file(str(file))
    except Exception as exc:
        raise RunnerError(f"Cannot read {file} as a .ts file: {exc}") from None
    return x, np.asarray(y)


def _longest(x) -> int:
    return max(series.shape[-1] for series in x)


def _padded(x, length: int) -> torch.Tensor:
    """[N, C, t_i] arrays (or one 3-d array) -> float32 [N, length, C], NaN after each end."""
    out = np.full((len(x), length, x[0].shape[0]), np.nan, dtype=np.float32)
    for i, series in enumerate(x):
        out[i, : series.shape[-1]] = np.asarray(series, dtype=np.float32).T
    return torch.from_numpy(out)


def _channel_stats(series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per channel over every observed value (padding and gaps left out)."""
    flat = series.flatten(0, 1).double()
    seen = ~torch.isnan(flat)
    count = seen.sum(0).clamp(min=1)
    mean = torch.where(seen, flat, 0).sum(0) / count
    var = torch.where(seen, (flat - mean) ** 2, 0).sum(0) / count
    return mean.float(), var.sqrt().clamp(min=1e-8).float()


def _encode(labels: np.ndarray, index: dict) -> torch.Tensor:
    return torch.tensor([index[label] for label in labels.tolist()], dtype=torch.long)


def _natural(label: str) -> tuple:
    """Numeric labels in numeric order ('2' before '10'), others alphabetically."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)
