"""Quality of the generative models on real MNIST, against the targets of the issue.

Trains `cnn`, `deep_ae`, `vae` and `gan` with their presets in conf/experiment/ (cnn_mnist,
deep_ae_mnist, vae_mnist, gan_mnist). The CNN comes first: its run folder is the feature space in
which the VAE's and the GAN's samples are scored (Fréchet distance, class coverage, confidence).
Prints one table: model, epochs, wall time, metrics, target, pass/fail.

    python benchmarks/quality.py --root /path/to/data
    python benchmarks/quality.py --root /path/to/data --out runs --models gan --reuse  # one more
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from data_root import require_root

from runner.config import compose_run_config
from runner.train import run

# In this order: the CNN first (the others' feature space), the VAE before the GAN (the ratio).
PRESETS = {
    "cnn": "cnn_mnist",
    "vae": "vae_mnist",
    "gan": "gan_mnist",
    "deep_ae": "deep_ae_mnist",
}


def train(name: str, out: Path, overrides: list[str]) -> dict:
    """Run one preset in-process; returns its metrics.json plus the wall time around it."""
    started = time.perf_counter()
    run(compose_run_config(out / name, [f"experiment={PRESETS[name]}", *overrides]))
    summary = json.loads((out / name / "metrics.json").read_text())
    summary["wall_s"] = time.perf_counter() - started
    return summary


def check(name: str, m: dict[str, float], results: dict) -> list[tuple[str, str, bool]]:
    """(measured, target, passed) rows for one model."""
    if name == "cnn":
        return [(f"test/acc={m['test/acc']:.4f}", ">= 0.993", m["test/acc"] >= 0.993)]
    if name == "deep_ae":
        mse = m["test/recon_mse"]
        return [(f"test/recon_mse={mse:.5f}", "<= 0.010", mse <= 0.010)]
    rows = []
    if name == "vae":
        rows += [
            (f"test/nll={m['test/nll']:.2f}", "<= 89 nats", m["test/nll"] <= 89),
            (f"test/neg_elbo={m['test/neg_elbo']:.2f}", "<= 95 nats", m["test/neg_elbo"] <= 95),
        ]
    if "test/fd" in m:
        rows.append((f"test/fd={m['test/fd']:.3f} (floor {m['test/fd_floor']:.3f})", "", True))
        rows.append((f"test/confidence={m['test/confidence']:.3f}", "", True))
    if name == "gan" and "test/fd" in m:
        coverage = m["test/class_coverage"]
        rows.append((f"test/class_coverage={coverage:.0f}", "= 10 of 10", coverage == 10))
        vae_fd = results.get("vae", {}).get("metrics", {}).get("test/fd")
        if vae_fd is not None:
            rows.append(
                (f"fd / vae fd={m['test/fd'] / vae_fd:.3f}", "<= 1/3", m["test/fd"] <= vae_fd / 3)
            )
    return rows


def print_table(results: dict) -> None:
    header = f"{'model':8} {'epochs':>6} {'wall (s)':>9}  {'metric':44} {'target':12} result"
    print("\n" + header + "\n" + "-" * len(header))
    for name, summary in results.items():
        for i, (measured, target, passed) in enumerate(check(name, summary["metrics"], results)):
            first = i == 0
            print(
                f"{name if first else '':8} {summary['epochs_trained'] if first else '':>6} "
                f"{format(summary['wall_s'], '9.0f') if first else '':>9}  {measured:44} "
                f"{target:12} {('pass' if passed else 'FAIL') if target else ''}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/*.gz")
    parser.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--classifier", default=None, help="reuse a finished cnn run folder")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take the finished runs already in --out (<out>/<model>/metrics.json) into the table",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nll-samples", type=int, default=1000, help="K for the VAE's test NLL")
    parser.add_argument("--nll-images", type=int, default=None, help="test images for the NLL")
    parser.add_argument("--fd-samples", type=int, default=10_000)
    parser.add_argument(
        "--epochs", nargs="+", default=[], metavar="MODEL=N", help="fewer epochs than the preset"
    )
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (key=value)")
    args = parser.parse_args()
    require_root(args.root, "MNIST")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out or tempfile.mkdtemp(prefix="quality-"))
    common = [
        f"dataset.root={Path(args.root).resolve()}",
        "dataset.download=false",
        f"trainer.device={args.device}",
        "trainer.progress_bar=false",
        *args.overrides,
    ]
    epochs = dict(item.split("=") for item in args.epochs)
    results: dict[str, dict] = {}
    classifier = args.classifier
    for name in PRESETS:
        finished = out / name / "metrics.json"
        if args.reuse and name not in args.models and finished.exists():
            results[name] = json.loads(finished.read_text())
            results[name]["wall_s"] = results[name]["wall_time_s"]
    for name in [m for m in PRESETS if m in args.models]:
        print(f"=== {name} ===", flush=True)
        overrides = list(common)
        if name in ("vae", "gan") and (classifier or "cnn" in results):
            classifier = classifier or str(out / "cnn")
            overrides += [
                f"model.fd_classifier={classifier}",
                f"model.fd_samples={args.fd_samples}",
            ]
        if name == "vae":
            overrides.append(f"model.nll_samples={args.nll_samples}")
            if args.nll_images:
                overrides.append(f"model.nll_images={args.nll_images}")
        if name in epochs:
            overrides.append(f"trainer.max_epochs={epochs[name]}")
        results[name] = train(name, out, overrides)
        print_table(results)
    print(f"\nRun folders: {out}")
    (out / "quality.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
