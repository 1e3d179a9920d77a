"""Each autoencoder trains on the bundled digits and on MNIST-format files: the loss falls. What
its codes are worth (a linear probe, denoising of one fixed noise) is in its metrics.json."""

import json

import numpy as np
import pytest
import torch

from runner.data.loader import BatchPreprocessor
from runner.models.code_metrics import score_codes
from runner.models.noise import FixedNoise
from runner.train import run
from runner.training.checkpoint import load_checkpoint
from tests.fakes import class_images

CODE_METRICS = ("probe_acc", "pca_probe_acc", "recon_mse", "denoise_mse", "noisy_mse")


def _history(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["history"]


def _saved_metrics(run_dir) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


@pytest.mark.parametrize("model", ["ae", "deep_ae", "sparse_ae", "denoising_ae"])
def test_loss_falls_on_digits(config, tmp_path, model):
    cfg = config(
        f"model={model}", "trainer.max_epochs=4", "trainer.batch_size=32", "optimizer.lr=2e-3"
    )
    metrics = run(cfg)
    history = _history(tmp_path / "run")
    assert history[-1]["val/loss"] < history[0]["val/loss"]
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert metrics["test/recon_mse"] < history[0]["val/recon_mse"]
    assert metrics["test/pca_mse"] < metrics["test/mean_image_mse"]
    if model != "sparse_ae":  # (it needs its whole default training: tests/test_defaults.py)
        # Its linear path starts it at PCA with as many components as the code (of the noisy
        # input for the denoising autoencoder), and four epochs take it past that baseline.
        assert metrics["test/recon_mse"] < metrics["test/pca_mse"]
    # What its codes are worth, in metrics.json: a linear probe reads the digit from them (chance
    # is 0.1), and the noisy test images come back closer to the clean ones.
    saved = _saved_metrics(tmp_path / "run")
    assert {f"test/{name}" for name in CODE_METRICS} <= saved.keys()
    assert saved["test/probe_acc"] > 0.5 and saved["test/pca_probe_acc"] > 0.5
    assert saved["test/denoise_mse"] < saved["test/noisy_mse"]
    if model == "denoising_ae":  # its test/recon_mse is of its noisy input (its target's)
        assert saved["test/clean_recon_mse"] < saved["test/recon_mse"]


@pytest.mark.parametrize("model", ["ae", "deep_ae"])
def test_loss_falls_on_mnist_format_files(config, tmp_path, tiny_mnist, model):
    cfg = config(
        f"model={model}",
        "dataset=mnist",
        f"dataset.root={tiny_mnist}",
        "dataset.download=false",
        "trainer.max_epochs=3",
        "trainer.batch_size=32",
    )
    run(cfg)
    history = _history(tmp_path / "run")
    assert history[-1]["val/loss"] < history[0]["val/loss"]


def test_sparse_ae_logs_activation_statistics_and_kl_lowers_the_rate(config, tmp_path):
    cfg = config(
        "model=sparse_ae",
        "model.sparsity=kl",
        "model.sparsity_weight=32",  # 0.5 per image of 64 values
        "model.sparsity_target=0.05",
        "trainer.max_epochs=6",
        "trainer.batch_size=64",
    )
    run(cfg)
    history = _history(tmp_path / "run")
    assert {"val/mean_activation", "val/frac_near_zero", "val/sparsity_penalty"} <= history[
        0
    ].keys()
    # Sigmoid codes start near 0.5; the KL penalty drives the mean activation towards rho.
    assert history[-1]["val/mean_activation"] < history[0]["val/mean_activation"]
    assert history[-1]["val/mean_activation"] < 0.3


def test_l1_sparsity_zeroes_more_units_than_a_plain_ae(config, tmp_path):
    sparse = run(
        config(
            "model=sparse_ae",
            "model.sparsity_weight=3.2",
            "trainer.max_epochs=4",
            run_dir=tmp_path / "s",
        )
    )
    plain = run(
        config(
            "model=sparse_ae",
            "model.sparsity_weight=0",
            "trainer.max_epochs=4",
            run_dir=tmp_path / "p",
        )
    )
    assert sparse["val/frac_near_zero"] > plain["val/frac_near_zero"]


@pytest.mark.parametrize("noise", ["gaussian", "masking", "salt_and_pepper"])
def test_denoising_ae_output_is_closer_to_clean_than_its_input(config, noise):
    cfg = config(
        "model=denoising_ae",
        f"model.noise_type={noise}",
        "model.noise_level=0.3",
        "trainer.max_epochs=5",
        "trainer.batch_size=64",
        "optimizer.lr=3e-3",
    )
    metrics = run(cfg)
    assert metrics["test/recon_mse"] < metrics["test/noisy_mse"]


def test_weight_init_schemes_change_the_weights(config):
    from runner.build import build_model

    torch.manual_seed(0)
    default = build_model(config("model.init=default")).encoder[1][0].weight
    torch.manual_seed(0)
    xavier = build_model(config("model.init=xavier")).encoder[1][0].weight
    torch.manual_seed(0)
    kaiming = build_model(config("model.init=kaiming")).encoder[1][0].weight
    assert not torch.equal(default, xavier) and not torch.equal(xavier, kaiming)
    # Kaiming-normal for ReLU has std sqrt(2 / fan_in).
    assert abs(kaiming.std().item() - (2 / 64) ** 0.5) < 0.02


def test_a_run_saved_before_the_linear_path_loads_as_the_networks_alone():
    import torch

    from runner.models import Autoencoder

    old = Autoencoder((1, 8, 8), latent_dim=4, hidden_dims=(16,), linear="none")
    new = Autoencoder((1, 8, 8), latent_dim=4, hidden_dims=(16,))
    assert new.linear == "pca" and "linear_encoder.weight" in new.state_dict()
    new.load_state_dict(old.state_dict())
    x = torch.rand(5, 1, 8, 8)
    assert new.linear == "none" and torch.equal(new(x), old(x))


def _loaders(labels: np.ndarray, batch: int, size: int = 16) -> list:
    """Batches of (uint8 images, labels) as a loader gives them: class c is a bar at its row."""
    images = torch.from_numpy(class_images(labels, size=size)).unsqueeze(1)
    labels = torch.from_numpy(labels).long()
    return [(images[i : i + batch], labels[i : i + batch]) for i in range(0, len(images), batch)]


def test_the_fixed_noise_is_the_same_for_every_family_and_batch_size():
    from runner.models import VAE, Autoencoder

    labels = np.arange(64) % 3
    train, test = _loaders(labels, 16, size=8), _loaders(labels[:32], 8, size=8)
    seen = {}
    for name, model in {
        "ae": Autoencoder((1, 8, 8), latent_dim=4, hidden_dims=(16,)),
        "vae": VAE((1, 8, 8), latent_dim=4, arch="mlp", hidden_dims=(16,)),
    }.items():
        inputs = []
        encode = model.encode_images
        model.encode_images = lambda x, encode=encode, inputs=inputs: inputs.append(x) or encode(x)
        model.eval().code_metrics(train, test, BatchPreprocessor())
        seen[name] = torch.cat(inputs)  # the train images, then each test batch clean and noisy
    assert torch.equal(seen["ae"], seen["vae"])
    clean = torch.cat([x for x, _ in test]).float() / 255
    noisy = FixedNoise()(clean)
    assert torch.equal(seen["ae"][-8:], noisy[-8:])  # the last test batch, corrupted
    assert not torch.equal(noisy, clean) and noisy.min() >= 0 and noisy.max() <= 1
    batched = FixedNoise()
    assert torch.equal(torch.cat([batched(clean[:7]), batched(clean[7:])]), noisy)


def test_constant_codes_probe_no_better_than_the_majority_class():
    labels = np.array([0] * 60 + [1] * 20 + [2] * 20)  # class 0: 60%
    train, test = _loaders(labels, 32), _loaders(labels[::2], 32)
    metrics = score_codes(
        lambda x: torch.zeros(len(x), 8),  # codes that say nothing about the image
        lambda z: torch.full((len(z), 1, 16, 16), 0.5),
        train,
        test,
        BatchPreprocessor(),
    )
    assert metrics["probe_acc"] == pytest.approx(0.6)  # every image called the majority class
    assert metrics["pca_probe_acc"] > 0.95  # PCA's 8 codes of the same images read the class
