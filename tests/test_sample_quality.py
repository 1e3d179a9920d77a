"""Sample-quality metrics: the Fréchet distance against closed forms, coverage and confidence on
known sets, `test/fd` in a VAE and a GAN run scored by a trained CNN, trained samples against
untrained ones, evaluate_samples, and the latent projector of autoencoder runs."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from runner.build import build_data, build_model
from runner.config import compose_run_config
from runner.errors import RunnerError
from runner.evaluate_samples import evaluate_samples
from runner.metrics import frechet_distance, sample_quality
from runner.metrics.sample_quality import load_classifier
from runner.models.capabilities import Classifier
from runner.runs import load_run
from runner.train import run
from runner.training.checkpoint import load_checkpoint
from tests.fakes import class_images


def gaussian(n: int, mean, std: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mean = torch.as_tensor(mean, dtype=torch.float64)
    return mean + std * torch.randn(n, len(mean), generator=g, dtype=torch.float64)


def test_identical_sets_are_at_distance_zero():
    x = gaussian(2000, [0.0] * 6)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("shift", "std", "expected"),
    [
        ([1.0, 2.0, 0.0, 0.0], 1.0, 5.0),  # ||mu_1 - mu_2||^2
        ([0.0] * 4, 2.0, 4.0),  # d (1 - s)^2 with d = 4, s = 2
        ([3.0, 0.0, 0.0, 0.0], 0.5, 9.0 + 4 * 0.25),
    ],
)
def test_shifted_and_scaled_gaussians_give_the_closed_form(shift, std, expected):
    a = gaussian(200_000, [0.0] * 4, seed=1)
    b = gaussian(200_000, shift, std, seed=2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02, abs=0.02)


class BarReader(nn.Module):
    """A 'classifier' for tests/conftest.py's class images: class c is a bright bar at a known
    row, so the brightness of those ten rows is both the feature vector and the logits."""

    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.rows = [2 + (c * 22) // 10 + 1 for c in range(10)]
        self.scale = nn.Parameter(torch.tensor(20.0), requires_grad=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, self.rows, 8:20].mean(-1) * self.scale

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return features


def test_the_bar_reader_is_what_sample_scoring_takes():
    assert isinstance(BarReader(), Classifier)


def images_of(labels, seed: int) -> torch.Tensor:
    return torch.from_numpy(class_images(np.asarray(labels), seed=seed)).float().div(255)[:, None]


def test_coverage_confidence_and_distance_tell_collapsed_samples_from_real_ones():
    reader = BarReader()
    real = images_of(np.arange(600) % 10, seed=1)
    diverse = sample_quality(reader, images_of(np.arange(600) % 10, seed=2), real)
    collapsed = sample_quality(reader, images_of(np.full(600, 3), seed=2), real)
    assert diverse["class_coverage"] == 10 and collapsed["class_coverage"] == 1
    assert diverse["confidence"] > 0.99
    assert collapsed["fd"] > 50 * max(diverse["fd"], 1e-3)
    assert diverse["fd"] < 5 * max(diverse["fd_floor"], 1e-3)  # as close as real data gets


def test_generative_runs_report_fd_against_a_trained_classifier(
    config, cnn_run, session_mnist, tmp_path
):
    classifier, data = cnn_run, session_mnist
    quality = [f"model.fd_classifier={classifier}", "model.fd_samples=200", "logger=none"]
    vae_training = ("trainer.max_epochs=8", "trainer.batch_size=16")  # 136 steps
    vae = run(
        config(
            "model=vae", *data, *quality, *vae_training, "model.nll_samples=4", "model.latent_dim=4"
        )
    )
    gan = run(
        config(
            "model=gan",
            "optimizer=gan_adam",
            "optimized_metric=val/fd",
            "optimized_mode=min",
            *data,
            *quality,
            "model.val_fd_samples=100",
            "model.channels=[8,16]",
            "model.latent_dim=8",
            "trainer.max_epochs=3",
            run_dir=tmp_path / "gan",
        )
    )
    # The GAN measures val/fd after every epoch and keeps the epoch with the lowest as best.pt.
    history = load_checkpoint(tmp_path / "gan" / "checkpoints" / "last.pt")["history"]
    val_fd = [epoch["val/fd"] for epoch in history]
    assert len(val_fd) == 3 and all(fd > 0 for fd in val_fd)
    best = json.loads((tmp_path / "gan" / "metrics.json").read_text())
    assert best["best_epoch"] == 1 + val_fd.index(min(val_fd))
    assert gan["val/fd_best"] == min(val_fd)
    for metrics in (vae, gan):
        assert metrics["test/fd"] > metrics["test/fd_floor"] >= 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert saved["test/fd"] == vae["test/fd"]

    # What a user would notice: the trained VAE's samples are digits of more classes than an
    # untrained VAE's (by the cnn, as the run scores them: measured 4-5 classes against 1-2), and
    # they are clearer: the bar reader, which knows the classes exactly, is more sure of them
    # (measured 0.25-0.27 against 0.13). The 4-epoch cnn is too unsure of real images (~0.3) for
    # its own confidence to tell them apart.
    trained = load_run(tmp_path / "run")
    untrained = build_model(trained.config).eval()
    test = build_data(trained.config).test
    real = test.images.float() / 255
    cnn = load_classifier(classifier)
    drawn = {
        name: samples_of(model)
        for name, model in [("trained", trained.model), ("untrained", untrained)]
    }
    by_cnn = {name: sample_quality(cnn, x, real) for name, x in drawn.items()}
    by_reader = {name: sample_quality(BarReader(), x, real) for name, x in drawn.items()}
    assert by_cnn["trained"]["class_coverage"] >= by_cnn["untrained"]["class_coverage"] + 2, by_cnn
    assert by_reader["trained"]["confidence"] > 1.5 * by_reader["untrained"]["confidence"], (
        by_reader
    )

    # evaluate_samples scores a finished run the same way (same seeds, same checkpoint).
    again = evaluate_samples(tmp_path / "run", classifier, samples=200, device="cpu")
    assert again["test/fd"] == pytest.approx(vae["test/fd"], rel=1e-5)
    with pytest.raises(RunnerError, match="not a classifier"):
        evaluate_samples(tmp_path / "run", tmp_path / "gan", samples=50, device="cpu")


def samples_of(model, n: int = 200) -> torch.Tensor:
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        return model.sample(n).float().clamp(0, 1)


@pytest.mark.parametrize("model", ["deep_ae", pytest.param("vae", marks=pytest.mark.slow)])
def test_latent_codes_go_to_the_projector_with_labels(model, config, tiny_mnist, tmp_path):
    extra = ["model.nll_samples=2"] if model == "vae" else []
    data = ["dataset=mnist", f"dataset.root={tiny_mnist}", "dataset.download=false"]
    run(config(f"model={model}", *data, "model.latent_dim=3", "trainer.max_epochs=1", *extra))
    (tensors,) = (tmp_path / "run").rglob("tensors.tsv")
    codes = np.loadtxt(tensors, delimiter="\t")
    assert codes.shape == (100, 3)  # every test image, its latent code
    labels = (tensors.parent / "metadata.tsv").read_text().split("\n")
    assert labels[0].startswith("0") and labels[1].startswith("1")  # class names per point
    assert (tensors.parent / "sprite.png").exists()  # thumbnails
    assert "projector_config.pbtxt" in {p.name for p in (tmp_path / "run").iterdir()}


def test_a_default_generative_run_reports_fd_and_a_second_reuses_the_classifier(config, tmp_path):
    from runner.metrics.reference import reference_folder

    quick = ("model=vae", "model.nll_samples=4", "model.fd_samples=300", "logger=none")
    first = run(config(*quick, "trainer.max_epochs=1", run_dir=tmp_path / "a"))
    assert {"test/fd", "test/fd_floor", "test/class_coverage", "test/confidence"} <= set(first)
    folder = reference_folder(OmegaConf.to_container(config().dataset, resolve=True))
    trained = (folder / "checkpoints" / "best.pt").stat().st_mtime_ns
    classifier_metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert classifier_metrics["test/acc"] > 0.8  # a real classifier of the digits
    second = run(config(*quick, "trainer.max_epochs=2", run_dir=tmp_path / "b"))
    assert (folder / "checkpoints" / "best.pt").stat().st_mtime_ns == trained  # not retrained
    assert second["test/fd"] != first["test/fd"]  # another model, scored in the same space
    saved = load_checkpoint(tmp_path / "b" / "checkpoints" / "best.pt")["config"]
    assert saved["model"]["fd_classifier"] == str(folder)  # the run names the classifier it used


def test_parallel_runs_train_the_reference_classifier_once(tmp_path, monkeypatch):
    from runner.metrics import reference

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def slow_training(folder: Path, overrides: list[str]) -> None:
        calls.append(overrides)
        time.sleep(0.5)  # the other run arrives meanwhile and must wait, not train
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "best.pt").write_bytes(b"")
        (folder / "metrics.json").write_text("{}")

    dataset = {"_target_": "runner.data.datasets.digits", "shape": [1, 8, 8], "split_seed": 0}
    with ThreadPoolExecutor(3) as pool:
        folders = list(
            pool.map(
                lambda _: reference.reference_classifier("digits", dataset, slow_training), range(3)
            )
        )
    assert len(calls) == 1 and len(set(folders)) == 1
    assert "dataset=digits" in calls[0] and "dataset.split_seed=0" in calls[0]


def test_the_reference_overrides_compose_to_the_same_dataset(tmp_path):
    from runner.metrics.reference import dataset_overrides

    root = tmp_path / "my data, v2"  # spaces and a comma survive Hydra's override parser
    dataset = {"name": "MNIST", "root": str(root), "shape": [1, 28, 28], "train_subset": 500}
    composed = compose_run_config(tmp_path / "run", ["dataset=mnist", *dataset_overrides(dataset)])
    assert composed.dataset.root == str(root) and list(composed.dataset.shape) == [1, 28, 28]
    assert composed.dataset.train_subset is None  # the classifier learns from all training data
