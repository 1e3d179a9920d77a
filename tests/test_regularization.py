"""Every regularization key changes the model it trains, or the run refuses it at start-up."""

import pytest

from runner.errors import RunnerError
from runner.train import run
from runner.validation import validate

# One short run per value: two batches of digits, no TensorBoard.
SHORT = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=none")
FAMILIES = {
    "ae": (),
    "deep_ae": (),
    "sparse_ae": (),
    "denoising_ae": (),
    "vae": ("model.nll_samples=2", "model.nll_images=8", "model.fd_classifier=null"),
    "gan": ("optimizer=gan_adam", "model.fd_classifier=null", "model.spectral_norm=false"),
    "cnn": (),
    "mlp": (),
    "seq_classifier": (),  # the digits read row by row: 8 steps of 8 features
    "seq_ae": (),
    "transfer": (
        "model.backbone=mobilenet_v3_small",
        "model.pretrained=none",
        "model.input_size=32",
    ),
}
# What `regularization.normalization=auto` (the default) means in each family that has the layer.
AUTO_NORM = {"cnn": "batch", "gan": "batch"}
GENERIC = (
    "regularization.weight_decay=0.5",
    "regularization.grad_clip=0.001",
    "regularization.augmentation.rotation=30",
    "regularization.augmentation.translate=0.2",
    "regularization.augmentation.scale=0.2",
    "regularization.augmentation.hflip=true",
    "regularization.augmentation.brightness=0.5",
    "regularization.augmentation.contrast=0.5",
)


@pytest.fixture
def train(config, tmp_path):
    """`train(family, *overrides)` -> the metrics of a short run on digits."""
    runs = iter(range(1000))

    def _train(family: str, *overrides: str) -> dict[str, float]:
        cfg = config(
            f"model={family}",
            *FAMILIES[family],
            *SHORT,
            *overrides,
            run_dir=tmp_path / f"run{next(runs)}",
        )
        return run(cfg)

    return _train


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dropout_and_normalization_change_every_family_that_has_them(train, family):
    baseline = train(family)
    assert train(family, "regularization.dropout=0.5") != baseline
    if family == "transfer":  # no layer to normalise: refused below; the run repeats exactly
        assert train(family) == baseline
        return
    by_value = {
        norm: train(family, f"regularization.normalization={norm}")
        for norm in ("none", "batch", "layer")
    }
    # auto is the family's own choice: the same model as naming that choice, so the runs are
    # repeatable and every difference below comes from the key.
    assert by_value[AUTO_NORM.get(family, "none")] == baseline
    assert by_value["none"] != by_value["batch"] != by_value["layer"] != by_value["none"]


def _generic_keys_change(train, family: str) -> None:
    baseline = train(family)
    for override in GENERIC:
        assert train(family, override) != baseline, override


def test_decay_clipping_and_every_augmentation_change_the_model(train):
    _generic_keys_change(train, "ae")


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"ae"}))
def test_decay_clipping_and_every_augmentation_change_every_other_family(train, family):
    _generic_keys_change(train, family)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_transfer_refuses_normalization_with_advice(config, norm):
    with pytest.raises(RunnerError, match="does not apply to model runner.models.Transfer") as e:
        validate(config("model=transfer", f"regularization.normalization={norm}"))
    assert "Leave regularization.normalization=auto" in str(e.value)


def test_a_model_config_that_replaces_a_regularization_key_is_refused(config):
    # What conf/model/cnn.yaml did with `normalization: batch`: the sweep trained one model.
    with pytest.raises(RunnerError, match="regularization.normalization='layer' would not reach"):
        validate(
            config("model=cnn", "model.normalization=batch", "regularization.normalization=layer")
        )
    with pytest.raises(RunnerError, match="regularization.weight_decay=0.1 would not reach opt"):
        validate(config("optimizer.weight_decay=0.0", "regularization.weight_decay=0.1"))
    validate(config("model=cnn", "model.normalization=batch"))  # the model's own key alone acts


def test_batch_norm_in_a_gradient_penalty_critic_is_refused(config):
    with pytest.raises(RunnerError, match="breaks the per-sample gradient penalty"):
        run(
            config(
                "model=gan",
                "optimizer=gan_adam",
                "model.loss=wgan_gp",
                "regularization.normalization=batch",
            )
        )


def test_the_cli_exits_2_before_training(tmp_path, cli_error):
    err = cli_error(
        tmp_path,
        "model=transfer",
        "model.pretrained=none",
        "regularization.normalization=batch",
    )
    assert "error: regularization.normalization='batch' does not apply" in err, err
