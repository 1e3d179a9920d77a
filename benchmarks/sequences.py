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
from runner.search.cv import run_folds
from runner.train import run

DATASETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels"]
ENCODERS = ["rnn", "lstm", "gru", "transformer"]
AE_DATASETS = ["GunPoint", "BasicMotions"]
QUIET = ["trainer.progress_bar=false", "logger.tensorboard=false"]


def train(out: Path, overrides: list[str]) -> dict:
    """One in-process run; its metrics.json plus the wall time around it. A run that finished
    in an earlier invocation with the same --out is read back, not trained again."""
    done = out / "wall_time.json"
    if done.exists() and json.loads(done.read_text())["overrides"] == overrides:
        summary = json.loads((out / "metrics.json").read_text())
        return {**summary, "wall_s": json.loads(done.read_text())["wall_s"]}
    started = time.perf_counter()
    cfg = compose_run_config(out, [*QUIET, *overrides])
    with contextlib.redirect_stdout(io.StringIO()):  # the config tree, once per run, is noise
        run_folds(cfg, run) if cfg.cv.folds else run(cfg)
    summary = json.loads((out / "metrics.json").read_text())
    summary["wall_s"] = time.perf_counter() - started
    done.write_text(json.dumps({"overrides": overrides, "wall_s": summary["wall_s"]}) + "\n")
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
            seeds = [
                cross_validated(out / name / f"{encoder}_seed{seed}", name, encoder, seed, args)
                for seed in args.seeds
            ]
            row["encoders"][encoder] = {
                key: [s[key] for s in seeds] for key in ("test_acc", "cv_val_loss", "wall_s")
            }
            row["encoders"][encoder]["single_acc"] = [a for s in seeds for a in s["single_acc"]]
            row["encoders"][encoder]["epochs"] = [e for s in seeds for e in s["epochs"]]
            row["encoders"][encoder]["all_seeds_acc"] = ensemble_accuracy(
                [f for s in seeds for f in s["folders"]]
            )
            print(f"  {name} {encoder}: {_mean_std(row['encoders'][encoder]['test_acc'])}")
        rows.append(row)
    print_classification(rows)
    return rows


def cross_validated(folder: Path, name: str, encoder: str, seed: int, args) -> dict:
    """One seed of the recipe: K models on the K folds of the training part (each picks its
    checkpoint on its own held-out fold), voting on the test set. Every training series is
    learnt by K - 1 of them, and the mean out-of-fold validation loss ranks the encoders
    without the test set."""
    summary = train(
        folder,
        [
            "experiment=seq_timeseries",
            f"dataset.name={name}",
            f"model.encoder={encoder}",
            f"trainer.seed={seed}",
            f"cv.seed={seed}",
            f"cv.folds={args.folds}",
            *epochs(args.epochs),
            *args.overrides,
        ],
    )
    folds = [folder / f"fold_{k}" for k in range(args.folds)]
    runs = [json.loads((f / "metrics.json").read_text()) for f in folds]
    return {
        "test_acc": ensemble_accuracy(folds),
        "single_acc": [r["metrics"]["test/acc"] for r in runs],
        "cv_val_loss": summary["metrics"]["val/loss"],
        "epochs": [r["epochs_trained"] for r in runs],
        "wall_s": summary["wall_s"],
        "folders": folds,
    }


@torch.no_grad()
def ensemble_accuracy(folders: list[Path]) -> float:
    """Test accuracy of the runs' best checkpoints voting with their mean probabilities."""
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
    print(
        "\nTest accuracy of the fold ensembles, mean +- std over seeds (wall time per seed, "
        "all folds; in brackets below: single fold models)"
    )
    print(
        "| dataset | "
        + " | ".join(encoders)
        + " | best (by CV val loss) | all its seeds | 1-NN DTW | best - DTW |"
    )
    print("|---" * (len(encoders) + 5) + "|")
    gaps, pooled_gaps = [], []
    for row in rows:
        results = row["encoders"]
        best = min(results, key=lambda e: np.mean(results[e]["cv_val_loss"]))
        best_acc = float(np.mean(results[best]["test_acc"]))
        gaps.append(best_acc - row["1nn_dtw"])
        pooled_gaps.append(results[best]["all_seeds_acc"] - row["1nn_dtw"])
        cells = [
            f"{_mean_std(r['test_acc'])} ({np.mean(r['wall_s']):.0f} s)" for r in results.values()
        ]
        print(
            f"| {row['dataset']} | "
            + " | ".join(cells)
            + f" | {best} {best_acc:.3f} | {results[best]['all_seeds_acc']:.3f}"
            + f" | {row['1nn_dtw']:.3f} | {100 * gaps[-1]:+.1f} pts |"
        )
        singles = ", ".join(f"{e} {_mean_std(r['single_acc'])}" for e, r in results.items())
        print(f"|  (single models: {singles}) |")
    print(
        f"Mean gap to 1-NN DTW: {100 * np.mean(gaps):+.1f} points; at least as accurate on "
        f"{sum(g >= 0 for g in gaps)} of {len(gaps)} datasets."
    )
    print(
        f"All seeds' folds together: {100 * np.mean(pooled_gaps):+.1f} points; at least as "
        f"accurate on {sum(g >= 0 for g in pooled_gaps)} of {len(pooled_gaps)} datasets."
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
    """seq_ae's test reconstruction MSE (mean +- std over seeds) beside PCA's on the same
    normalised series."""
    import torch
    from sklearn.decomposition import PCA

    from runner.data.timeseries import timeseries

    rows = []
    print(
        "\n| dataset | latent | seq_ae test MSE | PCA test MSE | seq_ae val MSE | PCA val MSE "
        "| epochs | wall s per run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in AE_DATASETS:
        data = timeseries(name=name)  # the splits and normalisation the run uses
        train_x, val_x, test_x = (
            torch.nan_to_num(s.images).flatten(1).numpy() for s in (data.train, data.val, data.test)
        )
        pca = PCA(args.latent_dim).fit(train_x)

        def pca_mse(x: np.ndarray, pca: PCA = pca) -> float:
            return float(np.mean((pca.inverse_transform(pca.transform(x)) - x) ** 2))

        runs = [
            train(
                out / "seq_ae" / f"{name}_seed{seed}",
                [
                    "experiment=seq_ae_timeseries",
                    f"dataset.name={name}",
                    f"model.latent_dim={args.latent_dim}",
                    *epochs(args.ae_epochs),
                    f"trainer.seed={seed}",
                ],
            )
            for seed in args.seeds
        ]
        row = {
            "dataset": name,
            "seq_ae": [r["metrics"]["test/recon_mse"] for r in runs],
            "seq_ae_val": [r["metrics"]["val/recon_mse"] for r in runs],
            "pca": pca_mse(test_x),
            "pca_val": pca_mse(val_x),
            "epochs": [r["epochs_trained"] for r in runs],
            "best_epoch": [r["best_epoch"] for r in runs],
            "wall_s": [r["wall_s"] for r in runs],
        }
        rows.append(row)
        print(
            f"| {name} | {args.latent_dim} | {_mean_std(row['seq_ae'], 4)} | {row['pca']:.4f} | "
            f"{_mean_std(row['seq_ae_val'], 4)} | {row['pca_val']:.4f} | "
            f"{runs[0]['epochs_trained']} | {np.mean(row['wall_s']):.0f} |"
        )
    return rows


def epochs(count: int | None) -> list[str]:
    """The override for `count` epochs; none (the preset's) for None."""
    return [] if count is None else [f"trainer.max_epochs={count}"]


def _mean_std(values: list[float], digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder holding MNIST/ (for sequential MNIST)")
    parser.add_argument(
        "--out",
        type=Path,
        help="run folders (default: a temporary folder); runs finished there are reused, so an "
        "interrupted benchmark continues and separate invocations combine into one table",
    )
    parser.add_argument("--quick", action="store_true", help="few epochs, one seed: a smoke test")
    parser.add_argument("--parts", nargs="+", default=["classify", "mnist", "ae"])
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--encoders", nargs="+", default=ENCODERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="classifier epochs (default: the preset's)")
    parser.add_argument("--folds", type=int, default=5, help="fold models per seed")
    parser.add_argument(
        "--overrides", nargs="+", default=[], help="more overrides for the classifier runs"
    )
    parser.add_argument("--ae-epochs", type=int, help="seq_ae epochs (default: the preset's)")
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
