"""Transfer learning: torchvision backbones, run-folder backbones, freezing, unfreezing, errors."""

import functools

import pytest
import torch

from runner.errors import RunnerError
from runner.models import TransferClassifier as TransferModel
from runner.models.transfer import AUTO_CUTS
from runner.runs import load_run
from runner.train import run
from runner.training.checkpoint import load_checkpoint
from runner.training.step import OptimizerStep
from tests.fakes import make_config, write_mnist_like

BACKBONES = ["resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0"]
CPU_STEP = OptimizerStep(torch.device("cpu"))
# Built as runner.build.build_model builds it: with the function that reads run folders.
TransferClassifier = functools.partial(TransferModel, load_run=load_run)


def mobilenet(in_shape: tuple[int, ...], classes: int, **settings) -> TransferModel:
    """A randomly initialised mobilenet_v3_small backbone at 32x32: small and quick."""
    return TransferClassifier(
        in_shape,
        classes,
        backbone="mobilenet_v3_small",
        pretrained="none",
        input_size=32,
        **settings,
    )


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
    model = mobilenet((3, 16, 16), 3, mode="feature_extraction", head_hidden=16)
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
    model = mobilenet((1, 16, 16), 4, backbone_lr_scale=0.1, unfreeze_after=2, warmup_epochs=0)
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
    frozen_equal = all(torch.equal(body[k], source[k]) for k in body)  # batch norm's too
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
    model = TransferClassifier((1, 28, 28), 4, pretrained=str(cnn_run), cut="hidden").eval()
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
        ("model.cut=middle", "model.cut='middle' is not valid: expected one of 'auto', 'trunk'"),
        ("model.warmup_epochs=-1", "model.warmup_epochs=-1 is out of range"),
        ("model.head_init=zeros", "model.head_init='zeros' is not valid: expected one of 'aut"),
        ("model.probe_solver=sgd", "model.probe_solver='sgd' is not valid: expected one of 'lb"),
        ("model.adapt_bn=1", "model.adapt_bn=1 is not valid"),
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


# -- cuts ------------------------------------------------------------------------------------------


def test_each_cut_of_a_cnn_run_gives_those_activations(cnn_run):
    source = load_run(cnn_run).model
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        maps = source.conv_maps(x)  # [3, 16, 14, 14] for channels [8, 16]
        expected = {
            "trunk": maps.flatten(1),
            "pooled": maps.mean(dim=(2, 3)),
            "hidden": source.features(x),
        }
        for cut, want in expected.items():
            model = TransferClassifier((1, 28, 28), 4, pretrained=str(cnn_run), cut=cut).eval()
            torch.testing.assert_close(model.features(x), want)
            assert model.head[-1].in_features == want.shape[1]
        auto = TransferClassifier((1, 28, 28), 4, pretrained=str(cnn_run), cut="auto").eval()
        assert auto.head[-1].in_features == expected[AUTO_CUTS[0]].shape[1]


def test_a_conv_autoencoder_is_cut_at_its_maps_and_an_mlp_one_only_at_its_code(tmp_path):
    run(make_config(tmp_path / "conv", ["model=deep_ae", "model.channels=[4,8]", "logger=none"]))
    run(make_config(tmp_path / "mlp", ["model=ae", "model.latent_dim=6", "logger=none"]))
    widths = {
        cut: TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "conv"), cut=cut)
        .head[-1]
        .in_features
        for cut in ("trunk", "pooled", "hidden", "auto")
    }
    # 8x8 -> two stride-2 convolutions -> 8 maps of 2x2; the code has latent_dim=16 values
    assert widths == {"trunk": 32, "pooled": 8, "hidden": 16, "auto": 32}
    with pytest.raises(RunnerError, match="can only be cut at hidden"):
        TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "mlp"), cut="pooled")
    assert (
        TransferClassifier((1, 8, 8), 10, pretrained=str(tmp_path / "mlp")).head[-1].in_features
        == 6
    )


def test_torchvision_cuts_keep_or_drop_the_classifiers_hidden_layer():
    def width(backbone: str, cut: str) -> int:
        model = TransferClassifier((3, 8, 8), 2, backbone=backbone, pretrained="none", cut=cut)
        return model.head[-1].in_features

    assert width("mobilenet_v3_small", "pooled") == 576
    assert width("mobilenet_v3_small", "hidden") == width("mobilenet_v3_small", "auto") == 1024
    assert width("resnet18", "pooled") == width("resnet18", "auto") == 512
    with pytest.raises(RunnerError, match="resnet18's classifier has no hidden layer"):
        width("resnet18", "hidden")
    with pytest.raises(RunnerError, match="can be cut at pooled or hidden"):
        width("mobilenet_v3_small", "trunk")


# -- batch norm, warm-up, linear probe ------------------------------------------------------------


def loader_of(x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> list:
    """Batches as the loop's loaders give them: uint8 images and their labels."""
    images = (x * 255).round().to(torch.uint8)
    return [(images[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]


def test_batch_norm_statistics_are_recomputed_on_the_target_images(cnn_run):
    from runner.data.loader import BatchPreprocessor

    model = TransferClassifier(
        (1, 28, 28), 4, pretrained=str(cnn_run), mode="feature_extraction", adapt_bn=True
    )
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    conv = model.backbone.model.body[0]
    weights = {k: v.clone() for k, v in model.backbone.named_parameters()}
    source_mean = first.running_mean.clone()
    # A target the source never saw: bright images, mostly white
    x = 0.6 + 0.4 * torch.rand(96, 1, 28, 28)
    y = torch.arange(96) % 4
    state = torch.random.get_rng_state()
    model.on_fit_start(loader_of(x, y), loader_of(x, y), BatchPreprocessor(), steps_per_epoch=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # no random numbers drawn
    with torch.no_grad():
        x8 = (x * 255).round() / 255
        want = conv(x8 * 2 - 1).mean(dim=(0, 2, 3))  # the first conv's output, all images
    torch.testing.assert_close(first.running_mean, want, rtol=1e-4, atol=1e-5)
    assert (first.running_mean - source_mean).abs().max() > 0.1
    assert all(torch.equal(weights[k], v) for k, v in model.backbone.named_parameters())
    assert not model.backbone.training  # frozen: the statistics stay as recomputed


def test_warm_up_holds_the_backbone_then_ramps_its_learning_rate_up():
    torch.manual_seed(0)
    model = mobilenet((1, 16, 16), 4, backbone_lr_scale=0.5, warmup_epochs=1)
    model.steps_per_epoch = 4
    optimizers = model.configure_optimizers(sgd(0.2))
    groups = optimizers["model"].param_groups
    batch = (torch.rand(8, 1, 16, 16), torch.randint(0, 4, (8,)))
    model.train()
    factors, moved = [], []
    for epoch in range(2):
        model.on_train_epoch_start(epoch)
        for _ in range(model.steps_per_epoch):
            before = [p.clone() for p in model.backbone.parameters()]
            head = model.head[-1].weight.clone()
            factors.append(model.backbone_lr_factor())
            model.training_step(batch, optimizers, CPU_STEP)
            moved.append(
                not all(torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
            )
            assert not torch.equal(head, model.head[-1].weight)  # the head always trains
            assert [g["lr"] for g in groups] == [0.2, pytest.approx(0.1)]  # schedule untouched
    assert factors == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert moved == [False] + [True] * 7  # held at the first step, trained from the second


def blobs(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable Gaussian clusters with most dimensions noise and a large common offset."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    y = torch.arange(n) % classes
    return 50 + centres[y] + torch.randn(n, dim, generator=g), y


@pytest.mark.parametrize("solver", ["lbfgs", "closed_form"])
def test_the_linear_probe_separates_separable_features(solver):
    from runner.models.linear_probe import fit_probe

    train, val, test = blobs(60, 200, 5, 0), blobs(200, 200, 5, 1), blobs(500, 200, 5, 2)
    probe = fit_probe(train, val, 5, solver)
    acc = (test[0] @ probe.weight.T + probe.bias).argmax(1).eq(test[1]).float().mean()
    assert acc > 0.9  # chance is 0.2
    assert probe.val_acc > 0.9 and probe.train_acc == 1.0
    # uninformative features: the probe cannot beat chance by much on new data
    noise = [(torch.randn(n, 200), torch.arange(n) % 5) for n in (60, 200, 500)]
    probe = fit_probe(noise[0], noise[1], 5, solver)
    acc = (noise[2][0] @ probe.weight.T + probe.bias).argmax(1).eq(noise[2][1]).float().mean()
    assert acc < 0.35


def test_a_linear_probe_run_solves_its_head_before_the_first_epoch(config, tmp_path, cnn_run):
    target = write_mnist_like(tmp_path / "target", "FashionMNIST", n_train=200, n_test=100)
    common = [
        "model=transfer",
        f"model.pretrained={cnn_run}",
        "dataset=fashion_mnist",
        f"dataset.root={target}",
        "dataset.download=false",
        "trainer.max_epochs=1",
        "trainer.batch_size=16",
        "optimized_metric=val/acc",
        "optimized_mode=max",
        "logger=none",
    ]
    probe = run(config(*common, "model.mode=linear_probe"))
    assert probe["test/acc"] > 0.8  # 10 classes: chance is 0.1
    head = load_checkpoint(tmp_path / "run")["model"]["head.1.weight"]
    # the same features under a random head that hardly trains: the probe did the work
    untrained = [
        "model.mode=feature_extraction",
        "model.head_init=random",
        "optimizer.lr=1e-7",
    ]
    trained = run(config(*common, *untrained, run_dir=tmp_path / "fe"))
    assert probe["test/acc"] > trained["test/acc"] + 0.5
    assert not torch.equal(head, load_checkpoint(tmp_path / "fe")["model"]["head.1.weight"])


def test_probe_settings_that_cannot_work_are_clear_errors(cnn_run):
    from runner.data.loader import BatchPreprocessor

    with pytest.raises(RunnerError, match="solves the head as one linear layer"):
        TransferClassifier(
            (1, 28, 28), 4, pretrained=str(cnn_run), mode="linear_probe", head_hidden=8
        )
    model = TransferClassifier((1, 28, 28), 4, pretrained=str(cnn_run), mode="linear_probe")
    one_class = loader_of(torch.rand(20, 1, 28, 28), torch.zeros(20, dtype=torch.long))
    with pytest.raises(RunnerError, match="needs labelled images of at least 2 classes"):
        model.on_fit_start(one_class, one_class, BatchPreprocessor(), steps_per_epoch=1)


def test_bad_cuts_and_modes_stop_the_cli_with_one_paragraph(tmp_path, cli_error):
    run(make_config(tmp_path / "mlp", ["model=ae", "model.latent_dim=6", "logger=none"]))
    err = cli_error(
        tmp_path / "bad",
        "model=transfer",
        f"model.pretrained={tmp_path / 'mlp'}",
        "model.cut=trunk",
    )
    assert "model.cut=trunk" in err and "can only be cut at hidden" in err
    err = cli_error(tmp_path / "bad2", "model=deep_ae", "model.mode=linear_probe")
    assert "Unknown key model.mode" in err


def test_head_init_auto_starts_a_frozen_backbones_head_as_the_probe(cnn_run):
    from runner.data.loader import BatchPreprocessor

    x, y = torch.rand(60, 1, 28, 28), torch.arange(60) % 4
    for c in range(4):  # each class its own bright band: separable
        x[y == c, :, 6 * c : 6 * c + 4] = 1.0
    heads = {}
    for mode in ("feature_extraction", "fine_tuning"):
        torch.manual_seed(0)
        model = TransferClassifier((1, 28, 28), 4, pretrained=str(cnn_run), mode=mode)
        before = model.head[-1].weight.clone()
        model.on_fit_start(loader_of(x, y), loader_of(x, y), BatchPreprocessor(), steps_per_epoch=2)
        heads[mode] = not torch.equal(before, model.head[-1].weight)
        with torch.no_grad():
            acc = model.eval()(x).argmax(1).eq(y).float().mean()
        if mode == "feature_extraction":
            assert acc > 0.9  # the probe's solution: already a good head
    assert heads == {"feature_extraction": True, "fine_tuning": False}


def test_a_resumed_transfer_run_ends_as_an_uninterrupted_one(config, tmp_path, cnn_run):
    target = write_mnist_like(tmp_path / "target", "FashionMNIST", n_train=200, n_test=100)
    common = [
        "model=transfer",
        f"model.pretrained={cnn_run}",
        "model.adapt_bn=true",  # with the probe and the warm-up: everything before epoch 1
        "dataset=fashion_mnist",
        f"dataset.root={target}",
        "dataset.download=false",
        "trainer.batch_size=16",
        "trainer.deterministic=true",
        "logger=none",
    ]
    for mode in ("feature_extraction", "fine_tuning"):
        full = run(
            config(*common, f"model.mode={mode}", "trainer.max_epochs=3", run_dir=tmp_path / mode)
        )
        folder = tmp_path / f"{mode}_resumed"
        run(config(*common, f"model.mode={mode}", "trainer.max_epochs=2", run_dir=folder))
        resumed = run(
            config(
                *common,
                f"model.mode={mode}",
                "trainer.max_epochs=3",
                "trainer.resume=true",
                run_dir=folder,
            )
        )
        assert resumed == full


def test_a_transfer_run_saved_before_model_cut_existed_still_loads(config, tmp_path, cnn_run):
    target = write_mnist_like(tmp_path / "target", "FashionMNIST", n_train=100, n_test=50)
    run(
        config(
            "model=transfer",
            f"model.pretrained={cnn_run}",
            "model.cut=hidden",  # the only cut there was
            "dataset=fashion_mnist",
            f"dataset.root={target}",
            "dataset.download=false",
            "trainer.max_epochs=1",
            "logger=none",
        )
    )
    state = load_checkpoint(tmp_path / "run")
    for key in ("cut", "warmup_epochs", "head_init", "adapt_bn", "probe_solver"):
        del state["config"]["model"][key]
    torch.save(state, tmp_path / "old.pt")
    old = load_run(tmp_path / "old.pt").model
    assert old.head[-1].in_features == 32  # the cnn's hidden layer, as it was trained


def test_a_run_backbone_needs_the_run_loader_handed_in(cnn_run):
    with pytest.raises(RunnerError, match="load_run"):
        TransferModel((1, 28, 28), 4, pretrained=str(cnn_run))
