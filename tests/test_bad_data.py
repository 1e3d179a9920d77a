"""Bad data is named plainly before training: unreadable images, too few or mismatched classes."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data.datasets import image_folder
from runner.data.loader import HostLoader
from runner.errors import RunnerError
from runner.train import run
from tests.fakes import photos

SMALL = ("trainer.max_epochs=1", "trainer.batch_size=4", "logger=none", "dataset.shape=[3,8,8]")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def test_an_undecodable_image_is_named_or_skipped_with_a_count(tmp_path, caplog):
    folder = photos(tmp_path / "photos")
    bad = folder / "dog" / "notes.jpg"
    bad.write_text("not an image")
    cut = folder / "cat" / "cut.png"
    cut.write_bytes((folder / "cat" / "0.png").read_bytes()[:60])
    with pytest.raises(RunnerError, match="2 image file") as e:
        image_folder(str(folder), shape=(3, 8, 8))
    assert str(bad) in str(e.value) and str(cut) in str(e.value)
    assert "dataset.skip_invalid=true" in str(e.value)
    with caplog.at_level(logging.WARNING, logger="runner"):
        data = image_folder(str(folder), shape=(3, 8, 8), skip_invalid=True)
    assert len(data.train) + len(data.val) + len(data.test) == 20
    assert "Skipped 2 unreadable image file(s)" in caplog.text


def test_the_cli_names_the_file_and_exits_2(tmp_path, cli_error):
    folder = photos(tmp_path / "photos")
    (folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    err = cli_error(tmp_path / "r", "dataset=image_folder", f"dataset.path={folder}")
    assert f"error: 1 image file(s) cannot be read: {folder / 'dog' / 'broken.jpg'}" in err, err


def test_an_image_that_fails_only_when_decoded_in_a_worker_is_named(tmp_path):
    folder = photos(tmp_path / "photos", per_class=4)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")
    jpeg = (tmp_path / "x.jpg").read_bytes()
    (folder / "cat" / "short.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # header fine, data cut
    data = image_folder(str(folder), shape=(3, 8, 8), in_memory="never", test_fraction=0.3)
    loaders = [
        HostLoader(s, 20, torch.device("cpu"), num_workers=1)
        for s in (data.train, data.val, data.test)
    ]
    with pytest.raises(RunnerError) as e:
        for loader in loaders:
            list(loader)
    message = str(e.value)
    assert message.startswith(f"The image {folder / 'cat' / 'short.jpg'} cannot be decoded")
    assert "Traceback" not in message and "worker" not in message


@pytest.mark.slow
def test_a_classifier_on_one_class_stops_at_start_up_and_an_autoencoder_trains(
    tmp_path, cli_error, config
):
    folder = photos(tmp_path / "photos", classes=("cat",), per_class=20)
    data = ["dataset=image_folder", f"dataset.path={folder}", *SMALL]
    err = cli_error(tmp_path / "r", "model=cnn", *data)
    assert "needs at least 2 classes, but the dataset has 1 (cat)" in err, err
    metrics = run(config("model=ae", "model.hidden_dims=[16]", *data))
    assert np.isfinite(metrics["test/loss"])


def test_an_empty_class_folder_is_named(tmp_path):
    folder = photos(tmp_path / "photos")
    (folder / "bird").mkdir()
    (folder / "bird" / "readme.txt").write_text("photos to come")
    with pytest.raises(RunnerError, match=f"class folder {folder / 'bird'} hold no readable"):
        image_folder(str(folder), shape=(3, 8, 8))


def test_train_val_test_folders_with_other_classes_are_named(tmp_path):
    root = tmp_path / "set"
    photos(root / "train", classes=("cat", "dog", "owl"))
    photos(root / "test", classes=("cat", "dog", "emu"))
    with pytest.raises(RunnerError) as e:
        image_folder(str(root), shape=(3, 8, 8))
    assert f"{root / 'test'} has other class folders than {root / 'train'}" in str(e.value)
    assert "it lacks owl; it adds emu" in str(e.value)


def test_folder_of_loose_images_asks_for_class_folders(tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "a.png")
    with pytest.raises(RunnerError, match="has no class folders. Put the images in one sub-folder"):
        image_folder(str(folder))


def test_labels_outside_the_models_classes_stop_the_run_at_start_up(config, tmp_path):
    with pytest.raises(RunnerError, match=r"labels \[5, 6, 7, 8, 9\] outside 0..4"):
        run(config("model=cnn", "model.num_classes=5", "logger=none"))
    assert not (tmp_path / "run" / "checkpoints").exists()
