"""Transfer learning with few labels: MNIST-pretrained CNN -> Fashion-MNIST with 1,000 labels.

Pretrains `cnn` on MNIST (experiment=transfer_mnist_pretrain), then trains on Fashion-MNIST
(`dataset.train_subset=1000`) three ways with the same epochs, seed and optimiser: from scratch
(experiment=cnn_fashion_scratch), feature extraction (transfer_fashion_features: frozen backbone,
new head) and fine-tuning (transfer_fashion_finetune: all layers, backbone at a tenth of the lr).
Prints test accuracy and wall time of each, and whether fine-tuning beats training from scratch.

    python benchmarks/transfer.py --root /path/to/data
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from data_root import require_root

from runner.config import compose_run_config
from runner.train import run

QUIET = ["trainer.progress_bar=false"]


def train(out: Path, overrides: list[str]) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    metrics = run(compose_run_config(out, [*QUIET, *overrides]))
    return metrics, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", required=True, help="folder holding MNIST/raw/ and FashionMNIST/raw/"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--subset", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pretrained",
        default=None,
        help="reuse this MNIST cnn run folder instead of pretraining (e.g. <out>/mnist_cnn)",
    )
    parser.add_argument(
        "--out", default=None, help="where the runs go (default: a temporary folder)"
    )
    args = parser.parse_args()
    require_root(args.root, "MNIST", "FashionMNIST")
    out = Path(args.out or tempfile.mkdtemp(prefix="transfer-bench-"))
    root = str(Path(args.root).resolve())
    seed = f"trainer.seed={args.seed}"

    source = Path(args.pretrained).resolve() if args.pretrained else out / "mnist_cnn"
    if args.pretrained:
        summary = json.loads((source / "metrics.json").read_text())
        pretrained, pre_time = summary["metrics"], summary["wall_time_s"]
    else:
        pretrained, pre_time = train(
            out / "mnist_cnn",
            [
                "experiment=transfer_mnist_pretrain",
                f"dataset.root={root}",
                "dataset.download=false",
                f"trainer.max_epochs={args.pretrain_epochs}",
                seed,
            ],
        )
    # The same data, subset, epochs, batch size, optimiser and seed for all three.
    target = [
        f"dataset.root={root}",
        "dataset.download=false",
        f"dataset.train_subset={args.subset}",
        f"trainer.max_epochs={args.epochs}",
        seed,
    ]
    backbone = f"model.pretrained={source}"
    rows = {
        "from scratch (cnn)": ("scratch", ["experiment=cnn_fashion_scratch", *target]),
        "feature extraction": (
            "feature_extraction",
            ["experiment=transfer_fashion_features", backbone, *target],
        ),
        "fine-tuning": (
            "fine_tuning",
            ["experiment=transfer_fashion_finetune", backbone, *target],
        ),
    }
    results = {name: train(out / folder, overrides) for name, (folder, overrides) in rows.items()}

    print(
        f"\nPretrained cnn on MNIST: test acc {pretrained['test/acc']:.4f} "
        f"({pre_time:.0f} s{', reused from ' + str(source) if args.pretrained else ''})"
    )
    print(
        f"Fashion-MNIST, {args.subset} training labels, {args.epochs} epochs, seed {args.seed}:\n"
    )
    print("| method | test accuracy | wall time (s) |\n|---|---|---|")
    for name, (metrics, seconds) in results.items():
        print(f"| {name} | {metrics['test/acc']:.4f} | {seconds:.0f} |")
    scratch = results["from scratch (cnn)"][0]["test/acc"]
    fine = results["fine-tuning"][0]["test/acc"]
    verdict = "beats" if fine > scratch else "does NOT beat"
    print(
        f"\nfine-tuning {verdict} from scratch: {fine:.4f} vs {scratch:.4f} ({fine - scratch:+.4f})"
    )
    print(f"runs in {out}")
    if fine <= scratch:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
