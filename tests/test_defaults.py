"""Every family trained with its defaults alone (`model=X`, nothing else) on the bundled digits
learns past the trivial baseline it reports, and its run says nothing is wrong (slow: minutes).

`model=transfer` is left out: its default backbone downloads torchvision's ImageNet weights."""

from __future__ import annotations

import json

import pytest

from runner.config import compose_run_config
from runner.train import run

pytestmark = pytest.mark.slow

QUIET = ("trainer.progress_bar=false", "trainer.device=cpu")


def train_default(tmp_path, model: str) -> dict:
    cfg = compose_run_config(tmp_path / "run", [f"model={model}", *QUIET])
    metrics = run(cfg)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["warnings"] == [], summary["warnings"]
    return metrics


@pytest.mark.parametrize("model", ["ae", "deep_ae", "sparse_ae", "denoising_ae", "seq_ae"])
def test_every_autoencoder_beats_pca_with_its_code_size(tmp_path, model):
    m = train_default(tmp_path, model)
    assert m["test/recon_mse"] < m["test/pca_mse"]
    if model == "denoising_ae":
        assert m["test/recon_mse"] <= 0.5 * m["test/noisy_mse"]


def test_the_vae_samples_every_class(tmp_path):
    m = train_default(tmp_path, "vae")
    assert m["test/class_coverage"] == 10 and m["test/kl"] > 1.0


def test_the_beta_vae_keeps_its_code(tmp_path):
    m = train_default(tmp_path, "beta_vae")
    assert m["test/kl"] > 1.0  # beta = 4 with no free bits empties the code here (KL ~0.002)


def test_the_gan_samples_every_class_near_the_floor(tmp_path):
    m = train_default(tmp_path, "gan")
    assert m["test/class_coverage"] == 10
    assert m["test/fd"] <= 10 * m["test/fd_floor"]


@pytest.mark.parametrize(
    ("model", "accuracy"), [("cnn", 0.97), ("mlp", 0.95), ("seq_classifier", 0.95)]
)
def test_the_classifiers_reach_their_accuracy(tmp_path, model, accuracy):
    m = train_default(tmp_path, model)
    assert m["test/acc"] >= accuracy > m["test/majority_acc"]
