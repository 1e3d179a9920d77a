"""Classifiers after testing: per-class accuracy, the confusion matrix and misclassified images;
the plain MLP of init studies: it learns, and its keys reach the network."""

import json
import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runner.build import build_model
from runner.data.loader import BatchPreprocessor
from runner.models import MLP, Classifier
from runner.train import run


class PixelVote(Classifier):
    """Predicts the class written in the first pixel: fixed, known predictions to score."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = (x[:, 0, 0, 0] * 255).round().long()
        return torch.nn.functional.one_hot(votes, self.num_classes).float()


class Collect:
    """Stands in for the TensorBoard logger: keeps the images it is given."""

    def __init__(self) -> None:
        self.logged: dict[str, torch.Tensor] = {}

    def images(self, images: dict[str, torch.Tensor], step: int) -> None:
        self.logged.update(images)


def test_per_class_accuracy_confusion_matrix_and_misclassified_grid():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0, 1, 2])  # class 0: 3/4, 1: 2/2, 2: 2/4
    images = torch.zeros(10, 1, 6, 6, dtype=torch.uint8)
    images[:, 0, 0, 0] = predicted.to(torch.uint8)
    batches = [(images[:6], labels[:6]), (images[6:], labels[6:])]
    model = PixelVote(3).eval()
    model.class_names = ["cat", "dog", "fox"]
    logger = Collect()

    metrics = model.on_test_end(batches, BatchPreprocessor(None), logger)

    assert metrics == {
        "test/acc_class/cat": 0.75,
        "test/acc_class/dog": 1.0,
        "test/acc_class/fox": 0.5,
    }
    assert set(logger.logged) == {"test/confusion_matrix", "test/misclassified"}
    for image in logger.logged.values():
        assert image.dim() == 3 and image.shape[0] == 3
        assert image.min() >= 0 and image.max() <= 1
        assert image.std() > 0  # something is drawn


def test_without_names_or_logger_classes_are_numbered():
    labels = torch.tensor([0, 1, 1])
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor([0, 1, 0], dtype=torch.uint8)
    metrics = PixelVote(2).eval().on_test_end([(images, labels)], BatchPreprocessor(None), None)
    assert metrics == {"test/acc_class/0": 1.0, "test/acc_class/1": 0.5}


def test_a_cnn_run_shows_its_test_pictures_and_class_accuracies(config, tmp_path):
    metrics = run(
        config(
            "model=cnn",
            "model.channels=[8,16]",
            "model.hidden_dim=16",
            "trainer.max_epochs=1",
            "optimized_metric=val/acc",
            "optimized_mode=max",
        )
    )
    out = tmp_path / "run"
    per_class = {k: v for k, v in metrics.items() if k.startswith("test/acc_class/")}
    assert sorted(per_class) == sorted(f"test/acc_class/{i}" for i in range(10))  # digits 0..9
    assert all(0 <= v <= 1 for v in per_class.values())
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert saved["test/acc_class/3"] == per_class["test/acc_class/3"]
    events = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"test/confusion_matrix", "test/misclassified"} <= set(events.Tags()["images"])
    assert "test/acc_class/3" in events.Tags()["scalars"]


def test_an_mlp_run_on_digits_beats_the_majority_class(config, tmp_path):
    metrics = run(config("model=mlp", "logger=none"))  # the defaults, two epochs
    assert metrics["test/acc"] > 0.8 > metrics["test/majority_acc"]
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["warnings"] == []


def test_the_mlp_keys_reach_its_network(config):
    overrides = ("model=mlp", "model.hidden_dims=[32,16]", "model.activation=tanh")
    model = build_model(config(*overrides, "regularization.normalization=layer"))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16), (16, 10)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.modules()) == 2
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules()) == 2
    x = torch.rand(3, 1, 8, 8)
    assert model.features(x).shape == (3, 16)  # the last hidden layer
    torch.testing.assert_close(model.classify(model.features(x)), model(x))
    plain = build_model(config("model=mlp"))  # normalization auto: none in a plain network
    assert not [
        m for m in plain.modules() if isinstance(m, torch.nn.LayerNorm | torch.nn.BatchNorm1d)
    ]


def test_the_mlp_init_key_draws_each_scheme_and_default_keeps_pytorchs():
    wide = (256, 256)  # body.2 is 256 -> 256: fan_in = fan_out = 256
    expected = {
        "default": 1 / math.sqrt(3 * 256),  # PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        "xavier": math.sqrt(2 / (256 + 256)),  # Glorot, gain 1, whatever the activation
        "kaiming": math.sqrt(2 / 256),  # He, the ReLU gain sqrt(2), whatever the activation
    }
    for init, std in expected.items():
        for activation in ("relu", "tanh"):
            torch.manual_seed(0)
            model = MLP((1, 8, 8), 10, hidden_dims=wide, activation=activation, init=init)
            assert abs(model.body[2].weight.std().item() - std) < 0.02 * std, (init, activation)
            bias = model.body[2].bias
            assert (bias.abs().max().item() == 0) == (init != "default"), (init, activation)
