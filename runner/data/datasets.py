"""Dataset registry: every builder returns train/val/test splits plus the data's shape and classes.

Datasets that fit in memory are decoded once into uint8 tensors [N, C, H, W] and cached, so the
training loop can serve them from the device without per-sample Python work. Large image folders
stay on disk and are read by a DataLoader with workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch.utils.data import Dataset, Subset

from runner.errors import RunnerError

# The share of examples a split takes.
SplitFraction = Annotated[float, Field(gt=0, lt=1)]

log = logging.getLogger(__name__)


@dataclass
class TensorSplit:
    """A split held in memory: uint8 images [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> TensorSplit:
        index = torch.as_tensor(index, dtype=torch.long)
        return TensorSplit(self.images[index], self.labels[index])


Split = TensorSplit | Dataset


@dataclass
class ImageData:
    """What a dataset builder returns; `shape` is (C, H, W) of one image."""

    train: Split
    val: Split
    test: Split
    shape: tuple[int, int, int]
    num_classes: int
    class_names: list[str]


# ---------------------------------------------------------------------------------------------
# Splitting helpers (scikit-learn does the stratification)


def stratified_split(
    labels: np.ndarray, test_size: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (keep, held_out), stratified by label where every class can be represented.

    scikit-learn draws the split; it is cached by the labels, the size, the seed and
    scikit-learn's version, so later runs on the same data (a sweep's trials, a resumed run)
    read it back instead of importing scikit-learn again (about a second)."""
    from importlib.metadata import version

    labels = np.asarray(labels, dtype=np.int64)
    what = repr((test_size, seed, version("scikit-learn"))).encode()
    key = hashlib.sha256(labels.tobytes() + what).hexdigest()[:32]
    cached = user_cache_dir() / "splits" / f"{key}.npz"
    try:
        with np.load(cached) as saved:
            return saved["keep"], saved["held"]
    except (OSError, KeyError, ValueError):  # not cached yet, or a broken file: draw it again
        pass
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    try:
        keep, held = train_test_split(
            index, test_size=test_size, stratify=labels, random_state=seed
        )
    except ValueError:  # too few examples per class to stratify: a seeded plain split
        keep, held = train_test_split(index, test_size=test_size, random_state=seed)
    keep, held = np.sort(keep), np.sort(held)
    try:  # a private temporary name: parallel trials may cache the same split at once
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as file:
            np.savez(file, keep=keep, held=held)
        os.replace(tmp, cached)
    except OSError as exc:  # a read-only home only costs the next run the import
        log.debug("Split not cached (%s).", exc)
    return keep, held


def carve_splits(
    train: Split,
    test: Split,
    labels: np.ndarray,
    val_fraction: float,
    train_subset: int | None,
    split_seed: int,
) -> tuple[Split, Split, Split]:
    """Carve a seeded, stratified val split from train, then keep `train_subset` examples."""
    keep, val_index = stratified_split(labels, val_fraction, split_seed)
    keep = keep[keep_subset(labels[keep], train_subset, split_seed)]
    return take(train, keep), take(train, val_index), test


def keep_subset(labels: np.ndarray, train_subset: int | None, seed: int) -> np.ndarray:
    """Indices of `train_subset` examples, stratified and seeded (all of them for None)."""
    if train_subset is None or train_subset == len(labels):
        return np.arange(len(labels))
    if train_subset > len(labels):
        raise RunnerError(
            f"dataset.train_subset={train_subset} is larger than the {len(labels)} training "
            "examples left after the validation split; lower it or set it to null."
        )
    keep, _ = stratified_split(labels, len(labels) - train_subset, seed)
    return keep


def take(split: Split, index: np.ndarray) -> Split:
    """The examples at `index` of a split (a view for in-memory splits)."""
    if isinstance(split, TensorSplit):
        return split.subset(index)
    return Subset(split, index.tolist())


# ---------------------------------------------------------------------------------------------
# Caching decoded tensors


def _writable(path: Path) -> bool:
    """Whether files may be created at `path`. Mode bits count even for root, who could write
    anyway: a folder marked read-only is shared data to leave alone."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK) and bool(probe.stat().st_mode & 0o222)


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hydra-runner"


def cache_dir_for(preferred: Path, name: str) -> Path:
    """`preferred` when it can be written, else the user's cache folder."""
    return preferred if _writable(preferred) else user_cache_dir() / name


def load_or_build(cache_file: Path, build: callable) -> TensorSplit:
    """Load a cached TensorSplit, or build it and cache it atomically."""
    if cache_file.exists():
        try:
            blob = torch.load(cache_file, weights_only=True)
            return TensorSplit(blob["images"], blob["labels"])
        except Exception:
            cache_file.unlink(missing_ok=True)  # a broken cache is rebuilt, not fatal
    split = build()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary name: parallel sweep trials may build the same cache at once.
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
    os.close(fd)
    torch.save({"images": split.images, "labels": split.labels}, tmp)
    os.replace(tmp, cache_file)
    return split


# ---------------------------------------------------------------------------------------------
# Builders (each one is a `_target_` in conf/dataset/)


def digits(
    val_fraction: SplitFraction = 0.1,
    train_subset: PositiveInt | None = None,
    split_seed: int = 0,
    test_fraction: SplitFraction = 0.2,
    shape: Sequence[int] = (1, 8, 8),
    num_classes: int = 10,
) -> ImageData:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images): no download needed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))
    images = images.unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    full = TensorSplit(images, labels)
    train_index, test_index = stratified_split(bunch.target, test_fraction, split_seed)
    train, test = full.subset(train_index), full.subset(test_index)
    train, val, test = carve_splits(
        train, test, train.labels.numpy(), val_fraction, train_subset, split_seed
    )
    _check_declared(tuple(images.shape[1:]), shape, 10, num_classes, "digits")
    return ImageData(train, val, test, (1, 8, 8), 10, [str(i) for i in range(10)])


TorchvisionName = Literal["MNIST", "FashionMNIST", "KMNIST", "CIFAR10"]


def torchvision_images(
    name: TorchvisionName,
    root: str,
    download: bool = True,
    val_fraction: SplitFraction = 0.1,
    train_subset: PositiveInt | None = None,
    split_seed: int = 0,
    shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    cache_dir: str | None = None,
) -> ImageData:
    """MNIST, Fashion-MNIST, KMNIST or CIFAR-10 through torchvision, decoded once and cached."""
    root_path = Path(root).expanduser()
    cache = Path(cache_dir) if cache_dir else cache_dir_for(root_path / name / "cache", name)
    splits = {}
    for train in (True, False):
        part = "train" if train else "test"
        splits[part] = load_or_build(
            cache / f"{part}-uint8.pt",
            lambda train=train: _decode_torchvision(name, root_path, cache, train, download),
        )
    classes = _class_names(name, cache, num_classes)
    found_shape = tuple(splits["train"].images.shape[1:])
    _check_declared(found_shape, shape, len(classes), num_classes, name)
    train, val, test = carve_splits(
        splits["train"],
        splits["test"],
        splits["train"].labels.numpy(),
        val_fraction,
        train_subset,
        split_seed,
    )
    return ImageData(train, val, test, found_shape, len(classes), classes)


def _class_names(name: str, cache: Path, num_classes: int) -> list[str]:
    """The dataset's class names, kept beside its cache: a run on cached tensors then need not
    import torchvision.datasets (which loads torchvision's model zoo, over a second)."""
    file = cache / "classes.json"
    try:
        return list(json.loads(file.read_text()))
    except (OSError, ValueError):
        pass
    import torchvision.datasets as tvd

    classes = list(getattr(getattr(tvd, name), "classes", [str(i) for i in range(num_classes)]))
    try:  # under a private name, then renamed: parallel trials may write it at once
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(classes, f)
        os.replace(tmp, file)
    except OSError:
        pass  # a read-only cache folder: the names are looked up again next time
    return classes


def _decode_torchvision(name: str, root: Path, cache: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, name)
    source = _readable_root(name, root, cache)
    try:
        ds = cls(str(source), train=train, download=download)
    except Exception as exc:
        raise RunnerError(_missing_files_message(cls, name, root, download, exc)) from None
    data = torch.as_tensor(np.asarray(ds.data))
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # CIFAR is NHWC
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return TensorSplit(images.contiguous(), labels)


def _readable_root(name: str, root: Path, cache: Path) -> Path:
    """Unpack MNIST-style .gz files, which torchvision unpacks only while downloading, so that
    `download=false` works on a folder of the original files. They are unpacked beside the
    originals, or into the cache when that folder is read-only (shared data is left alone)."""
    from torchvision.datasets.utils import extract_archive

    raw = root / name / "raw"
    packed = sorted(raw.glob("*.gz")) if raw.is_dir() else []
    if not packed:
        return root
    source = root if _writable(raw) else cache / "mirror"
    unpacked = source / name / "raw"
    unpacked.mkdir(parents=True, exist_ok=True)
    for file in packed:
        if not (unpacked / file.stem).exists():
            # Unpacked aside, then renamed: a parallel trial never reads a half-written file.
            with tempfile.TemporaryDirectory(dir=unpacked) as aside:
                extract_archive(str(file), aside)
                os.replace(Path(aside) / file.stem, unpacked / file.stem)
    return source


def _missing_files_message(cls, name: str, root: Path, download: bool, exc: Exception) -> str:
    if hasattr(cls, "resources"):  # MNIST family
        files = [os.path.basename(str(entry[0])) for entry in cls.resources]
        folder = root / name / "raw"
    else:  # CIFAR
        files = [cls.filename]
        folder = root
    why = "the download failed" if download else "dataset.download=false and the files are missing"
    return (
        f"Could not load {name} from {root} ({why}: {str(exc).strip() or type(exc).__name__}). "
        f"Without network access, fetch {', '.join(files)} on another machine and put them in "
        f"{folder}/, or point dataset.root at the folder that holds {name}/."
    )


def _check_declared(found, declared, classes_found, classes_declared, name) -> None:
    if declared is not None and tuple(declared) != tuple(found):
        raise RunnerError(
            f"dataset.shape={list(declared)} does not match {name}'s images {list(found)}; "
            "remove the override or fix it."
        )
    if classes_declared is not None and classes_declared != classes_found:
        raise RunnerError(
            f"dataset.num_classes={classes_declared} but {name} has {classes_found} classes."
        )


def image_folder(
    path: str,
    shape: Sequence[int] = (3, 64, 64),
    num_classes: int | None = None,
    val_fraction: SplitFraction = 0.1,
    test_fraction: SplitFraction = 0.1,
    train_subset: PositiveInt | None = None,
    split_seed: int = 0,
    in_memory: Literal["auto", "always", "never"] = "auto",
    max_memory_mb: PositiveInt = 2048,
    cache_dir: str | None = None,
    skip_invalid: bool = False,
) -> ImageData:
    """A user's class-per-folder images, resized to `shape`.

    Either one folder (`path/<class>/*.jpg`, split by seeded fractions) or three
    (`path/train`, `path/val`, `path/test`; a missing val is carved from train). Every image's
    header is checked while the file list is built: a file that cannot be opened stops the run
    with its path, or is skipped with `skip_invalid`.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise RunnerError(
            f"dataset.path={path!r} is not a folder. Expected one sub-folder per class "
            "(path/cat/001.jpg, path/dog/002.jpg, ...) or train/, val/ and test/ folders that "
            "each hold class sub-folders."
        )
    channels, height, width = (int(s) for s in shape)
    if channels not in (1, 3):
        raise RunnerError(f"dataset.shape={list(shape)}: the channel count must be 1 or 3.")
    folders = {part: root / part for part in ("train", "val", "test") if (root / part).is_dir()}
    if folders and "train" not in folders:
        raise RunnerError(f"{root} has {sorted(folders)} folders but no train/ folder.")
    folders = folders or {"all": root}
    invalid: list[str] = []
    sources = {
        part: _image_folder(folder, channels, height, width, invalid)
        for part, folder in folders.items()
    }
    _report_invalid(invalid, skip_invalid)
    classes = _same_classes(sources, folders)
    if num_classes is not None and num_classes != len(classes):
        raise RunnerError(
            f"dataset.num_classes={num_classes} but {root} has {len(classes)} class folders."
        )
    total = sum(len(ds) for ds in sources.values())
    fits = total * channels * height * width <= max_memory_mb * 2**20
    if in_memory == "always" or (in_memory == "auto" and fits):
        # Not inside `root`: ImageFolder would take the cache folder for a class.
        cache = Path(cache_dir) if cache_dir else user_cache_dir() / "image_folder"
        sources = {
            part: load_or_build(cache / f"{_fingerprint(ds, shape)}.pt", partial(decode_split, ds))
            for part, ds in sources.items()
        }
    split_labels = {part: np.asarray(_labels(ds)) for part, ds in sources.items()}
    if "all" in sources:
        data, labels = sources["all"], split_labels["all"]
        rest, test_index = stratified_split(labels, test_fraction, split_seed)
        train_pool, test = take(data, rest), take(data, test_index)
        train, val, test = carve_splits(
            train_pool, test, labels[rest], val_fraction, train_subset, split_seed
        )
    else:
        test = sources.get("test")
        if test is None:
            raise RunnerError(f"{root} has a train/ folder but no test/ folder.")
        if "val" in sources:
            keep = keep_subset(split_labels["train"], train_subset, split_seed)
            train, val = take(sources["train"], keep), sources["val"]
        else:
            train, val, test = carve_splits(
                sources["train"],
                test,
                split_labels["train"],
                val_fraction,
                train_subset,
                split_seed,
            )
    return ImageData(train, val, test, (channels, height, width), len(classes), classes)


class UnreadableImage(RunnerError):
    """An image file that passed the header check but cannot be decoded, named by its path."""

    def __init__(self, message: str) -> None:
        # Raised in a DataLoader worker, it reaches the main process re-created as
        # type(exc)("Caught ... Original Traceback ... UnreadableImage: <message>"), a traceback
        # in an error message: keep the message, so the user reads one paragraph.
        super().__init__(message.rstrip().rsplit("UnreadableImage: ", 1)[-1])


def _load_rgb(path: str):
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except Exception as exc:
        raise UnreadableImage(
            f"The image {path} cannot be decoded ({type(exc).__name__}: {exc}). Remove it or "
            "save it again."
        ) from None


def _image_folder(folder: Path, channels: int, height: int, width: int, invalid: list[str]):
    """torchvision's ImageFolder over `folder`, listing only files whose image header can be
    read; the others go to `invalid` (path and reason). Reading headers costs no decoding."""
    import torchvision.datasets as tvd
    from PIL import Image

    def readable(path: str) -> bool:
        if not tvd.folder.has_file_allowed_extension(path, tvd.folder.IMG_EXTENSIONS):
            return False  # not an image by name (notes, .DS_Store): ignored, as ImageFolder does
        try:
            with Image.open(path) as image:
                image.verify()  # the header and, for PNG, the chunk checksums; no pixels decoded
            return True
        except Exception as exc:
            invalid.append(f"{path} ({type(exc).__name__}: {exc})")
            return False

    from runner.data.files import image_transform  # also what runner.predict applies

    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise RunnerError(
            f"{folder} has no class folders. Put the images in one sub-folder per class "
            f"({folder}/cat/001.jpg, {folder}/dog/002.jpg, ...); a single class folder is "
            "enough for an autoencoder."
        )
    try:
        ds = tvd.ImageFolder(
            str(folder),
            transform=image_transform(channels, height, width),
            loader=_load_rgb,
            is_valid_file=readable,
            allow_empty=True,
        )
    except (FileNotFoundError, RuntimeError, PermissionError) as exc:
        raise RunnerError(f"Cannot read images from {folder}: {exc}") from None
    counts = np.bincount([label for _, label in ds.samples], minlength=len(ds.classes))
    empty = [name for name, n in zip(ds.classes, counts) if n == 0]
    if empty:
        raise RunnerError(
            f"The class folder{'s' if len(empty) > 1 else ''} "
            + ", ".join(str(folder / name) for name in empty)
            + " hold no readable images (.jpg, .png, ...). Add images or remove the folder: "
            "every class folder is a class the model must learn."
        )
    return ds


def _report_invalid(invalid: list[str], skip: bool) -> None:
    if not invalid:
        return
    shown = "; ".join(invalid[:5]) + (f"; and {len(invalid) - 5} more" if len(invalid) > 5 else "")
    if skip:
        log.warning(
            "Skipped %d unreadable image file(s) (dataset.skip_invalid=true): %s.",
            len(invalid),
            shown,
        )
        return
    raise RunnerError(
        f"{len(invalid)} image file(s) cannot be read: {shown}. Remove or replace them, or set "
        "dataset.skip_invalid=true to train without them."
    )


def _same_classes(sources: dict, folders: dict[str, Path]) -> list[str]:
    """The class names, which train/, val/ and test/ must share (a label means one class)."""
    classes = list(next(iter(sources.values())).classes)
    for part, ds in sources.items():
        if list(ds.classes) != classes:
            missing = sorted(set(classes) - set(ds.classes))
            extra = sorted(set(ds.classes) - set(classes))
            raise RunnerError(
                f"{folders[part]} has other class folders than {next(iter(folders.values()))}"
                + (f": it lacks {', '.join(missing)}" if missing else "")
                + (f"{';' if missing else ':'} it adds {', '.join(extra)}" if extra else "")
                + ". train/, val/ and test/ must hold the same class folders, so that every "
                "label means the same class in each split."
            )
    return classes


def _labels(split) -> list[int]:
    if isinstance(split, TensorSplit):
        return split.labels.tolist()
    return [label for _, label in split.samples]


def _fingerprint(ds, shape: Sequence[int]) -> str:
    digest = hashlib.sha1(repr(list(shape)).encode())
    for file, label in ds.samples:
        stat = os.stat(file)
        digest.update(f"{file}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def decode_split(ds, num_workers: int | None = None) -> TensorSplit:
    """Every image of an on-disk split, decoded once into a uint8 TensorSplit."""
    from tqdm.auto import tqdm

    workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=workers)
    images, labels = zip(*tqdm(loader, desc=f"decoding {len(ds)} images", leave=False))
    return TensorSplit(torch.cat(images), torch.as_tensor(torch.cat(labels)).long())
