"""Start-up checks: every model composes on every dataset; bad values name the key and the fix."""

import pytest
from omegaconf import OmegaConf

from runner.build import build_model
from runner.errors import RunnerError
from runner.validation import explain_hydra_error, validate

AUTOENCODERS = ["ae", "deep_ae", "sparse_ae", "denoising_ae"]
SHAPES = {"digits": [1, 8, 8], "mnist": [1, 28, 28], "cifar10": [3, 32, 32]}


@pytest.mark.parametrize("model", [*AUTOENCODERS, "cnn", "mlp"])
@pytest.mark.parametrize("dataset", list(SHAPES))
def test_every_model_builds_for_every_dataset_shape(config, model, dataset):
    cfg = config(f"model={model}", f"dataset={dataset}")
    validate(cfg)
    net = build_model(cfg)
    import torch

    x = torch.rand(2, *SHAPES[dataset])
    net.eval()
    losses = net.compute_losses(x, torch.tensor([0, 1]))
    assert torch.isfinite(losses["loss"])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optimizer.lr=0", "optimizer.lr=0 is out of range: expected a number > 0"),
        ("optimizer.lr=-1e-3", "optimizer.lr"),
        (
            "regularization.dropout=1.0",
            "regularization.dropout=1.0 is out of range: expected a number in [0, 1)",
        ),
        ("regularization.early_stopping.patience=-1", "regularization.early_stopping.patience"),
        (
            "trainer.device=tpu",
            "trainer.device='tpu' is not a valid choice. Choose one of: auto, cpu, cuda, mps",
        ),
        ("trainer.precision=8", "trainer.precision"),
        (
            "model.init=orthogonal",
            "model.init='orthogonal' is not valid: expected one of 'default', 'xavier', 'kaiming'",
        ),
        ("model.activation=swish", "model.activation"),
        (
            "model.hidden_dims=[64,wide]",
            "model.hidden_dims=[64, 'wide'] is not valid: item 1: expected a valid integer",
        ),
        ("dataset.val_fraction=1.5", "dataset.val_fraction"),
        ("model.latent_dim=0", "model.latent_dim"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(config, override, needle):
    # Choices are refused while Hydra composes, ranges and `_target_` keys by validate().
    with pytest.raises(Exception) as err:
        validate(config(override))
    exc = err.value
    message = str(exc) if isinstance(exc, RunnerError) else explain_hydra_error(exc)
    assert needle in message


def test_unknown_model_key_from_a_yaml_suggests_the_right_one(config):
    cfg = config()
    OmegaConf.set_struct(cfg, False)
    cfg.model.latnt_dim = 4  # what a typo in a user's experiment file produces
    with pytest.raises(
        RunnerError, match=r"Unknown key model.latnt_dim. Did you mean model.latent_dim\?"
    ):
        validate(cfg)


def test_noise_and_sparsity_choices_come_from_the_model_signature(config):
    with pytest.raises(RunnerError, match="salt_and_pepper"):
        validate(config("model=denoising_ae", "model.noise_type=speckle"))
    with pytest.raises(RunnerError, match="'l1', 'kl'"):
        validate(config("model=sparse_ae", "model.sparsity=l2"))


def test_experiment_preset_sets_several_groups(config):
    cfg = config("experiment=deep_ae_mnist")
    assert cfg.model.arch == "conv"
    assert cfg.dataset.name == "MNIST"
    assert cfg.model.latent_dim == 16
