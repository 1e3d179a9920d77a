"""Every family with its defaults (nothing beyond `model=` and `dataset=`), on small and large data,
against the trivial baseline it must beat.

Datasets: scikit-learn's 8x8 digits (1,293 training images), MNIST and Fashion-MNIST (50,000), a
small image folder this script writes (600 training images of 3 classes of 32x32 RGB shapes), and
for the sequence models aeon's shipped GunPoint. Each cell is a fresh `python -m runner.train`
process; the table gives the metric, the baseline it is compared with, their ratio (below 1 beats
a baseline to minimise, above 1 one to maximise), the classes a generator's samples cover, the
run's warnings, its training time, its evaluation time (test pass, baselines and extras, and a
reference classifier trained for it) and the whole process's wall time.

    python benchmarks/defaults.py --root /path/to/data                      # every cell
    python benchmarks/defaults.py --root /path/to/data --datasets digits    # digits only
    python benchmarks/defaults.py --datasets digits --models ae vae        # no --root needed
    taskset -c 1 python benchmarks/defaults.py --datasets digits --threads 1   # one core
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from data_root import require_root

IMAGE_MODELS = [
    "ae",
    "deep_ae",
    "sparse_ae",
    "denoising_ae",
    "vae",
    "beta_vae",
    "gan",
    "cnn",
    "mlp",
]
SEQUENCE_MODELS = ["seq_classifier", "seq_ae"]
DATASETS = ["digits", "mnist", "fashion_mnist", "image_folder", "timeseries"]
# (metric, baseline) shown per family: the first target a family declares, else these.
SHOWN = {"vae": ("fd", "fd_floor"), "beta_vae": ("fd", "fd_floor"), "gan": ("fd", "fd_floor")}
QUIET = ["trainer.progress_bar=false"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder holding MNIST/raw and FashionMNIST/raw")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=IMAGE_MODELS + SEQUENCE_MODELS)
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, help="trainer.threads for every run (default: all)")
    return parser.parse_args()


def write_shapes(folder: Path, per_class: int = 250, size: int = 32) -> Path:
    """A small image folder: <folder>/<class>/*.png, 3 classes of coloured shapes on noise."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for name in ("disc", "square", "bar"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cy, cx = (torch.randint(8, size - 8, (2,), generator=g)).tolist()
            r = int(torch.randint(4, 8, (1,), generator=g))
            if name == "disc":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif name == "square":
                mask = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
            else:
                mask = ((yy - cy).abs() <= 2) & ((xx - cx).abs() <= r + 3)
            colour = torch.rand(3, 1, 1, generator=g)
            image = 0.3 * torch.rand(3, size, size, generator=g)
            image = torch.where(mask, colour.expand(3, size, size), image)
            pixels = (image * 255).byte().permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def dataset_overrides(name: str, root: str | None, shapes: Path) -> list[str]:
    if name in ("mnist", "fashion_mnist"):
        return [f"dataset={name}", f"dataset.root={root}"]
    if name == "image_folder":
        return ["dataset=image_folder", f"dataset.path={shapes}", "dataset.shape=[3,32,32]"]
    return [f"dataset={name}"]


def run_cell(model: str, overrides: list[str], folder: Path, threads: int | None) -> dict:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "runner.train", f"model={model}", *overrides, *QUIET]
    cmd += [f"trainer.threads={threads}"] if threads else []
    proc = subprocess.run(
        [*cmd, f"hydra.run.dir={folder}"], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:], "wall": wall}
    summary = json.loads((folder / "metrics.json").read_text())
    return {**summary, "wall": wall}


def shown_pair(model: str, metrics: dict) -> tuple[str, str]:
    if model in SHOWN:
        return SHOWN[model]
    names = [k.split("/", 1)[1] for k in metrics]
    if "pca_mse" in names:
        return "recon_mse", "noisy_mse" if "noisy_mse" in names else "pca_mse"
    return "acc", "majority_acc"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def main() -> None:
    args = parse()
    if any(d in ("mnist", "fashion_mnist") for d in args.datasets):
        if not args.root:
            sys.exit("--root is needed for mnist and fashion_mnist.")
        require_root(
            args.root,
            *(
                {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[d]
                for d in args.datasets
                if d in ("mnist", "fashion_mnist")
            ),
        )
    tmp = tempfile.TemporaryDirectory()
    out = Path(args.out or tmp.name)
    shapes = write_shapes(out / "shapes") if "image_folder" in args.datasets else out
    header = (
        "| dataset | model | metric | value | baseline | value | ratio | classes | train s | "
        f"eval s | wall s | warnings |\n|{'---|' * 12}"
    )
    print(header, flush=True)
    for dataset in args.datasets:
        models = SEQUENCE_MODELS if dataset == "timeseries" else IMAGE_MODELS + ["seq_classifier"]
        for model in [m for m in models if m in args.models]:
            folder = out / f"{dataset}-{model}"
            overrides = dataset_overrides(dataset, args.root, shapes)
            result = run_cell(model, overrides, folder, args.threads)
            if "error" in result:
                print(f"| {dataset} | {model} | failed: {' '.join(result['error'])} |", flush=True)
                continue
            metrics = result["metrics"]
            metric, baseline = shown_pair(model, metrics)
            value, base = metrics.get(f"test/{metric}"), metrics.get(f"test/{baseline}")
            ratio = f"{value / base:.3g}" if value is not None and base else "-"
            train = result.get("train_time_s", 0.0)
            evaluation = result.get("evaluation_time_s", 0.0)
            print(
                f"| {dataset} | {model} | {metric} | {number(value)} | {baseline} | "
                f"{number(base)} | "
                f"{ratio} | {number(metrics.get('test/class_coverage'))} | {train:.0f} | "
                f"{evaluation:.0f} | {result['wall']:.0f} | "
                f"{'; '.join(result.get('warnings', [])) or '-'} |",
                flush=True,
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
