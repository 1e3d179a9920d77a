"""`trainer.loader` does what it says: auto, device (on-disk splits decoded first), dataloader."""

import pytest
import torch

import runner.data.loader
from runner.build import build_data, build_loaders
from runner.data.datasets import TensorSplit
from runner.data.loader import DeviceLoader, HostLoader
from runner.errors import RunnerError
from runner.train import run
from tests.fakes import photos


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def _loaders(cfg):
    data = build_data(cfg)
    return data, build_loaders(cfg, data, torch.device("cpu"), seed=0)


@pytest.mark.parametrize(
    ("in_memory", "kind", "expected"),
    [
        ("never", "auto", HostLoader),  # a folder left on disk is read by a DataLoader
        ("never", "device", DeviceLoader),  # ... unless the device path is forced
        ("never", "dataloader", HostLoader),
        ("always", "auto", DeviceLoader),  # in memory: served from the device
        ("always", "device", DeviceLoader),
        ("always", "dataloader", HostLoader),  # ... unless a DataLoader is forced
    ],
)
def test_each_loader_kind_picks_its_path(config, tmp_path, in_memory, kind, expected):
    folder = photos(tmp_path / "photos")
    cfg = config(
        "dataset=image_folder",
        f"dataset.path={folder}",
        "dataset.shape=[3,8,8]",
        f"dataset.in_memory={in_memory}",
        f"trainer.loader={kind}",
        "trainer.num_workers=0",
    )
    data, loaders = _loaders(cfg)
    assert [type(loader) for loader in loaders] == [expected] * 3
    # Every path serves the same images: the test split, in order, as uint8 on the device.
    served = torch.cat([x for x, _ in loaders[2]])
    assert served.dtype == torch.uint8 and served.shape == (len(data.test), 3, 8, 8)
    test = data.test
    on_disk = not isinstance(test, TensorSplit)
    reference = torch.stack([test[i][0] for i in range(len(test))]) if on_disk else test.images
    assert torch.equal(served, reference)


def test_a_forced_device_path_trains_an_on_disk_folder(config, tmp_path):
    folder = photos(tmp_path / "photos")
    metrics = run(
        config(
            "dataset=image_folder",
            f"dataset.path={folder}",
            "dataset.shape=[3,8,8]",
            "dataset.in_memory=never",
            "trainer.loader=device",
            "trainer.max_epochs=1",
            "trainer.batch_size=4",
            "model.hidden_dims=[16]",
            "logger=none",
        )
    )
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))


def test_a_split_too_big_for_the_device_is_a_clear_error(config, tmp_path, monkeypatch):
    folder = photos(tmp_path / "photos")
    monkeypatch.setattr(runner.data.loader, "free_memory", lambda device: 1000)
    cfg = config(
        "dataset=image_folder",
        f"dataset.path={folder}",
        "dataset.in_memory=never",
        "trainer.loader=device",
    )
    with pytest.raises(RunnerError, match=r"trainer.loader=device needs the \d+ images .* free"):
        _loaders(cfg)
