"""`runner.eval`: a finished run tested again, from its folder, into a folder of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from runner.entry import with_overrides
from runner.errors import RunnerError
from runner.eval import evaluate_split
from runner.runs import load_run
from runner.train import run
from tests.fakes import write_mnist_like

QUIET = ("trainer.progress_bar=false", "trainer.device=cpu")


def evaluate(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "runner.eval", *QUIET, *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_eval_reproduces_the_test_metrics_of_training_in_a_new_folder(tmp_path, config):
    trained = tmp_path / "cnn"
    run(config("model=cnn", "model.channels=[8,16]", run_dir=trained))
    before = sorted(p.name for p in trained.rglob("*"))
    proc = evaluate(tmp_path, f"ckpt_path={trained}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    expected = json.loads((trained / "metrics.json").read_text())["metrics"]
    tests = {k: v for k, v in expected.items() if k.startswith("test/")}
    assert evaluated == tests  # exactly, per-class accuracies included
    assert list((tmp_path / "eval").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in trained.rglob("*")) == before  # the run is left alone


def test_eval_takes_another_split_checkpoint_and_dataset_of_the_same_shape(tmp_path, config):
    root = write_mnist_like(tmp_path / "data", "FashionMNIST")
    write_mnist_like(root, "MNIST")
    trained = tmp_path / "ae"
    common = ("dataset=mnist", f"dataset.root={root}", "model.hidden_dims=[32]")
    run(config(*common, run_dir=trained))
    saved = load_run(trained, "last")
    composed = config("dataset=fashion_mnist", f"dataset.root={root}")
    cfg = with_overrides(saved.config, composed, ["dataset=fashion_mnist", f"dataset.root={root}"])
    assert cfg.dataset.name == "FashionMNIST" and cfg.model.hidden_dims == [32]
    metrics = evaluate_split(saved, cfg, "val", tmp_path / "out")
    # The model's metrics, the baselines it is measured against and what its codes are worth,
    # on the split it was given.
    baselines = {"val/pca_mse", "val/pca_components", "val/mean_image_mse"}
    codes = {"val/probe_acc", "val/pca_probe_acc", "val/denoise_mse", "val/noisy_mse"}
    assert set(metrics) == {"val/loss", "val/recon_mse", *baselines, *codes}
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["split"] == "val" and summary["run"].endswith("last.pt")


def test_eval_refuses_data_of_another_shape(tmp_path, config, tiny_mnist):
    trained = tmp_path / "ae"
    run(config("model.hidden_dims=[32]", run_dir=trained))  # 8x8 digits
    saved = load_run(trained)
    mnist = config("dataset=mnist", f"dataset.root={tiny_mnist}")
    cfg = with_overrides(saved.config, mnist, ["dataset=mnist", f"dataset.root={tiny_mnist}"])
    with pytest.raises(RunnerError, match=r"trained on images of shape \[1, 8, 8\]"):
        evaluate_split(saved, cfg, "test", tmp_path / "out")


@pytest.mark.slow
def test_eval_of_a_folder_that_is_no_run_stops_before_writing(tmp_path):
    (tmp_path / "notarun").mkdir()
    proc = evaluate(tmp_path, f"ckpt_path={tmp_path / 'notarun'}", "hydra.run.dir=out")
    assert proc.returncode == 2 and "is not a finished run" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
    proc = evaluate(tmp_path, "checkpoint=newest", "hydra.run.dir=out")
    assert proc.returncode == 2 and "checkpoint='newest' is not a valid choice" in proc.stderr


def test_a_run_rebuilt_from_its_checkpoint_names_its_classes(tmp_path, config):
    run(config("model=cnn", "model.channels=[8]", "trainer.max_epochs=1", run_dir=tmp_path / "r"))
    loaded = load_run(tmp_path / "r")
    assert loaded.model.class_names == [str(i) for i in range(10)]
    assert OmegaConf.select(loaded.config, "model._target_") == "runner.models.CNN"
    assert not loaded.model.training


def test_a_run_trained_with_a_regularization_override_can_be_reused(tmp_path, config):
    """Its saved config holds values, no ${regularization.*} references: still valid."""
    trained = tmp_path / "cnn"
    common = ("model=cnn", "model.channels=[8]", "trainer.max_epochs=1")
    run(config(*common, "regularization.normalization=layer", run_dir=trained))
    saved = load_run(trained)
    cfg = with_overrides(saved.config, config(), [])
    assert cfg.model.normalization == "layer"
    assert set(evaluate_split(saved, cfg, "test", tmp_path / "out")) >= {"test/acc", "test/loss"}


def test_data_of_another_shape_is_refused_before_anything_is_written(tmp_path, config):
    trained = tmp_path / "ae"
    run(config("model.hidden_dims=[32]", "trainer.max_epochs=1", run_dir=trained))  # 8x8 digits
    proc = evaluate(tmp_path, f"ckpt_path={trained}", "dataset=mnist", "hydra.run.dir=out")
    assert proc.returncode == 2 and "trained on images of shape [1, 8, 8]" in proc.stderr
    assert not (tmp_path / "out").exists()
