"""Score a finished generative run's samples in a domain classifier's feature space.

    python -m runner.evaluate_samples --run-dir outputs/.../gan --classifier outputs/.../cnn

Rebuilds the run's model and dataset from its checkpoint (best.pt, or --checkpoint last), draws
--samples images with `model.sample(n)` and prints `test/fd`, `test/fd_floor`,
`test/class_coverage` and `test/confidence`; they are also written to <run-dir>/sample_quality.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from runner.build import build_data, build_loaders
from runner.data.loader import BatchPreprocessor
from runner.errors import RunnerError
from runner.metrics.sample_quality import generative_test_metrics
from runner.runs import load_run
from runner.training.device import select_device


def evaluate_samples(
    run_dir: str | Path,
    classifier: str | Path,
    samples: int = 10_000,
    checkpoint: str = "best",
    data_root: str | None = None,
    device: str = "auto",
) -> dict[str, float]:
    """Sample-quality metrics of the generative model saved in `run_dir`."""
    run = load_run(run_dir, checkpoint)
    cfg = run.config
    if data_root is not None:
        cfg.dataset.root = data_root
    cfg.trainer.loader = "auto"
    dev = select_device(device)
    model = run.model.to(dev)
    if not hasattr(model, "sample"):
        raise RunnerError(
            f"{run_dir} holds a {cfg.model._target_}, which cannot sample: pass a vae or gan run."
        )
    data = build_data(cfg)
    _, _, test_loader = build_loaders(cfg, data, dev, cfg.trainer.seed)
    preprocess = BatchPreprocessor()
    return generative_test_metrics(model.sample, test_loader, preprocess, classifier, samples, dev)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="folder of a finished vae or gan run")
    parser.add_argument("--classifier", required=True, help="folder of a cnn run on the same data")
    parser.add_argument("--samples", type=int, default=10_000, help="samples to draw")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--data-root", default=None, help="dataset root, if it has moved")
    parser.add_argument("--device", default="auto")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    try:
        scores = evaluate_samples(
            args.run_dir,
            args.classifier,
            args.samples,
            args.checkpoint,
            args.data_root,
            args.device,
        )
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    (Path(args.run_dir) / "sample_quality.json").write_text(json.dumps(scores, indent=2) + "\n")
    print("  ".join(f"{k}={v:.4g}" for k, v in scores.items()))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
