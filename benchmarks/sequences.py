"""Sequence models beside their baselines, in one run (issue 14).

1. Classification on five UCR/UEA problems shipped with aeon: each encoder kind with the recipe
   of conf/experiment/seq_timeseries.yaml, over several seeds, against aeon's 1-nearest-neighbour
   DTW classifier (the archive's standard baseline) on the same train/test split.
2. Sequential MNIST: conf/experiment/seq_mnist.yaml (an LSTM reading rows), needs --root.
3. seq_ae (conf/experiment/seq_ae_timeseries.yaml) against PCA with as many components as the
   code has, fitted on the same training series: test reconstruction MSE.

Prints one table per part with test accuracy (mean +- std over seeds), epochs and wall times.

    python benchmarks/sequences.py --root /path/to/data            # everything
    python benchmarks/sequences.py --quick                         # a smoke test, minutes
    python benchmarks/sequences.py --parts classify --encoders gru --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from runner.config import compose_run_config
from runner.train import run

DATASETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels"]
ENCODERS = ["rnn", "lstm", "gru", "transformer"]
AE_DATASETS = ["GunPoint", "BasicMotions"]
QUIET = ["trainer.progress_bar=false", "logger.tensorboard=false"]


def train(out: Path, overrides: list[str]) -> dict:
    """One in-process run; its metrics.json plus the wall time around it."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the config tree, once per run, is noise
        run(compose_run_config(out, [*QUIET, *overrides]))
    summary = json.loads((out / "metrics.json").read_text())
    summary["wall_s"] = time.perf_counter() - started
    return summary


def one_nn_dtw(name: str) -> tuple[float, float]:
    """Test accuracy and wall time of aeon's 1-NN DTW on the archive's own train/test files."""
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    from runner.data.timeseries import find_files, read_ts

    started = time.perf_counter()
    train_file, test_file = find_files(name, None, False, None)
    (x_train, y_train), (x_test, y_test) = read_ts(train_file), read_ts(test_file)
    knn = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1).fit(x_train, y_train)
    accuracy = float(np.mean(knn.predict(x_test) == y_test))
    return accuracy, time.perf_counter() - started


def classify(args, out: Path) -> list[dict]:
    rows = []
    for name in args.datasets:
        dtw, dtw_s = one_nn_dtw(name)
        row = {"dataset": name, "1nn_dtw": dtw, "dtw_s": dtw_s, "encoders": {}}
        for encoder in args.encoders:
            runs = [
                train(
                    out / name / f"{encoder}_seed{seed}",
                    [
                        "experiment=seq_timeseries",
                        f"dataset.name={name}",
                        f"model.encoder={encoder}",
                        f"trainer.seed={seed}",
                        f"trainer.max_epochs={args.epochs}",
                    ],
                )
                for seed in args.seeds
            ]
            folders = [out / name / f"{encoder}_seed{seed}" for seed in args.seeds]
            row["encoders"][encoder] = {
                "ensemble_acc": ensemble_accuracy(folders),
                "test_acc": [r["metrics"]["test/acc"] for r in runs],
                "val_loss": [r["metrics"]["val/loss"] for r in runs],
                "epochs": [r["epochs_trained"] for r in runs],
                "wall_s": [r["wall_s"] for r in runs],
            }
            print(f"  {name} {encoder}: {_mean_std(row['encoders'][encoder]['test_acc'])}")
        rows.append(row)
    print_classification(rows)
    return rows


@torch.no_grad()
def ensemble_accuracy(folders: list[Path]) -> float:
    """Test accuracy of the seeds' best checkpoints voting with their mean probabilities."""
    from hydra.utils import instantiate

    from runner.metrics.sample_quality import load_classifier
    from runner.training.checkpoint import load_checkpoint

    config = load_checkpoint(folders[0] / "checkpoints" / "best.pt")["config"]
    test = instantiate(config["dataset"]).test
    probs = sum(load_classifier(f)(test.images).softmax(1) for f in folders)
    return float((probs.argmax(1) == test.labels).float().mean())


def print_classification(rows: list[dict]) -> None:
    """Per dataset: each encoder's test accuracy, the best by validation loss, 1-NN DTW."""
    encoders = list(rows[0]["encoders"])
    print("\nTest accuracy, mean +- std over seeds (wall time per run, one CPU thread)")
    print(
        "| dataset | "
        + " | ".join(encoders)
        + " | best (by val loss) | its seed ensemble | 1-NN DTW | best - DTW |"
    )
    print("|---" * (len(encoders) + 5) + "|")
    gaps, ensemble_gaps = [], []
    for row in rows:
        results = row["encoders"]
        best = min(results, key=lambda e: np.mean(results[e]["val_loss"]))
        best_acc = float(np.mean(results[best]["test_acc"]))
        gaps.append(best_acc - row["1nn_dtw"])
        ensemble_gaps.append(results[best]["ensemble_acc"] - row["1nn_dtw"])
        cells = [
            f"{_mean_std(r['test_acc'])} ({np.mean(r['wall_s']):.0f} s)" for r in results.values()
        ]
        print(
            f"| {row['dataset']} | "
            + " | ".join(cells)
            + f" | {best} {best_acc:.3f} | {results[best]['ensemble_acc']:.3f}"
            + f" | {row['1nn_dtw']:.3f} | {100 * gaps[-1]:+.1f} pts |"
        )
    print(
        f"Mean gap to 1-NN DTW: {100 * np.mean(gaps):+.1f} points; at least as accurate on "
        f"{sum(g >= 0 for g in gaps)} of {len(gaps)} datasets."
    )
    print(
        f"Seed ensemble: {100 * np.mean(ensemble_gaps):+.1f} points; at least as accurate on "
        f"{sum(g >= 0 for g in ensemble_gaps)} of {len(ensemble_gaps)} datasets."
    )


def seq_mnist(args, out: Path) -> dict:
    overrides = ["experiment=seq_mnist", f"dataset.root={args.root}", "dataset.download=false"]
    if args.quick:
        overrides += ["dataset.train_subset=5000", "trainer.max_epochs=1"]
    summary = train(out / "seq_mnist", overrides)
    acc = summary["metrics"]["test/acc"]
    print(
        f"\nSequential MNIST, LSTM: test/acc={acc:.4f} after {summary['epochs_trained']} epochs "
        f"in {summary['wall_s']:.0f} s (target >= 0.985 in <= 10 epochs: "
        f"{'met' if acc >= 0.985 and summary['epochs_trained'] <= 10 else 'not met'})"
    )
    return summary


def autoencoders(args, out: Path) -> list[dict]:
    """seq_ae's test reconstruction MSE beside PCA's on the same normalised series."""
    import torch
    from sklearn.decomposition import PCA

    from runner.data.timeseries import timeseries

    rows = []
    print("\n| dataset | latent | seq_ae test MSE | PCA test MSE | epochs | wall s |")
    print("|---|---|---|---|---|---|")
    for name in AE_DATASETS:
        data = timeseries(name=name)  # the splits and normalisation the run uses

        def flat(split) -> np.ndarray:
            return torch.nan_to_num(split.images).flatten(1).numpy()

        pca = PCA(args.latent_dim).fit(flat(data.train))
        test = flat(data.test)
        pca_mse = float(np.mean((pca.inverse_transform(pca.transform(test)) - test) ** 2))
        summary = train(
            out / "seq_ae" / name,
            [
                "experiment=seq_ae_timeseries",
                f"dataset.name={name}",
                f"model.latent_dim={args.latent_dim}",
                f"trainer.max_epochs={args.ae_epochs}",
            ],
        )
        mse = summary["metrics"]["test/recon_mse"]
        rows.append({"dataset": name, "seq_ae": mse, "pca": pca_mse, **summary})
        print(
            f"| {name} | {args.latent_dim} | {mse:.4f} | {pca_mse:.4f} | "
            f"{summary['epochs_trained']} | {summary['wall_s']:.0f} |"
        )
    return rows


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder holding MNIST/ (for sequential MNIST)")
    parser.add_argument("--out", type=Path, help="run folders (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="few epochs, one seed: a smoke test")
    parser.add_argument("--parts", nargs="+", default=["classify", "mnist", "ae"])
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--encoders", nargs="+", default=ENCODERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--ae-epochs", type=int, default=500)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        QUIET.append(f"trainer.threads={args.threads}")
    if args.quick:
        args.seeds, args.epochs, args.ae_epochs = args.seeds[:1], 20, 20
    if "mnist" in args.parts and not args.root:
        parser.error(
            "sequential MNIST needs --root (the folder that holds MNIST/); or drop it "
            "with --parts classify ae"
        )
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="seq-bench-"))
    results = {}
    if "classify" in args.parts:
        results["classify"] = classify(args, out)
    if "mnist" in args.parts:
        results["mnist"] = seq_mnist(args, out)
    if "ae" in args.parts:
        results["ae"] = autoencoders(args, out)
    (out / "results.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nRun folders and results.json: {out}")


if __name__ == "__main__":
    main()
