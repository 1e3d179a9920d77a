"""The VAE: builds on every data shape, its bounds behave, it trains, and it shows its pictures."""

import functools
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runner.data.loader import BatchPreprocessor
from runner.models import VAE
from runner.train import run
from runner.training.checkpoint import load_checkpoint
from runner.training.step import OptimizerStep


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_builds_trains_evaluates_reloads_and_samples_on_every_shape(shape, arch, tmp_path):
    torch.manual_seed(0)
    model = VAE(shape, latent_dim=4, arch=arch, nll_samples=8)
    optimizers = model.configure_optimizers(functools.partial(torch.optim.Adam, lr=1e-3))
    x, y = torch.rand(6, *shape), torch.zeros(6, dtype=torch.long)
    model.train()
    losses = model.training_step((x, y), optimizers, OptimizerStep(torch.device("cpu")))
    assert losses["kl"] > 0 and torch.isfinite(losses["loss"])
    model.eval()
    assert torch.isfinite(model.test_step((x, y))["neg_elbo"])
    assert torch.isfinite(model.importance_sampled_nll(x, 8)).all()
    torch.save(model.state_dict(), tmp_path / "vae.pt")
    again = VAE(shape, latent_dim=4, arch=arch, nll_samples=8)
    again.load_state_dict(torch.load(tmp_path / "vae.pt", weights_only=True))
    again.eval()
    assert torch.equal(again.decode(model.fixed_noise), model.decode(model.fixed_noise))
    samples = model.sample(5)
    assert samples.shape == (5, *shape) and samples.min() >= 0 and samples.max() <= 1


def test_importance_sampling_tightens_the_elbo(config, tmp_path):
    run(
        config(
            "model=vae",
            "model.fd_classifier=null",
            "model.latent_dim=4",
            "model.nll_samples=64",
            "logger=none",
            "trainer.max_epochs=3",
            "trainer.batch_size=32",
            "optimizer.lr=2e-3",
        )
    )
    state = load_checkpoint(tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    history = state["history"]
    assert history[-1]["val/neg_elbo"] < history[0]["val/neg_elbo"]  # it learns
    # log p(x) >= IWAE bound >= ELBO, so the importance-sampled NLL is below the negative ELBO.
    assert metrics["test/nll"] < metrics["test/neg_elbo"]
    assert metrics["test/neg_elbo"] == pytest.approx(
        metrics["test/recon"] + metrics["test/kl"], rel=1e-4
    )
    assert 0 < metrics["test/active_units"] <= 4


def test_metrics_json_holds_what_its_codes_are_worth_as_the_autoencoders_report_it(
    config, tmp_path
):
    run(
        config(
            "model=vae",
            "model.fd_classifier=null",
            "model.arch=mlp",
            "model.binarize=false",
            "model.nll_samples=4",
            "logger=none",
            "trainer.max_epochs=10",
            "trainer.batch_size=32",
            "optimizer.lr=3e-3",
        )
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    names = ("probe_acc", "pca_probe_acc", "recon_mse", "denoise_mse", "noisy_mse")
    assert {f"test/{name}" for name in names} <= metrics.keys()
    # A linear probe reads the digit from the posterior means (chance is 0.1); the mean code of a
    # noisy test image decodes closer to the clean image than the noisy image is; the clean
    # image's reconstruction error is a per-pixel MSE, as the autoencoders' test/recon_mse.
    assert metrics["test/probe_acc"] > 0.5
    assert metrics["test/denoise_mse"] < metrics["test/noisy_mse"]
    assert metrics["test/recon_mse"] < metrics["test/denoise_mse"]
    # The same error every epoch, so a sweep over autoencoders and VAEs can rank by it.
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    history = torch.load(last, weights_only=True)["history"]
    assert history[-1]["val/recon_mse"] < history[0]["val/recon_mse"]
    assert "val/recon_mse" in metrics


def test_test_nll_uses_the_first_nll_images_with_a_fixed_seed():
    model = VAE((1, 8, 8), latent_dim=2, nll_samples=16, nll_images=5).eval()
    images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    loader = [(images, torch.zeros(8, dtype=torch.long))]
    first = model.test_nll(loader, BatchPreprocessor())
    torch.manual_seed(0)
    expected = model.importance_sampled_nll(images[:5].float() / 255, 16).mean()
    assert first == pytest.approx(float(expected), rel=1e-5)
    assert model.test_nll(loader, BatchPreprocessor()) == first  # stable across calls


def test_pictures_and_a_2d_latent_scatter(config, tmp_path):
    run(
        config(
            "model=vae",
            "model.fd_classifier=null",
            "model.latent_dim=2",
            "model.nll_samples=4",
            "trainer.max_epochs=1",
        )
    )
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0})
    acc.Reload()
    expected = {"val/reconstructions", "val/samples", "val/interpolation", "val/latent_space"}
    assert expected <= set(acc.Tags()["images"])


def test_kl_warm_up_and_gaussian_decoder(config, tmp_path):
    model = VAE((1, 8, 8), beta=2.0, kl_warmup_epochs=4)
    model.on_train_epoch_start(0)
    assert model.kl_weight == pytest.approx(0.5)
    model.on_train_epoch_start(5)
    assert model.kl_weight == 2.0
    metrics = run(
        config(
            "model=vae",
            "model.fd_classifier=null",
            "model.likelihood=gaussian",
            "model.nll_samples=4",
            "model.nll_images=32",
            "trainer.max_epochs=1",
            "logger=none",
        )
    )
    assert torch.isfinite(torch.tensor(metrics["test/nll"]))


def test_beta_vae_preset(config):
    cfg = config("model=beta_vae")
    assert cfg.model.beta == 4.0 and cfg.model._target_ == "runner.models.VAE"


def test_conv_vae_dense_layers_sit_between_the_convolutions_and_the_code():
    with_dense = VAE((1, 28, 28), channels=(8, 16), hidden_dims=(64, 32), latent_dim=4)
    assert with_dense.posterior.in_features == 32
    assert with_dense.decoder[0][0].in_features == 4  # latent -> 32 -> 64 -> 16 x 7 x 7
    assert with_dense.decoder[0][-1].out_features == 16 * 7 * 7
    straight = VAE((1, 28, 28), channels=(8, 16), hidden_dims=(), latent_dim=4)
    assert straight.posterior.in_features == 16 * 7 * 7
    for model in (with_dense, straight):
        assert model.sample(3).shape == (3, 1, 28, 28)
