"""Defaults sized to the data: a family's recipe becomes a batch size, epochs and a learning rate
for the training split at hand; what a user sets wins; the run keeps what it resolved."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from runner.build import build_model, build_optimizers
from runner.models import GAN, VAE
from runner.models.base import Recipe
from runner.models.pca import fit_pca
from runner.train import run
from runner.training.budget import plan, resolve_budget
from runner.training.checkpoint import load_checkpoint
from runner.training.early_stopping import EarlyStopping


def test_the_batch_shrinks_on_small_data_and_epochs_follow_the_steps():
    recipe = Recipe(steps=4000, batch_size=128, min_batch_size=16)
    assert plan(recipe, 50_000) == (128, 11, 390)  # MNIST: the recipe's batch, 11 epochs
    assert plan(recipe, 1_293) == (32, 100, 40)  # digits: every epoch still has 32+ steps
    assert plan(recipe, 100) == (16, 667, 6)  # never below the recipe's smallest batch
    assert plan(Recipe(max_epochs=50), 100)[1] == 50
    assert plan(recipe, 1_293, batch_size=64) == (64, 200, 20)  # a set value wins ...
    assert plan(recipe, 1_293, max_epochs=3) == (32, 3, 40)
    assert plan(recipe, 1_293, max_steps=400) == (32, 10, 40)  # ... and max_steps replaces steps


def test_data_parallel_runs_size_the_batch_for_each_process(config):
    cfg = config("model=ae", "trainer.max_epochs=null")
    budget = resolve_budget(cfg, 1_293, processes=2)  # 646 examples per process
    assert (budget.batch_size, budget.steps_per_epoch) == (16, 40)
    assert cfg.trainer.batch_size == 16 and cfg.trainer.max_epochs == 100


def test_the_families_learning_rates_fill_the_optimizer_keys_left_null(config):
    gan = config("model=gan", "model.fd_classifier=null")
    optimizers = build_optimizers(gan, build_model(gan))
    assert {o.param_groups[0]["betas"] for o in optimizers.values()} == {(0.0, 0.9)}
    assert {o.param_groups[0]["lr"] for o in optimizers.values()} == {2e-4}
    dcgan = config("model=gan", "model.fd_classifier=null", "optimizer=gan_adam")
    optimizers = build_optimizers(dcgan, build_model(dcgan))  # a preset's values stay
    assert {o.param_groups[0]["betas"] for o in optimizers.values()} == {(0.5, 0.999)}
    ae = config("model=ae", "optimizer.lr=3e-3")
    (optimizer,) = build_optimizers(ae, build_model(ae)).values()
    assert optimizer.param_groups[0]["lr"] == 3e-3 and optimizer.param_groups[0]["betas"] == (
        0.9,
        0.999,
    )  # the user's lr; torch's betas, which no recipe names


def test_a_run_saves_prints_and_logs_what_it_resolved(config, tmp_path, caplog):
    caplog.set_level("INFO")
    run(config("model=ae", "model.hidden_dims=[16]", "trainer.max_epochs=1"))
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["config"]
    assert saved["trainer"]["batch_size"] == 32 and saved["optimizer"]["lr"] == 1e-3
    assert "trainer.batch_size=32" in caplog.text and "optimizer.lr=0.001" in caplog.text
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["trainer.batch_size"].number_value == 32
    assert hparams["optimizer.lr"].number_value == pytest.approx(1e-3)


def test_a_run_that_does_not_beat_its_baseline_says_so(config, tmp_path, capsys):
    # One epoch of the networks alone (no PCA path) stays far above PCA with 32 components.
    metrics = run(config("model=ae", "model.linear=none", "trainer.max_epochs=1"))
    assert metrics["test/recon_mse"] > metrics["test/pca_mse"]
    (warning,) = json.loads((tmp_path / "run" / "metrics.json").read_text())["warnings"]
    assert "does not beat test/pca_mse" in warning and "PCA with as many components" in warning
    assert f"Warning: {warning}" in capsys.readouterr().out


def test_collapses_are_named():
    vae = VAE((1, 8, 8), latent_dim=4)
    vae.class_names = [str(i) for i in range(10)]
    healthy = {"test/kl": 5.0, "test/class_coverage": 10.0}
    assert vae.diagnose(healthy) == []
    (line,) = vae.diagnose({**healthy, "test/kl": 0.01, "test/active_units": 0.0})
    assert line.startswith("Posterior collapse")
    gan = GAN((1, 8, 8), latent_dim=4, channels=(4, 8))
    gan.class_names = vae.class_names
    fd_missed, collapse = gan.diagnose(
        {"test/class_coverage": 2.0, "test/fd": 50.0, "test/fd_floor": 1.0}
    )
    assert fd_missed.startswith("test/fd=50 misses its target, 10 x test/fd_floor=1")
    assert collapse.startswith("Mode collapse: the samples cover 2 of 10 classes")
    assert gan.diagnose({"test/class_coverage": 10.0, "test/fd": 5.0, "test/fd_floor": 1.0}) == []


def test_pca_matches_the_singular_value_decomposition_on_both_paths(monkeypatch):
    g = torch.Generator().manual_seed(0)
    data = torch.randn(400, 6, generator=g) @ torch.randn(6, 30, generator=g)  # rank 6
    centered = data - data.mean(0)
    top = torch.linalg.svd(centered, full_matrices=False).Vh[:4].T
    exact = fit_pca(data.split(100), 4)
    monkeypatch.setattr("runner.models.pca.EXACT_MAX_VALUES", 10)  # the randomized path
    sampled = fit_pca(data.split(100), 4)
    for pca in (exact, sampled):
        assert torch.allclose(pca.components.T @ pca.components, torch.eye(4), atol=1e-4)
        # The same subspace as the SVD's top 4 directions.
        assert torch.allclose(pca.components @ pca.components.T, top @ top.T, atol=1e-3)
    assert fit_pca(data.split(100), 40).components[:, 30:].abs().sum() == 0  # past the rank


def test_early_stopping_waits_patience_epochs_as_keras_and_lightning_do():
    stopper = EarlyStopping("val/loss", "min", patience=2)
    seen = []
    for value in (1.0, 0.9, 0.95, 0.97, 0.5):
        stopper.update(value)
        seen.append(stopper.should_stop)
        if stopper.should_stop:
            break
    assert seen == [False, False, False, True]  # two epochs without improvement, then stop
    impatient = EarlyStopping("val/loss", "min", patience=0)
    impatient.update(1.0)
    assert not impatient.should_stop  # an improvement never stops a run
    impatient.update(2.0)
    assert impatient.should_stop
