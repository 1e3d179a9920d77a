"""Sequence data and models: .ts files written here (fixed and variable length, uni- and
multivariate), aeon's shipped GunPoint, every encoder, padding invariance, seq_ae, resume,
transfer and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runner.build import build_data, build_model
from runner.data.sequence_augment import SequenceAugmentation, series_lengths
from runner.data.timeseries import shipped_names, timeseries
from runner.errors import RunnerError
from runner.models.sequence import SeqClassifier
from runner.train import run
from runner.training.checkpoint import load_checkpoint

QUIET = ("trainer.threads=1", "logger.log_images=false", "logger.tensorboard=false")


def make_series(n: int, channels: int, variable: bool, seed: int) -> tuple[list, np.ndarray]:
    """Two classes: a slow or a fast sine (in a class-specific channel when multivariate)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    series = []
    for label in labels:
        length = int(rng.integers(16, 33)) if variable else 24
        t = np.linspace(0, 1, length)
        phase = rng.uniform(0, 2 * np.pi)
        values = 0.3 * rng.standard_normal((channels, length))
        values[label % channels] += np.sin(2 * np.pi * (1 + 3 * label) * t + phase)
        series.append(values)
    return series, labels


def write_ts(path: Path, series: list, labels: np.ndarray) -> None:
    """aeon's .ts format: one case per line, channels separated by ':', the label last."""
    lengths = {s.shape[1] for s in series}
    header = [
        f"@problemName {path.stem}",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if series[0].shape[0] == 1 else 'false'}",
        f"@dimensions {series[0].shape[0]}",
        f"@equalLength {'true' if len(lengths) == 1 else 'false'}",
        *([f"@seriesLength {lengths.pop()}"] if len(lengths) == 1 else []),
        "@classLabel true a b",
        "@data",
    ]
    rows = [
        ":".join(",".join(f"{v:.5f}" for v in channel) for channel in s) + f":{'ab'[label]}"
        for s, label in zip(series, labels)
    ]
    path.write_text("\n".join(header + rows) + "\n")


def write_problem(folder: Path, channels: int = 1, variable: bool = False, n: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, count, seed in (("TRAIN", n, 0), ("TEST", n // 2, 1)):
        write_ts(folder / f"Toy_{part}.ts", *make_series(count, channels, variable, seed))
    return folder


@pytest.fixture
def toy(tmp_path):
    """`toy(channels, variable)` -> overrides for dataset=timeseries on a written problem."""

    def _make(channels: int = 1, variable: bool = False) -> list[str]:
        folder = write_problem(tmp_path / f"toy{channels}{variable}", channels, variable)
        return ["dataset=timeseries", "dataset.name=Toy", f"dataset.path={folder}"]

    return _make


# --- data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "variable"), [(1, False), (1, True), (3, False), (3, True)])
def test_ts_files_load_as_padded_normalised_series(tmp_path, channels, variable):
    folder = write_problem(tmp_path, channels, variable)
    data = timeseries(name="Toy", path=str(folder), val_fraction=0.25, train_subset=40)
    steps = 32 if variable else 24
    assert data.shape == (steps, channels)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 20, 40)
    assert data.class_names == ["a", "b"] and data.num_classes == 2
    assert data.val.labels.bincount().tolist() == [10, 10]  # stratified
    train = data.train.images
    assert train.dtype == torch.float32 and train.shape == (40, steps, channels)
    lengths = series_lengths(train)
    if variable:
        assert lengths.min() < steps and lengths.max() <= steps
    else:
        assert (lengths == steps).all() and not torch.isnan(train).any()
    # NaN exactly after each end, z-normalised per channel on the training part only
    for series, length in zip(train, lengths):
        assert not torch.isnan(series[:length]).any() and torch.isnan(series[length:]).all()
    observed = train[~torch.isnan(train).any(2)]
    assert torch.allclose(observed.mean(0), torch.zeros(channels), atol=1e-4)
    assert torch.allclose(observed.std(0, unbiased=False), torch.ones(channels), atol=1e-4)


def test_shipped_gunpoint_keeps_the_archive_split():
    assert {"GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels"} <= set(
        shipped_names()
    )
    data = timeseries(name="GunPoint", val_fraction=0.2)
    assert data.shape == (150, 1) and data.num_classes == 2
    assert len(data.train) + len(data.val) == 50 and len(data.test) == 150
    vowels = timeseries(name="JapaneseVowels")  # multivariate, variable length
    assert vowels.shape[1] == 12 and series_lengths(vowels.test.images).min() < vowels.shape[0]


def test_sequence_augmentation_keeps_padding_and_each_series_length():
    torch.manual_seed(0)
    x = torch.randn(6, 30, 2)
    x[:3, 20:] = float("nan")
    augment = SequenceAugmentation(jitter=0.1, scaling=0.2, time_warp=0.3, window_slice=0.8)
    out = augment(x)
    assert torch.equal(torch.isnan(out), torch.isnan(x))
    assert not torch.allclose(out[~torch.isnan(x)], x[~torch.isnan(x)])
    # Warping and slicing only re-read a series inside its own length: no new extremes.
    resampled = SequenceAugmentation(time_warp=0.3, window_slice=0.7)(x)
    for series, before in zip(resampled, x):
        seen = before[~torch.isnan(before).any(1)]
        kept = series[~torch.isnan(series).any(1)]
        assert (kept.amax(0) <= seen.amax(0) + 1e-5).all()
        assert (kept.amin(0) >= seen.amin(0) - 1e-5).all()
    assert not SequenceAugmentation().enabled


# --- models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["rnn", "lstm", "gru", "transformer"])
def test_each_encoder_learns_variable_length_multivariate_series(config, toy, encoder):
    metrics = run(
        config(
            *toy(channels=2, variable=True),
            *QUIET,
            "model=seq_classifier",
            f"model.encoder={encoder}",
            "model.hidden_size=32",
            "model.d_model=16",
            "model.pooling=mean",
            "trainer.max_epochs=12",
            "trainer.batch_size=16",
            "optimizer.lr=1e-2",
            "optimized_metric=val/acc",
            "optimized_mode=max",
        )
    )
    assert metrics["test/acc"] >= 0.8, metrics  # chance is 0.5


CASES = [
    ("rnn", "last", False, [], "stem", 1),
    ("lstm", "last", True, [], "stem", 1),
    ("gru", "mean", True, [8], "stem", 1),
    ("lstm", "mean", False, [8, 8], "stem", 1),
    ("gru", "mean", True, [8, 8], "both", 3),
    ("lstm", "last", True, [8], "stem", 4),
    ("lstm", "last", False, [8, 8], "parallel", 1),
    ("transformer", "mean", False, [8], "stem", 1),
    ("transformer", "mean", False, [8], "both", 2),
    ("transformer", "last", False, [], "stem", 1),
]


@pytest.mark.parametrize(("encoder", "pooling", "bidirectional", "conv", "layout", "stride"), CASES)
def test_padding_never_changes_a_prediction(encoder, pooling, bidirectional, conv, layout, stride):
    torch.manual_seed(0)
    model = SeqClassifier(
        (20, 3),
        4,
        encoder=encoder,
        hidden_size=16,
        num_layers=2,
        bidirectional=bidirectional,
        pooling=pooling,
        d_model=16,
        nhead=4,
        conv_channels=conv,
        conv_kernel=[5, 3] if len(conv) == 2 else 5,
        conv_layout=layout,
        encoder_stride=stride,
        normalization="batch",
    ).eval()
    lengths = [20, 7, 13, 2]
    batch = torch.full((4, 20, 3), float("nan"))
    for i, length in enumerate(lengths):
        batch[i, :length] = torch.randn(length, 3)
    more_padding = torch.cat([batch, torch.full((4, 15, 3), float("nan"))], dim=1)
    with torch.no_grad():
        logits = model(batch)
        padded = model(more_padding)
        alone = torch.cat([model(batch[i : i + 1, :length]) for i, length in enumerate(lengths)])
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits, padded, atol=1e-5)
    assert torch.allclose(logits, alone, atol=1e-5)
    # ...while the data inside a series does change it
    changed = batch.clone()
    changed[1, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(changed)[1], logits[1])


def test_sequential_mnist_reads_images_row_by_row(config, tiny_mnist):
    cfg = config(
        *QUIET,
        "dataset=mnist",
        f"dataset.root={tiny_mnist}",
        "dataset.download=false",
        "model=seq_classifier",
        "model.hidden_size=32",
        "trainer.max_epochs=4",
        "trainer.batch_size=32",
        "optimizer.lr=1e-2",
    )
    metrics = run(cfg)
    model = build_model(cfg)
    assert model.encoder.layers.input_size == 28  # 28 steps of one 28-pixel row each
    assert metrics["test/acc"] > 0.5  # chance is 0.1


@pytest.mark.slow
def test_seq_ae_beats_the_mean_and_denoises(config, toy, tmp_path):
    common = [
        *toy(channels=2, variable=True),
        *QUIET,
        "model=seq_ae",
        "model.latent_dim=8",
        "model.hidden_size=32",
        "trainer.max_epochs=30",
        "trainer.batch_size=8",
        "optimizer.lr=5e-3",
    ]
    plain = run(config(*common, run_dir=tmp_path / "plain"))
    # Predicting the (z-normalised) mean gives an MSE of about 1.
    assert plain["test/recon_mse"] < 0.5, plain
    noisy = run(
        config(
            *common,
            "model.noise_type=gaussian",
            "model.noise_level=1.0",
            run_dir=tmp_path / "noisy",
        )
    )
    assert noisy["test/recon_mse"] < noisy["test/noisy_mse"], noisy


def test_tensorboard_shows_series_plots_confusion_matrix_and_codes(config, toy, tmp_path):
    data = toy(channels=2, variable=True)
    short = ["trainer.threads=1", "trainer.max_epochs=1", "model.hidden_size=8"]
    run(config(*data, *short, "model=seq_ae", run_dir=tmp_path / "ae"))
    run(config(*data, *short, "model=seq_classifier", run_dir=tmp_path / "clf"))
    tags = {}
    for name in ("ae", "clf"):
        events = EventAccumulator(str(tmp_path / name), size_guidance={"images": 0})
        events.Reload()
        tags[name] = set(events.Tags()["images"])
    assert "val/reconstructions" in tags["ae"]
    assert {"test/confusion_matrix", "test/misclassified"} <= tags["clf"]
    projector = (tmp_path / "ae" / "projector_config.pbtxt").read_text()
    assert "test/latent" in projector


def test_resume_is_exact_and_an_encoder_transfers(config, toy, tmp_path):
    common = [
        *toy(channels=1, variable=True),
        *QUIET,
        "model=seq_classifier",
        "model.encoder=gru",
        "model.hidden_size=16",
        "regularization.augmentation.jitter=0.1",
        "regularization.augmentation.time_warp=0.2",
    ]
    full = run(config(*common, "trainer.max_epochs=4", run_dir=tmp_path / "full"))
    run(config(*common, "trainer.max_epochs=2", run_dir=tmp_path / "resumed"))
    resumed = run(
        config(*common, "trainer.max_epochs=4", "trainer.resume=true", run_dir=tmp_path / "resumed")
    )
    assert resumed == full
    # A seq_classifier starts from the GRU of the finished run.
    cfg = config(*common, f"model.pretrained={tmp_path / 'full'}")
    build_data(cfg)  # fills in the data's shape
    model = build_model(cfg)
    state = load_checkpoint(tmp_path / "full" / "checkpoints" / "best.pt")["model"]
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, state[f"encoder.{name}"])


# --- bad input -------------------------------------------------------------------------------


def test_unknown_archive_name_lists_the_shipped_problems_and_how_to_get_others(config):
    with pytest.raises(RunnerError) as error:
        run(config("dataset=timeseries", "dataset.name=GunPont", "model=seq_classifier"))
    message = str(error.value)
    for needle in ("'GunPont'", "GunPoint, ", "BasicMotions", "dataset.path=", "download=true"):
        assert needle in message, message


def test_archive_problems_not_shipped_say_where_to_put_their_files(tmp_path, monkeypatch):
    import aeon.datasets

    with pytest.raises(RunnerError, match="Adiac is in the UCR/UEA archive but does not ship"):
        timeseries(name="Adiac", cache_dir=str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(aeon.datasets, "load_classification", offline)
    with pytest.raises(RunnerError) as error:
        timeseries(name="Adiac", download=True, cache_dir=str(tmp_path))
    message = str(error.value)
    assert "Could not download Adiac (Network is unreachable)" in message
    assert f"Adiac_TRAIN.ts and Adiac_TEST.ts into {tmp_path / 'Adiac'}/" in message


def test_a_folder_without_ts_files_is_a_clear_error(tmp_path):
    with pytest.raises(RunnerError, match="one pair of files <name>_TRAIN.ts"):
        timeseries(name="Toy", path=str(tmp_path))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["model.encoder=cnn"], "model.encoder='cnn' is not valid"),
        (["model.in_shape=[64]"], "model=seq_classifier reads its input as a sequence"),
        (
            ["model.conv_channels=[8,8]", "model.conv_kernel=[7,5,3]"],
            "names 3 kernel sizes for 2 convolutions",
        ),
        (["model.conv_layout=side"], "model.conv_layout='side' is not valid"),
        (["model.encoder_stride=0"], "model.encoder_stride=0 is out of range"),
        (
            ["regularization.augmentation.jitter=0.1"],
            "regularization.augmentation.jitter applies to series",
        ),
        (
            ["dataset=timeseries", "regularization.augmentation.rotation=5"],
            "regularization.augmentation.rotation applies to images",
        ),
    ],
)
def test_bad_sequence_input_is_rejected_before_training(config, tmp_path, args, needle):
    with pytest.raises(RunnerError, match=needle):
        run(config("model=seq_classifier", *args))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_transformer_with_d_model_not_divisible_by_nhead_exits_2(tmp_path):
    command = [sys.executable, "-m", "runner.train", "model=seq_classifier"]
    command += ["model.encoder=transformer", "model.d_model=30", f"hydra.run.dir={tmp_path}"]
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: model.d_model=30 is not divisible by model.nhead=4" in result.stderr
    assert "Traceback" not in result.stderr


def test_cv_folds_work_on_series(config, toy, tmp_path):
    from runner.search.cv import run_folds

    cfg = config(*toy(), *QUIET, "model=seq_classifier", "model.hidden_size=8", "cv.folds=2")
    cfg.trainer.max_epochs = 1
    metrics = run_folds(cfg, run)
    assert "val/loss" in metrics
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(summary["folds"]) == 2


def test_image_runs_do_not_import_aeon():
    code = "import sys, runner.train; sys.exit('aeon' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_seq_ae_starts_as_pca_of_the_training_series_and_keeps_it_fixed():
    from sklearn.decomposition import PCA

    from runner.models.sequence import SeqAutoencoder
    from runner.training.step import OptimizerStep

    torch.manual_seed(0)
    train, test = torch.randn(40, 12, 2), torch.randn(10, 12, 2)
    labels = torch.zeros(8, dtype=torch.long)
    batches = [(train[start : start + 8], labels) for start in range(0, 40, 8)]
    model = SeqAutoencoder((12, 2), latent_dim=3, hidden_size=8)  # linear=auto: pca here
    model.on_fit_start(batches, batches[:1], lambda batch, train: batch, steps_per_epoch=5)
    with torch.no_grad():
        as_pca = model.eval()(test)
    pca = PCA(3).fit(train.flatten(1).numpy())
    expected = pca.inverse_transform(pca.transform(test.flatten(1).numpy()))
    assert np.allclose(as_pca.flatten(1).numpy(), expected, atol=1e-4)

    fitted = model.linear_decoder.weight.clone()
    optimizers = {"model": torch.optim.Adam(model.parameters(), lr=1e-2)}
    step = OptimizerStep(torch.device("cpu"))
    model.train()
    for batch in batches:
        model.training_step(batch, optimizers, step)
    # Training moved the recurrent parts around a fixed PCA.
    assert torch.equal(model.linear_decoder.weight, fitted)
    assert model.to_output.weight.abs().sum() > 0
