"""Transfer learning: torchvision backbones, run-folder backbones, freezing, unfreezing, errors."""

import functools

import pytest
import torch
from fakes import make_config, write_mnist_like

from runner.errors import RunnerError
from runner.models import TransferClassifier
from runner.train import run
from runner.training.checkpoint import load_checkpoint
from runner.training.step import OptimizerStep

BACKBONES = ["resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0"]
CPU_STEP = OptimizerStep(torch.device("cpu"))


def sgd(lr: float = 0.05):
    return functools.partial(torch.optim.SGD, lr=lr)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_without_weights_and_trains_on_gray_and_colour(backbone):
    torch.manual_seed(0)
    model = TransferClassifier((1, 20, 20), 5, backbone=backbone, pretrained="none", input_size=32)
    optimizers = model.configure_optimizers(sgd())
    model.train()
    for channels in (1, 3):
        x, y = torch.rand(4, channels, 20, 20), torch.tensor([0, 1, 2, 3])
        head_before = model.head[-1].weight.clone()
        losses = model.training_step((x, y), optimizers, CPU_STEP)
        assert torch.isfinite(losses["loss"])
        assert not torch.equal(model.head[-1].weight, head_before)
    model.eval()
    assert model(torch.rand(2, 1, 20, 20)).shape == (2, 5)


def test_feature_extraction_leaves_the_backbone_bit_identical():
    torch.manual_seed(0)
    model = TransferClassifier(
        (3, 16, 16),
        3,
        backbone="mobilenet_v3_small",
        pretrained="none",
        mode="feature_extraction",
        input_size=32,
        head_hidden=16,
    )
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizers = model.configure_optimizers(functools.partial(torch.optim.Adam, lr=1e-2))
    model.train()
    assert model.head.training and not model.backbone.training  # frozen norm layers stay in eval
    head_before = [p.clone() for p in model.head.parameters()]
    for _ in range(3):
        batch = (torch.rand(8, 3, 16, 16), torch.randint(0, 3, (8,)))
        model.training_step(batch, optimizers, CPU_STEP)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not all(torch.equal(a, b) for a, b in zip(head_before, model.head.parameters()))
    trained = {id(p) for g in optimizers["model"].param_groups for p in g["params"]}
    assert trained == {id(p) for p in model.head.parameters()}


def test_fine_tuning_uses_a_lower_backbone_lr_and_unfreezes_on_schedule():
    torch.manual_seed(0)
    model = TransferClassifier(
        (1, 16, 16),
        4,
        backbone="mobilenet_v3_small",
        pretrained="none",
        mode="fine_tuning",
        backbone_lr_scale=0.1,
        unfreeze_after=2,
        input_size=32,
    )
    optimizers = model.configure_optimizers(sgd(0.2))
    assert [g["lr"] for g in optimizers["model"].param_groups] == [0.2, pytest.approx(0.02)]
    batch = (torch.rand(8, 1, 16, 16), torch.randint(0, 4, (8,)))

    def backbone_moves() -> bool:
        before = [p.clone() for p in model.backbone.parameters()]
        model.train()
        model.training_step(batch, optimizers, CPU_STEP)
        return not all(torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))

    model.on_train_epoch_start(1)
    assert not model.backbone.training
    assert not backbone_moves()
    model.on_train_epoch_start(2)
    assert backbone_moves()
    assert model.backbone.training  # unfrozen: batch norm statistics adapt again


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A small cnn trained on tiny MNIST-format data: the backbone to transfer from."""
    tmp = tmp_path_factory.mktemp("cnn")
    data = write_mnist_like(tmp / "data")
    run(
        make_config(
            tmp / "run",
            [
                "model=cnn",
                "model.channels=[8,16]",
                "model.hidden_dim=32",
                "trainer.max_epochs=4",
                "optimizer.lr=3e-3",
                "trainer.batch_size=16",
                "dataset=mnist",
                f"dataset.root={data}",
                "dataset.download=false",
                "optimized_metric=val/acc",
                "optimized_mode=max",
                "logger=none",
            ],
        )
    )
    return tmp / "run"


@pytest.mark.parametrize("mode", ["feature_extraction", "fine_tuning"])
def test_transfer_from_a_run_folder_end_to_end(config, tmp_path, cnn_run, mode):
    target = write_mnist_like(tmp_path / "target", "FashionMNIST", n_train=200, n_test=100)
    source = load_checkpoint(cnn_run / "checkpoints" / "best.pt")["model"]
    metrics = run(
        config(
            "model=transfer",
            f"model.pretrained={cnn_run}",
            f"model.mode={mode}",
            "dataset=fashion_mnist",
            f"dataset.root={target}",
            "dataset.download=false",
            "trainer.max_epochs=4",
            "trainer.batch_size=16",
            "optimizer.lr=1e-2",
            "optimized_metric=val/acc",
            "optimized_mode=max",
            "logger=none",
        )
    )
    assert metrics["test/acc"] > 0.5  # 10 classes: chance is 0.1
    state = load_checkpoint(tmp_path / "run")["model"]
    prefix = "backbone.model."
    body = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    assert body.keys() == source.keys()
    frozen_equal = all(torch.equal(body[k], source[k]) for k in body)
    assert frozen_equal == (mode == "feature_extraction")


def test_run_backbone_adapts_colour_and_size_and_keeps_the_trained_weights(cnn_run):
    from runner.models import CNN

    state = load_checkpoint(cnn_run / "checkpoints" / "best.pt")
    source = CNN((1, 28, 28), 10, channels=[8, 16], hidden_dim=32).eval()
    source.load_state_dict(state["model"])
    gray = torch.rand(4, 1, 28, 28)
    for pretrained in (cnn_run, cnn_run / "checkpoints" / "last.pt"):  # a folder or a file
        model = TransferClassifier((3, 12, 12), 4, pretrained=str(pretrained)).eval()
        assert model(torch.rand(2, 3, 12, 12)).shape == (2, 4)  # colour 12x12 -> gray 28x28
    model = TransferClassifier((1, 28, 28), 4, pretrained=str(cnn_run)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.features(gray), source.features(gray))
        # three equal channels average back to the gray image the backbone was trained on
        torch.testing.assert_close(
            model.features(gray.expand(-1, 3, -1, -1)), source.features(gray)
        )


def test_an_autoencoder_run_gives_its_encoder_as_backbone(tmp_path):
    from runner.models import Autoencoder

    run(
        make_config(
            tmp_path / "ae",
            ["model=ae", "model.latent_dim=6", "trainer.max_epochs=1", "logger=none"],
        )
    )
    model = TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "ae")).eval()
    source = Autoencoder((1, 8, 8), latent_dim=6).eval()
    source.load_state_dict(load_checkpoint(tmp_path / "ae")["model"])
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), source.encode(x).flatten(1))
    assert model(x).shape == (5, 10)


def test_missing_or_mismatched_backbones_are_clear_errors(tmp_path, cnn_run, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunnerError, match="is not a finished run of this project"):
        TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "empty"))
    with pytest.raises(RunnerError, match="does not exist"):
        TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "nowhere"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(RunnerError, match="is not a resnet18 state dict"):
        TransferClassifier((1, 8, 8), 10, backbone="resnet18", pretrained=str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RunnerError, match="cannot be read as a weights file"):
        TransferClassifier((1, 8, 8), 10, pretrained=str(garbage))
    with pytest.raises(RunnerError, match="is not a torchvision classifier"):
        TransferClassifier((1, 8, 8), 10, backbone="resnet7", pretrained="none")

    state = load_checkpoint(cnn_run / "checkpoints" / "best.pt")
    state["config"]["model"]["hidden_dim"] = 64  # weights no longer fit the config they carry
    torch.save(state, tmp_path / "mismatched.pt")
    with pytest.raises(RunnerError, match="does not fit its own config"):
        TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "mismatched.pt"))

    import torchvision.models as tvm

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RunnerError, match=r"put it at .*hub/checkpoints/resnet18-.*\.pth"):
        TransferClassifier((1, 8, 8), 10, backbone="resnet18", pretrained="torchvision")


def test_transfer_on_an_image_folder_reports_its_class_names(config, tmp_path, monkeypatch, caplog):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    rng = np.random.default_rng(0)
    for k, name in enumerate(["apple", "pear", "plum"]):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 60, (12, 12, 3), dtype=np.uint8)
            pixels[..., k] += 180  # each class has its own colour
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.png")
    caplog.set_level("INFO", logger="runner")
    metrics = run(
        config(
            "model=transfer",
            "model.backbone=mobilenet_v3_small",
            "model.pretrained=none",
            "model.input_size=32",
            "dataset=image_folder",
            f"dataset.path={tmp_path / 'photos'}",
            "dataset.shape=[3,12,12]",
            "dataset.val_fraction=0.25",
            "dataset.test_fraction=0.25",
            "trainer.max_epochs=1",
            "trainer.batch_size=6",
            "logger=none",
        )
    )
    assert {"test/acc_class/apple", "test/acc_class/pear", "test/acc_class/plum"} <= set(metrics)
    assert "3 classes: apple, pear, plum" in caplog.text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.mode=freeze", "model.mode='freeze' is not valid: expected one of 'feature_ext"),
        ("model.input_size=0", "model.input_size=0 is out of range"),
        ("model.backbone_lr_scale=-1", "model.backbone_lr_scale=-1 is out of range"),
    ],
)
def test_bad_transfer_settings_are_refused_before_training(config, override, message):
    from runner.validation import validate

    with pytest.raises(RunnerError, match=message):
        validate(config("model=transfer", override))


def test_a_local_weights_file_is_loaded_into_the_backbone(tmp_path):
    import torchvision.models as tvm

    torch.manual_seed(1)
    source = tvm.get_model("mobilenet_v3_small", weights=None)
    torch.save(source.state_dict(), tmp_path / "mine.pth")
    model = TransferClassifier(
        (3, 16, 16), 4, backbone="mobilenet_v3_small", pretrained=str(tmp_path / "mine.pth")
    )
    conv = "features.0.0.weight"
    assert torch.equal(model.backbone.state_dict()[conv], source.state_dict()[conv])
