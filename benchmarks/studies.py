"""Run the course's studies (`python -m runner.train -m study=<name>`) with their own defaults, time
each, and write what docs/studies.md shows: a compact table per study (the columns that tell its
story, from the sweep's summary.csv) and a small copy of its curves.png (and best_so_far.png).

    python benchmarks/studies.py --root /path/to/data                       # every study
    python benchmarks/studies.py --root /path/to/data --studies gan init    # some
    python benchmarks/studies.py --out studies-bench --reuse                # tables only, again

`transfer` needs its source first: `python -m runner.train experiment=transfer_mnist_pretrain
dataset.root=/path/to/data` (timed by this script when outputs/mnist_cnn is missing).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from data_root import require_root

ROOT = Path(__file__).resolve().parents[1]
STUDIES = [
    "overfitting",
    "init",
    "hyperparameters",
    "search",
    "cross_validation",
    "transfer",
    "autoencoders",
    "gan",
    "sequences",
]
NEEDS = {
    "overfitting": ["FashionMNIST"],
    "hyperparameters": ["FashionMNIST"],
    "transfer": ["MNIST", "FashionMNIST"],
    "init": ["MNIST"],
    "autoencoders": ["MNIST"],
    "gan": ["MNIST"],
    "sequences": ["MNIST"],
}
GAP = "loss gap (val-train)"
# The leading columns where a study's varying keys say more than it needs (an experiment brings
# its model and epochs along).
LEAD = {"transfer": ["experiment", "dataset.train_subset"]}
# The columns of each study's table after the values that differ between its runs.
COLUMNS = {
    "overfitting": ["val/acc", "test/acc", "best_epoch", "epochs", GAP, "wall_time_s"],
    "hyperparameters": ["val/acc", "test/acc", "best_epoch", GAP, "wall_time_s"],
    "init": [
        "test/acc",
        "init/activation_std_first",
        "init/activation_std_last",
        "init/gradient_std_first",
        "init/gradient_std_last",
        "wall_time_s",
    ],
    "transfer": ["val/acc", "test/acc", "wall_time_s"],
    "autoencoders": [
        "test/recon_mse",
        "test/clean_recon_mse",
        "test/pca_mse",
        "test/denoise_mse",
        "test/noisy_mse",
        "test/probe_acc",
        "test/pca_probe_acc",
        "wall_time_s",
    ],
    "gan": ["val/fd", "final val/fd", "test/fd", "test/fd_floor", "test/class_coverage", "epochs"],
    "sequences": ["val/acc", "test/acc", "wall_time_s"],
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder holding MNIST/raw and FashionMNIST/raw")
    parser.add_argument("--studies", nargs="+", default=STUDIES, choices=STUDIES)
    parser.add_argument("--out", default="studies-bench", help="one sweep folder per study here")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "studies"), help="tables, pictures")
    parser.add_argument("--reuse", action="store_true", help="tables from finished sweeps only")
    return parser.parse_args()


def run_study(name: str, root: str | None, sweep: Path) -> float:
    """The study's whole multirun in a fresh process; its wall time in seconds."""
    command = [sys.executable, "-m", "runner.train", "-m", f"study={name}"]
    command += ["trainer.progress_bar=false", f"hydra.sweep.dir={sweep}"]
    if root:
        command.append(f"dataset.root={root}")
    if name == "transfer" and not (ROOT / "outputs" / "mnist_cnn" / "metrics.json").is_file():
        source = [sys.executable, "-m", "runner.train", "experiment=transfer_mnist_pretrain"]
        source += ["trainer.progress_bar=false"] + ([f"dataset.root={root}"] if root else [])
        started = time.perf_counter()
        subprocess.run(source, cwd=ROOT, check=True)
        print(f"transfer source (outputs/mnist_cnn): {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - started


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def cell(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}"


def varying(rows: list[dict[str, str]]) -> list[str]:
    """The leading columns of summary.csv: between `run` and the optimised metric."""
    columns = list(rows[0])
    end = next(i for i, c in enumerate(columns) if "/" in c)
    return columns[1:end]


def markdown_table(rows: list[dict[str, str]], columns: list[str]) -> str:
    columns = [c for c in columns if any(r.get(c) for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def study_table(name: str, sweep: Path) -> str:
    rows = read_csv(sweep / "summary.csv")
    if name == "cross_validation":
        grouped = read_csv(sweep / "summary_over_seeds.csv")
        wanted = ["cv.folds", "runs", "val/acc", "test/acc", "val/acc - test/acc"]
        return markdown_table(
            [
                {
                    **r,
                    **{
                        m: f"{float(r[m + ' mean']):.4f} ± {float(r[m + ' std']):.4f}"
                        for m in wanted[2:]
                    },
                }
                for r in grouped
            ],
            wanted,
        )
    if name == "search":
        return search_table(rows)
    return markdown_table(rows, LEAD.get(name, varying(rows)) + COLUMNS[name])


def search_table(rows: list[dict[str, str]]) -> str:
    """Per sampler: its best val/loss, the trial that found it, and that run's test accuracy."""
    out = []
    for sampler in ("grid", "random", "tpe"):
        runs = sorted(
            (r for r in rows if r.get("search.sampler") == sampler and r["val/loss"]),
            key=lambda r: int(r["run"]),
        )
        if not runs:
            continue
        best = min(runs, key=lambda r: float(r["val/loss"]))
        first = int(runs[0]["run"])
        values = sorted(float(r["val/loss"]) for r in runs)
        out.append(
            {
                "sampler": sampler,
                "trials": str(len(runs)),
                "best val/loss": best["val/loss"],
                "found at trial": str(int(best["run"]) - first + 1),
                "its lr": best["optimizer.lr"],
                "its dropout": best["regularization.dropout"],
                "its weight decay": best.get("regularization.weight_decay", ""),
                "median val/loss": f"{values[len(values) // 2]:.4g}",
                "its test/acc": best.get("test/acc", ""),
            }
        )
    return markdown_table(out, list(out[0]) if out else [])


def small_copy(source: Path, target: Path, width: int = 900) -> None:
    from PIL import Image

    with Image.open(source) as image:
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)))
        image.convert("P", palette=Image.ADAPTIVE, colors=64).save(target, optimize=True)


def main() -> None:
    args = parse()
    out, docs = Path(args.out).resolve(), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    for name in args.studies:
        if args.root and not args.reuse:
            require_root(args.root, *NEEDS.get(name, []))
        sweep = out / name
        if not args.reuse:
            seconds = run_study(name, args.root, sweep)
            (out / f"{name}.wall_s").write_text(f"{seconds:.0f}\n")
        wall = out / f"{name}.wall_s"
        table = study_table(name, sweep)
        minutes = f"{float(wall.read_text()) / 60:.1f} min" if wall.is_file() else "not timed"
        (out / f"{name}.md").write_text(table + "\n")  # pasted into docs/studies.md by hand
        if (sweep / "best_so_far.png").is_file():  # a race of samplers: 81 curves say less
            small_copy(sweep / "best_so_far.png", docs / f"{name}_best_so_far.png", width=700)
        else:
            small_copy(sweep / "curves.png", docs / f"{name}.png")
        print(f"## {name} ({minutes})\n\n{table}\n")


if __name__ == "__main__":
    main()
