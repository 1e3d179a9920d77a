"""Score a finished generative run's samples in a domain classifier's feature space.

    python -m runner.evaluate_samples ckpt_path=outputs/.../gan classifier=outputs/.../cnn

Rebuilds the run's model and dataset from its checkpoint (best.pt, or checkpoint=last), draws
`samples` images with `model.sample(n)` and prints `test/fd`, `test/fd_floor`,
`test/class_coverage` and `test/confidence`; they are written to sample_quality.json in the new
folder and in the run's. As for `runner.eval`, other keys override the run's config: the data's
new place (`dataset=mnist dataset.root=...`), the device (`trainer.device=cpu`). `--help` lists
the options; runner/entry_config.py's EvaluateSamplesOptions holds them.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from runner.build import build_data, build_loaders
from runner.config import CONF_DIR
from runner.console import reported
from runner.data.loader import BatchPreprocessor
from runner.entry import prepare, start
from runner.entry_config import EvaluateSamplesOptions
from runner.errors import RunnerError
from runner.models.capabilities import Sampler
from runner.runs import Run, checkpoint_file, load_run
from runner.training.device import select_device
from runner.training.scoring import SampleScorer


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate_samples")
@reported
def evaluate(composed: DictConfig) -> float:
    """Hydra's task function; returns `test/fd`."""
    reused, out = prepare(composed, "evaluate_samples")
    options = reused.options
    with torch.no_grad():
        scores = sample_scores(reused.run, reused.config, options.classifier, options.samples)
    text = json.dumps(scores, indent=2) + "\n"
    (out / "sample_quality.json").write_text(text)
    if Path(composed.ckpt_path).is_dir():
        (Path(composed.ckpt_path) / "sample_quality.json").write_text(text)
    print("  ".join(f"{k}={v:.4g}" for k, v in scores.items()), flush=True)
    return scores["test/fd"]


def usable(run: Run, cfg: DictConfig, options: EvaluateSamplesOptions) -> None:
    """The folder of a classifier run, and a family that samples."""
    if options.classifier is None:
        raise RunnerError(
            "runner.evaluate_samples needs classifier=<the folder of a cnn run on the same data>."
        )
    checkpoint_file(options.classifier)
    if not isinstance(run.model, Sampler):
        raise RunnerError(
            f"{run.checkpoint} holds a {cfg.model._target_}, which cannot sample: pass a vae or "
            "gan run."
        )


def sample_scores(run: Run, cfg: DictConfig, classifier: str | Path, samples: int) -> dict:
    """Sample-quality metrics of `run`'s model against the test data of `cfg`."""
    device = select_device(cfg.trainer.device)
    model = run.model.to(device)
    cfg.trainer.loader = "auto"
    data = build_data(cfg)
    _, _, test_loader = build_loaders(cfg, data, device, cfg.trainer.seed)
    scorer = SampleScorer(device)
    return scorer.scores(str(classifier), model.sample, samples, test_loader, BatchPreprocessor())


def evaluate_samples(
    run_dir: str | Path,
    classifier: str | Path,
    samples: int = 10_000,
    checkpoint: str = "best",
    data_root: str | None = None,
    device: str = "auto",
) -> dict[str, float]:
    """Sample-quality metrics of the generative model saved in `run_dir`, in-process."""
    run = load_run(run_dir, checkpoint)
    cfg = run.config
    if data_root is not None:
        cfg.dataset.root = data_root
    cfg.trainer.device = device
    usable(run, cfg, EvaluateSamplesOptions(classifier=str(classifier), samples=samples))
    return sample_scores(run, cfg, classifier, samples)


def main() -> None:
    """Console entry point (runner-evaluate-samples)."""
    start(evaluate)


if __name__ == "__main__":
    main()
