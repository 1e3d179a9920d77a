"""Datasets, splits, the device loader and batch augmentation."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data import BatchAugmentation, DeviceLoader, TensorSplit
from runner.data.datasets import digits, image_folder, torchvision_images
from runner.errors import RunnerError
from tests.fakes import write_mnist_like


def test_digits_splits_are_disjoint_stratified_and_seeded():
    data = digits(val_fraction=0.1, split_seed=0)
    assert data.shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert data.train.images.dtype == torch.uint8
    counts = torch.bincount(data.val.labels, minlength=10)
    assert counts.min() >= 13 and counts.max() <= 15  # ~144 / 10 per class
    again = digits(val_fraction=0.1, split_seed=0)
    assert torch.equal(again.val.images, data.val.images)
    other = digits(val_fraction=0.1, split_seed=1)
    assert not torch.equal(other.val.images, data.val.images)


def test_a_cached_split_is_scikit_learns_and_spares_its_import(tmp_path):
    """The second run on the same labels reads the split back, without importing scikit-learn."""
    code = (
        "import sys, numpy as np; from runner.data.datasets import stratified_split; "
        "keep, held = stratified_split(np.arange(200) % 7, 0.2, 3); "
        "print('sklearn' in sys.modules, held.tolist())"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    (imported_first, held_first), (imported_again, held_again) = (
        r.stdout.split(" ", 1) for r in runs
    )
    assert (imported_first, imported_again) == ("True", "False"), runs[1].stderr
    assert held_first == held_again
    from sklearn.model_selection import train_test_split

    labels = np.arange(200) % 7
    _, held = train_test_split(np.arange(200), test_size=0.2, stratify=labels, random_state=3)
    assert held_again.strip() == str(sorted(held.tolist()))


def test_train_subset_keeps_n_examples_per_class_balance():
    data = digits(train_subset=100, split_seed=3)
    assert len(data.train) == 100
    assert torch.bincount(data.train.labels, minlength=10).tolist() == [10] * 10
    with pytest.raises(RunnerError, match="train_subset=5000 is larger"):
        digits(train_subset=5000)


def test_mnist_format_files_load_through_torchvision_and_are_cached(tmp_path):
    root = write_mnist_like(tmp_path, "FashionMNIST", n_train=200, n_test=50)
    data = torchvision_images("FashionMNIST", str(root), download=False, val_fraction=0.1)
    assert data.shape == (1, 28, 28)
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 50)
    assert data.class_names[0] == "T-shirt/top"
    cache = root / "FashionMNIST" / "cache" / "train-uint8.pt"
    assert cache.exists()
    # The cache alone is enough now: the raw files can go.
    for f in (root / "FashionMNIST" / "raw").iterdir():
        f.unlink()
    again = torchvision_images("FashionMNIST", str(root), download=False, val_fraction=0.1)
    assert torch.equal(again.train.images, data.train.images)


def test_original_gz_files_load_without_download(tmp_path):
    # What the missing-files message tells offline users to do: put the four .gz files in raw/.
    root = write_mnist_like(tmp_path, "MNIST", n_train=60, n_test=20, compress=True)
    assert all(p.suffix == ".gz" for p in (root / "MNIST" / "raw").iterdir())
    data = torchvision_images("MNIST", str(root), download=False, val_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (54, 6, 20)


@pytest.mark.slow
def test_parallel_trials_unpack_and_cache_the_same_files_safely(tmp_path):
    # A sweep's first trials all find the .gz files packed and the cache empty at once.
    root = write_mnist_like(tmp_path, "MNIST", n_train=2000, n_test=500, compress=True)
    script = (
        "import sys; from runner.data.datasets import torchvision_images as t; "
        "d = t('MNIST', sys.argv[1], download=False); "
        "print(len(d.train) + len(d.val) + len(d.test))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert outputs == ["2500"] * 4
    leftovers = [p.name for p in (root / "MNIST").rglob("*") if p.name.startswith("tmp")]
    assert leftovers == []


def test_read_only_gz_files_are_mirrored_not_written_beside(tmp_path, monkeypatch):
    import runner.data.datasets as datasets

    root = write_mnist_like(tmp_path / "shared", "MNIST", n_train=60, n_test=20, compress=True)
    raw = root / "MNIST" / "raw"
    before = sorted(p.name for p in raw.iterdir())
    # As if `root` were a read-only shared folder (tests may run as root, who can write anywhere).
    monkeypatch.setattr(datasets, "_writable", lambda path: not str(path).startswith(str(root)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = torchvision_images("MNIST", str(root), download=True, val_fraction=0.1)
    assert len(data.test) == 20 and data.train.images.shape[1:] == (1, 28, 28)
    assert sorted(p.name for p in raw.iterdir()) == before  # nothing unpacked beside the originals
    assert (tmp_path / "cache" / "hydra-runner" / "MNIST" / "train-uint8.pt").exists()


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    with pytest.raises(RunnerError) as err:
        torchvision_images("MNIST", str(tmp_path), download=False)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "MNIST" / "raw") in message


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def _write_pngs(folder, classes=("cat", "dog"), per_class=12, size=10):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8) + k * 150
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def test_image_folder_one_folder_is_split_and_resized(tmp_path):
    _write_pngs(tmp_path / "photos")
    data = image_folder(
        str(tmp_path / "photos"), shape=(3, 16, 16), val_fraction=0.25, test_fraction=0.25
    )
    assert data.class_names == ["cat", "dog"]
    assert data.train.images.shape[1:] == (3, 16, 16)
    assert len(data.train) + len(data.val) + len(data.test) == 24
    gray = image_folder(str(tmp_path / "photos"), shape=(1, 8, 8))
    assert gray.shape == (1, 8, 8)


def test_image_folder_with_train_and_test_folders_on_disk(tmp_path):
    _write_pngs(tmp_path / "set" / "train", per_class=10)
    _write_pngs(tmp_path / "set" / "test", per_class=3)
    data = image_folder(str(tmp_path / "set"), shape=(3, 8, 8), in_memory="never", val_fraction=0.2)
    assert len(data.test) == 6 and len(data.val) == 4 and len(data.train) == 16
    image, label = data.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 8, 8)


def test_missing_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RunnerError, match="is not a folder. Expected one sub-folder per class"):
        image_folder(str(tmp_path / "nope"))


def test_device_loader_covers_every_example_in_an_order_set_by_seed_and_epoch():
    split = TensorSplit(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10))
    loader = DeviceLoader(split, 4, torch.device("cpu"), shuffle=True, seed=3)
    assert len(loader) == 3
    first = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(torch.cat([y for _, y in loader]), first)  # same epoch, same order
    loader.set_epoch(1)
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(second, first) and sorted(second.tolist()) == list(range(10))
    replay = DeviceLoader(split, 4, torch.device("cpu"), shuffle=True, seed=3)
    replay.set_epoch(1)  # a resumed run replays epoch 1 without any saved generator state
    assert torch.equal(torch.cat([y for _, y in replay]), second)
    dropped = DeviceLoader(split, 4, torch.device("cpu"), shuffle=True, drop_last=True)
    assert len(dropped) == 2 and sum(len(y) for _, y in dropped) == 8


def test_augmentation_moves_pixels_per_sample_and_keeps_the_range():
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 12, 12)
    x[:, :, 4:8, 4:8] = 1.0
    aug = BatchAugmentation(rotation=30, translate=0.2, scale=0.1, brightness=0.2, contrast=0.2)
    y = aug(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    changed = (y - x).abs().flatten(1).sum(1)
    assert (changed > 0.5).all()  # every sample moved
    assert not torch.allclose(y[0], y[1])  # with its own parameters
    assert not BatchAugmentation().enabled
