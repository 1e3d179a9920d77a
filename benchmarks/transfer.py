"""Transfer learning with few labels, on a matrix of sources and targets it was not tuned for.

Sources, trained once each: a `cnn` on MNIST, a `deep_ae` on MNIST (its encoder: pretraining
without labels) and a `cnn` on Fashion-MNIST. Targets: Fashion-MNIST, MNIST and scikit-learn's
8x8 digits (the backbone sees them resized to 28x28); a source's own dataset is skipped. Each
target is trained with `dataset.train_subset` labels in {100, 1000}, for every seed (the seed
draws the labelled subset too), by four methods with `model=transfer`'s defaults:

- scratch: the source's `cnn` architecture from random weights (once per target, not per source),
- linear probe (`model.mode=linear_probe`), feature extraction, fine-tuning.

Every run has the same epochs, batch size, optimiser and validation split; test accuracy is on
the whole test split (10,000 images; 360 for digits). Prints mean ± std over the seeds per cell,
then the issue's targets: fine-tuning never more than 0.5 point below scratch in a cell, >= 3 points
above it on average over the 100-label cells, feature extraction within 10 points of fine-tuning on
average. Finished runs are recorded in <out>/results.jsonl and not run again with the same --out.

    python benchmarks/transfer.py --root /path/to/data --out transfer-bench    # the matrix
    python benchmarks/transfer.py --root /path/to/data --quick                 # one pair
    python benchmarks/transfer.py --root /path/to/data --out transfer-bench \\
        --method ft_lr1=fine_tuning:model.backbone_lr_scale=1.0 --cuts         # more columns
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_root import require_root

from runner.config import compose_run_config
from runner.train import run

# The small cnn that both the supervised sources and scratch use: minutes, not hours, on a CPU.
CNN = ["model=cnn", "model.channels=[16,32,64]", "model.hidden_dim=64"]
SOURCES = {
    "MNIST cnn": ("mnist", [*CNN, "trainer.max_epochs=3"]),
    "MNIST deep_ae": (
        "mnist",
        ["model=deep_ae", "optimizer.lr=2e-3", "scheduler=cosine", "trainer.max_epochs=5"],
    ),
    "Fashion cnn": ("fashion_mnist", [*CNN, "trainer.max_epochs=3"]),
}
TARGETS = {"Fashion-MNIST": "fashion_mnist", "MNIST": "mnist", "digits": "digits"}
METHODS = {
    "linear probe": ["model.mode=linear_probe", "trainer.max_epochs=1"],
    "feature extraction": ["model.mode=feature_extraction"],
    "fine-tuning": ["model.mode=fine_tuning"],
}
CUTS = ("trunk", "pooled", "hidden")
QUIET = ["trainer.progress_bar=false", "logger=none"]


@dataclass
class Bench:
    out: Path
    root: str
    common: list[str]
    done: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.results = self.out / "results.jsonl"
        if self.results.exists():
            for line in self.results.read_text().splitlines():
                record = json.loads(line)
                self.done[record["name"]] = record

    def data(self, dataset: str) -> list[str]:
        if dataset == "digits":  # bundled: no files, the default validation split
            return ["dataset=digits"]
        # A 1,200-image validation split (2 %) is plenty to pick the best epoch, and cheap.
        return [
            f"dataset={dataset}",
            f"dataset.root={self.root}",
            "dataset.download=false",
            "dataset.val_fraction=0.02",
        ]

    def train(self, name: str, overrides: list[str]) -> dict:
        """One run in-process (its printout goes to <run>/stdout.txt), recorded once."""
        if name in self.done:
            return self.done[name]
        folder = self.out / "runs" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(folder / "stdout.txt", "w") as stdout, contextlib.redirect_stdout(stdout):
            metrics = run(compose_run_config(folder, [*QUIET, *self.common, *overrides]))
        record = {
            "name": name,
            "folder": str(folder),
            "acc": metrics.get("test/acc"),
            "recon_mse": metrics.get("test/recon_mse"),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        with self.results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.done[name] = record
        shown = f"acc {record['acc']:.4f}" if record["acc"] is not None else "recon_mse "
        shown += "" if record["acc"] is not None else f"{record['recon_mse']:.5f}"
        print(f"{name}: test {shown} ({record['wall_s']:.0f} s)", flush=True)
        return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", required=True, help="folder holding MNIST/raw/ and FashionMNIST/raw/"
    )
    parser.add_argument("--out", default=None, help="where runs and results.jsonl go")
    parser.add_argument("--quick", action="store_true", help="MNIST cnn -> Fashion-MNIST only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subsets", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="trainer.threads")
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="NAME=MODE[:OVERRIDE,...]",
        help="an extra column: a mode of model=transfer with overrides, e.g. "
        "ft_lr1=fine_tuning:model.backbone_lr_scale=1.0",
    )
    parser.add_argument(
        "--cuts", action="store_true", help="also a linear probe and feature extraction per cut"
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="run only these columns (scratch included)"
    )
    args = parser.parse_args()
    require_root(args.root, "MNIST", "FashionMNIST")
    if args.quick:
        args.sources, args.targets, args.seeds, args.subsets = (
            ["MNIST cnn"],
            ["Fashion-MNIST"],
            args.seeds[:1],
            [1000] if args.subsets == [100, 1000] else args.subsets,
        )
    out = Path(args.out or tempfile.mkdtemp(prefix="transfer-bench-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = [f"trainer.threads={args.threads}"] if args.threads else []
    bench = Bench(out, str(Path(args.root).resolve()), common)

    methods = dict(METHODS)
    for spec in args.method:
        name, _, rest = spec.partition("=")
        mode, _, extra = rest.partition(":")
        methods[name] = [f"model.mode={mode}", *(extra.split(",") if extra else [])]
        if mode == "linear_probe":
            methods[name].append("trainer.max_epochs=1")
    if args.cuts:
        for cut in CUTS:
            methods[f"probe@{cut}"] = [*METHODS["linear probe"], f"model.cut={cut}"]
            methods[f"features@{cut}"] = [*METHODS["feature extraction"], f"model.cut={cut}"]
    if args.only:
        methods = {k: v for k, v in methods.items() if k in args.only}
    columns = ["scratch", *methods]

    started = time.perf_counter()
    sources = {}
    for name in args.sources:
        dataset, overrides = SOURCES[name]
        record = bench.train(
            f"source {name}",
            [
                *bench.data(dataset),
                *overrides,
                "trainer.batch_size=128",
                "trainer.seed=0",
                *(
                    ["optimized_metric=val/acc", "optimized_mode=max"]
                    if "model=cnn" in overrides
                    else []
                ),
            ],
        )
        sources[name] = (dataset, record)

    # cells[(source, target, subset)][column] = accuracies over the seeds
    cells: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    walls: dict[str, list[float]] = {c: [] for c in columns}
    for target in args.targets:
        dataset = TARGETS[target]
        pairs = [s for s in args.sources if sources[s][0] != dataset]
        for subset in args.subsets:
            for seed in args.seeds:
                base = [
                    *bench.data(dataset),
                    f"dataset.train_subset={subset}",
                    f"dataset.split_seed={seed}",
                    f"trainer.seed={seed}",
                    f"trainer.max_epochs={args.epochs}",
                    f"trainer.batch_size={args.batch_size}",
                    "optimized_metric=val/acc",
                    "optimized_mode=max",
                ]
                scratch = bench.train(f"scratch {target} {subset} s{seed}", [*base, *CNN])
                walls["scratch"].append(scratch["wall_s"])
                for source in pairs:
                    cell = cells.setdefault((source, target, subset), {c: [] for c in columns})
                    cell["scratch"].append(scratch["acc"])
                    backbone = [
                        "model=transfer",
                        f"model.pretrained={sources[source][1]['folder']}",
                    ]
                    for column, overrides in methods.items():
                        record = bench.train(
                            f"{column} {source}>{target} {subset} s{seed}",
                            [*base, *backbone, *overrides],
                        )
                        cell[column].append(record["acc"])
                        walls[column].append(record["wall_s"])
    report(cells, columns, walls, sources, time.perf_counter() - started, args, out)


def report(cells, columns, walls, sources, seconds, args, out) -> None:
    def cell_text(values: list[float]) -> str:
        if not values:
            return "-"
        mean = 100 * statistics.fmean(values)
        std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.1f} ± {std:.1f}"

    print("\nSources (test accuracy; deep_ae: reconstruction MSE, trained without labels):")
    for name, (dataset, record) in sources.items():
        score = record["acc"] if record["acc"] is not None else record["recon_mse"]
        print(f"  {name} on {dataset}: {score:.4f} ({record['wall_s']:.0f} s)")
    print(
        f"\nTest accuracy (%), mean ± std over seeds {args.seeds}; {args.epochs} epochs, "
        f"batch {args.batch_size}:\n"
    )
    print("| source → target | labels | " + " | ".join(columns) + " | FT − scratch |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    gaps: dict[tuple[str, str, int], float] = {}
    for (source, target, subset), cell in cells.items():
        row = [cell_text(cell[c]) for c in columns]
        gap = ""
        if cell.get("fine-tuning") and cell["scratch"]:
            diff = 100 * (statistics.fmean(cell["fine-tuning"]) - statistics.fmean(cell["scratch"]))
            gaps[(source, target, subset)] = diff
            gap = f"{diff:+.1f}"
        print(f"| {source} → {target} | {subset} | " + " | ".join(row) + f" | {gap} |")
    print(
        "\nMean wall time per run (s): "
        + ", ".join(f"{c} {statistics.fmean(w):.0f}" for c, w in walls.items() if w)
        + f"; all runs {seconds / 60:.1f} min (this invocation)."
    )
    if not gaps:
        return
    verdicts = []
    worst = min(gaps.values())
    verdicts.append((f"fine-tuning − scratch, worst cell: {worst:+.1f}", ">= −0.5", worst >= -0.5))
    few = [g for (_, _, subset), g in gaps.items() if subset == 100]
    if few:
        mean = statistics.fmean(few)
        verdicts.append(
            (f"fine-tuning − scratch, mean of 100-label cells: {mean:+.1f}", ">= 3", mean >= 3)
        )
    fe = [
        100 * (statistics.fmean(c["fine-tuning"]) - statistics.fmean(c["feature extraction"]))
        for c in cells.values()
        if c.get("fine-tuning") and c.get("feature extraction")
    ]
    if fe:
        mean = statistics.fmean(fe)
        verdicts.append(
            (f"fine-tuning − feature extraction, mean: {mean:+.1f}", "<= 10", mean <= 10)
        )
    print()
    for text, target, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text} (target {target})")
    print(f"runs in {out}")
    if not all(ok for _, _, ok in verdicts):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
