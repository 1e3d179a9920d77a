"""Other ways through the loop: DataLoader path, image folders, CIFAR files, precision, compile."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data.datasets import torchvision_images
from runner.train import run
from runner.training.checkpoint import load_checkpoint
from runner.training.device import resolve_precision, select_device


def test_dataloader_path_matches_the_device_loader_path(config, tmp_path):
    common = ("trainer.max_epochs=2", "trainer.batch_size=32", "trainer.deterministic=true")
    on_device = run(config(*common, "trainer.loader=device", run_dir=tmp_path / "a"))
    host = run(
        config(
            *common, "trainer.loader=dataloader", "trainer.num_workers=0", run_dir=tmp_path / "b"
        )
    )
    # Different shuffling orders, same model and data: both learn to a similar loss.
    assert host["test/loss"] == pytest.approx(on_device["test/loss"], rel=0.25)


def test_image_folder_trains_a_classifier_end_to_end_from_disk(config, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for part, n in (("train", 24), ("test", 8)):
        for k, name in enumerate(("dark", "light")):
            folder = tmp_path / "photos" / part / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 80, (12, 12, 3), dtype=np.uint8) + 170 * k).save(
                    folder / f"{i}.png"
                )
    metrics = run(
        config(
            "model=cnn",
            "model.channels=[8,16]",
            "dataset=image_folder",
            f"dataset.path={tmp_path / 'photos'}",
            "dataset.shape=[3,16,16]",
            "dataset.in_memory=never",
            "trainer.num_workers=1",
            "trainer.batch_size=8",
            "trainer.max_epochs=3",
            "optimized_metric=val/acc",
            "optimized_mode=max",
        )
    )
    assert metrics["test/acc"] == 1.0  # dark vs light is trivially separable


def test_cifar_batches_are_read_as_channels_first(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = [name for name, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list]
    for name in files:
        data = rng.integers(0, 256, (20, 3 * 32 * 32), dtype=np.uint8)
        data[:, :1024] = 255  # red plane saturated: checks the channel order survives
        labels = list(np.arange(20) % 10)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    monkeypatch.setattr(
        tvd.CIFAR10, "_check_integrity", lambda self: True
    )  # our files, not the md5s
    monkeypatch.setattr(
        tvd.CIFAR10, "_load_meta", lambda self: setattr(self, "classes", list("0123456789"))
    )
    data = torchvision_images("CIFAR10", str(tmp_path), download=False, shape=(3, 32, 32))
    assert data.shape == (3, 32, 32) and len(data.test) == 20
    assert (data.train.images[:, 0] == 255).all() and not (data.train.images[:, 1] == 255).all()


def test_precision_choices_resolve_per_device():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "32"
    assert resolve_precision("16-mixed", cpu) == "32"  # CUDA-only: falls back with a warning
    assert resolve_precision("bf16-mixed", cpu) == "bf16-mixed"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type in (expected, "mps")


def test_bf16_autocast_trains_on_cpu(config):
    metrics = run(config("model=deep_ae", "trainer.precision=bf16-mixed", "trainer.batch_size=32"))
    assert np.isfinite(metrics["test/loss"]) and metrics["test/loss"] < 0.1


@pytest.mark.slow
def test_compiled_networks_train_and_save_plain_state_dicts(config, tmp_path):
    metrics = run(config("model=deep_ae", "trainer.compile=true", "trainer.max_epochs=1"))
    assert np.isfinite(metrics["test/loss"])
    keys = load_checkpoint(tmp_path / "run")["model"].keys()
    assert not any("_orig_mod" in k for k in keys)
