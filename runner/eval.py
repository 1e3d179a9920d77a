"""`python -m runner.eval ckpt_path=RUN [checkpoint=best|last] [split=test|val|train] ...`

Test a finished run again, on its own data or any dataset of the same shape: the run's saved
config is the starting point, the overrides on the command line replace what they name (a group
such as `dataset=fashion_mnist` as a whole, a key such as `dataset.root=...` alone), and the
metrics, pictures and TensorBoard events of the chosen split go into a new run folder. The training
run is never modified. Returns `<split>/<name of optimized_metric>`, so `-m` compares runs or
datasets. (`--help` lists the options, runner/entry_config.py's EvalOptions holds them.)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runner.build import build_data, build_eval_loader
from runner.config import CONF_DIR, TrainerConfig, settings_of
from runner.console import reported
from runner.data.loader import BatchPreprocessor
from runner.entry import prepare, start
from runner.entry_config import EvalOptions
from runner.errors import RunnerError
from runner.models.capabilities import Classifier
from runner.runs import Run
from runner.training.device import resolve_precision, seed_everything, select_device
from runner.training.loop import Trainer
from runner.training.step import OptimizerStep
from runner.training.tensorboard import TensorBoardLogger

log = logging.getLogger("runner.eval")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
@reported
def evaluate(composed: DictConfig) -> float:
    """Hydra's task function: the run's config with the user's overrides, tested on one split."""
    reused, out = prepare(composed, "eval")
    split, cfg = str(reused.options.split), reused.config
    metrics = evaluate_split(reused.run, cfg, split, out)
    name = cfg.optimized_metric.split("/", 1)[-1]
    return metrics.get(f"{split}/{name}", float("nan"))


def usable(run: Run, cfg: DictConfig, options: EvalOptions) -> None:
    """Before Hydra writes anything: the data the overrides name must have the model's image
    shape (and, for a classifier, its number of classes), as far as its config declares them."""
    check_data_fits(run, list(cfg.dataset.shape), cfg.dataset.get("num_classes"))


def check_data_fits(run: Run, shape: list[int], num_classes: int | None) -> None:
    saved_shape = list(run.config.dataset.shape)
    if shape != saved_shape:
        raise RunnerError(
            f"The model of {run.checkpoint} was trained on images of shape {saved_shape}; this "
            f"dataset's are {shape}. Evaluate it on data of its shape (dataset.shape="
            f"{saved_shape} for an image folder)."
        )
    classes = run.config.dataset.num_classes
    classifies = isinstance(run.model, Classifier)
    if num_classes is not None and num_classes != classes and classifies:
        raise RunnerError(
            f"The classifier of {run.checkpoint} has {classes} classes; this dataset has "
            f"{num_classes}."
        )


def evaluate_split(run, cfg: DictConfig, split: str, out: Path) -> dict[str, float]:
    """`<split>/*` metrics, the family's whole-set metrics and pictures; metrics.json and events."""
    t = settings_of(cfg.trainer, TrainerConfig)
    seed_everything(t.seed, t.deterministic)
    device = select_device(t.device)
    precision = resolve_precision(t.precision, device)
    data = build_data(cfg)
    check_data_fits(run, list(data.shape), data.num_classes)  # as found, not only as declared
    model = run.model.to(device)
    model.class_names = data.class_names
    logger = TensorBoardLogger(out) if cfg.logger.tensorboard else None
    trainer = Trainer(
        t,
        step=OptimizerStep(device, precision),
        preprocess=BatchPreprocessor(),
        monitor=cfg.optimized_metric,
        logger=logger,
    )
    started = time.perf_counter()
    try:
        # The split in order, unaugmented, as training's test pass reads its split; and the
        # training split, for the baselines the model must beat (PCA, the majority class).
        loader = build_eval_loader(cfg, getattr(data, split), device)
        tested = trainer.test(model, loader, build_eval_loader(cfg, data.train, device))
        metrics = {f"{split}/{k.split('/', 1)[1]}": v for k, v in tested.items()}
        if logger is not None:
            logger.scalars(metrics, 0)
    finally:
        if logger is not None:
            logger.close()
    summary = {
        "metrics": metrics,
        "run": str(run.checkpoint),
        "epoch": run.state.get("epoch"),
        "split": split,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "device": str(device),
        "precision": precision,
        "warnings": model.diagnose(tested),
    }
    for line in summary["warnings"]:
        log.warning(line)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    print(f"Metrics: {shown}\nRun folder: {out}", flush=True)
    return metrics


def main() -> None:
    """Console entry point (runner-eval)."""
    start(evaluate)


if __name__ == "__main__":
    main()
