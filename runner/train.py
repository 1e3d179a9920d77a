"""`python -m runner.train model=vae dataset=mnist optimizer=adam ...`

Compose the config, build data and model, fit, test the best checkpoint, and return the value of
`optimized_metric` so that sweepers can optimise it.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner import distributed
from runner.build import (
    build_augmentation,
    build_data,
    build_loaders,
    build_model,
    build_optimizers,
    build_schedules,
)
from runner.config import CONF_DIR, LoggerConfig, TrainerConfig, register_configs, settings_of
from runner.console import handle_user_errors, reported
from runner.data.loader import BatchPreprocessor
from runner.metrics.reference import resolve_auto
from runner.models.base import RunnerModel
from runner.search.cv import run_folds
from runner.search.resources import share_resources
from runner.search.trial import log_stopped_trial, pruning_callbacks
from runner.training.checkpoint import load_checkpoint
from runner.training.device import resolve_precision, seed_everything, select_device
from runner.training.early_stopping import EarlyStopping
from runner.training.layer_stats import LayerStats
from runner.training.loop import Trainer
from runner.training.step import OptimizerStep
from runner.training.tensorboard import TensorBoardLogger, hparams_of
from runner.validation import validate

log = logging.getLogger("runner.train")
register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
@reported
def train(cfg: DictConfig) -> float:
    """Hydra's task function: one run, returning the optimised metric."""
    try:
        metrics = run_folds(cfg, run) if cfg.cv.folds else run(cfg)
    except BaseException as exc:
        log_stopped_trial(cfg, exc)  # a pruned or failed sweep trial still gets its HParams row
        distributed.cleanup()  # leave the process group (if any) on every exit path
        raise
    distributed.cleanup(finished=True)
    return metrics[cfg.optimized_metric]


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, validate every epoch, test the best checkpoint; return the final metrics."""
    validate(cfg)  # before joining a process group: every rank fails alike, none waits
    started = time.perf_counter()
    resolve_auto(cfg, dataset_choice())  # model.fd_classifier=auto: trained once, then reused
    reference_s = time.perf_counter() - started
    out = Path(cfg.paths.output_dir)
    runtime = set_up_runtime(cfg, out)
    loaders, model = build(cfg, runtime)
    optimizers = build_optimizers(cfg, model)  # fills the optimizer's auto keys into cfg
    schedules = build_schedules(cfg, optimizers, len(loaders[0]))
    resume = checkpoint_to_resume(cfg, out)
    logger = open_logger(cfg, out, runtime, resume)
    trainer = make_trainer(cfg, out, runtime, logger)
    started = time.perf_counter()
    gc.enable()  # start-up is over (see main); training's own garbage is collected as usual
    try:
        fit = trainer.fit(model, loaders[0], loaders[1], optimizers, schedules, resume)
        test_metrics, test_s = evaluate_best(
            cfg, out, runtime, trainer, model, loaders[0], loaders[2]
        )
        seconds = {"wall": time.perf_counter() - started, "evaluation": test_s + reference_s}
        summary = summarise(cfg, runtime, trainer, model, fit, test_metrics, seconds)
        metrics = summary["metrics"]
        if runtime.main:
            (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        if logger is not None:
            log_final(cfg, logger, fit, metrics, test_metrics)
    finally:
        if logger is not None:
            logger.close()
        model.parallel = {}  # the DDP wrappers hold the process group: let them go before it
    if runtime.main:
        report(out, metrics, summary["warnings"])
    return metrics


@dataclass
class Runtime:
    """Where and how this process trains: its settings, device, precision and process group."""

    settings: TrainerConfig
    ddp: distributed.DistContext | None
    device: torch.device
    precision: str

    @property
    def main(self) -> bool:
        """Only rank 0 writes logs, checkpoints and metrics."""
        return self.ddp is None or self.ddp.is_main


def set_up_runtime(cfg: DictConfig, out: Path) -> Runtime:
    """Join the process group (if any), seed, and pick the device and precision."""
    t = settings_of(cfg.trainer, TrainerConfig)  # the trainer group, typed, in one piece
    ddp = distributed.init_distributed(t.strategy, t.device, t.ddp_timeout_min)
    share_resources(cfg)
    if ddp is None or ddp.is_main:
        print_config_tree(cfg)
    if ddp:
        distributed.check_same_run_folder(out)
    elif t.sync_batchnorm:
        log.info("trainer.sync_batchnorm=true has nothing to synchronise in one process.")
    seed_everything(t.seed, t.deterministic)  # identical initial weights on every rank
    device = select_device(t.device)
    precision = resolve_precision(t.precision, device)
    log.info("Device %s, precision %s.", device, precision)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for the fp32 parts
    return Runtime(t, ddp, device, precision)


def build(cfg: DictConfig, runtime: Runtime) -> tuple[tuple, RunnerModel]:
    """The data (sizing the auto batch size and epochs), its loaders and the model: on the
    device, compiled and wrapped for DDP as the trainer group says, then each rank seeded on."""
    ddp = runtime.ddp
    data = build_data(cfg, ddp.world_size if ddp else 1)
    t = runtime.settings = settings_of(cfg.trainer, TrainerConfig)  # with the sizes just resolved
    loaders = build_loaders(cfg, data, runtime.device, t.seed, ddp)
    model = build_model(cfg).to(runtime.device)
    model.class_names = data.class_names
    if ddp and t.sync_batchnorm:
        model = distributed.convert_sync_batchnorm(model, runtime.device)
    if t.compile:
        for child in model.children():
            child.compile()
    if ddp:
        model.distribute(distributed.wrapper(ddp, runtime.device))
        # Own random streams per rank: dropout, noise, augmentation and fakes differ by rank.
        seed_everything(t.seed + ddp.rank, t.deterministic)
    return loaders, model


def open_logger(
    cfg: DictConfig, out: Path, runtime: Runtime, resume: dict | None
) -> TensorBoardLogger | None:
    """TensorBoard's writer on rank 0, continuing a resumed run's events after its epoch."""
    if not (cfg.logger.tensorboard and runtime.main):
        return None
    purge_step = resume["epoch"] if resume else None
    return TensorBoardLogger(out, settings_of(cfg.logger, LoggerConfig), purge_step=purge_step)


def make_trainer(
    cfg: DictConfig, out: Path, runtime: Runtime, logger: TensorBoardLogger | None
) -> Trainer:
    es = cfg.regularization.early_stopping
    return Trainer(
        runtime.settings,
        step=OptimizerStep(runtime.device, runtime.precision, cfg.regularization.grad_clip),
        preprocess=BatchPreprocessor(build_augmentation(cfg)),
        monitor=cfg.optimized_metric,
        mode=cfg.optimized_mode,
        early_stopping=EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta)
        if es.patience is not None
        else None,
        checkpoint_dir=out / "checkpoints" if runtime.main else None,
        logger=logger,
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        callbacks=pruning_callbacks(cfg),
        layer_stats=LayerStats(logger) if cfg.logger.layer_stats and runtime.main else None,
    )


def evaluate_best(
    cfg, out, runtime, trainer, model, train_loader, test_loader
) -> tuple[dict, float]:
    """The best checkpoint's test metrics (and the baselines, on rank 0), and their seconds."""
    distributed.barrier()  # rank 0 has written best.pt before any rank loads it
    best = out / "checkpoints" / "best.pt"
    if best.exists():
        model.load_state_dict(load_checkpoint(best)["model"])
    tested = time.perf_counter()
    t = runtime.settings
    train_in_order = (
        train_loader.in_order(t.eval_batch_size or t.batch_size) if runtime.main else None
    )
    metrics = trainer.test(model, test_loader, train_in_order)
    return metrics, time.perf_counter() - tested


def summarise(cfg, runtime, trainer, model, fit, test_metrics: dict, seconds: dict) -> dict:
    """What metrics.json holds: the final metrics (the best epoch's val, the test pass's), how the
    run went, and what it failed to learn. Every rank takes part (the weights' digests)."""
    digests = distributed.state_digests(model) if runtime.ddp else []
    if len(set(digests)) > 1:
        log.warning("The ranks' weights differ after training: %s.", ", ".join(digests))
    metrics = {
        **fit.best_metrics,
        f"{cfg.optimized_metric}_best": trainer.best.best,
        **test_metrics,
    }
    if cfg.logger.layer_stats:  # rank 0 recorded the first step; every rank reports it
        metrics.update(distributed.run_on_main(lambda: trainer.layer_stats.first_step))
    return {
        "metrics": metrics,
        "optimized_metric": cfg.optimized_metric,
        "best_epoch": fit.best_epoch + 1,
        "epochs_trained": fit.epochs_trained,
        "stopped_early": fit.stopped_early,
        "wall_time_s": round(seconds["wall"], 3),
        "train_time_s": round(fit.train_time_s, 3),
        # the test pass with its extras and baselines, and a reference classifier trained
        "evaluation_time_s": round(seconds["evaluation"], 3),
        "train_steps": trainer.global_step,
        "processes": runtime.ddp.world_size if runtime.ddp else 1,
        **({"state_sha256_by_rank": digests} if runtime.ddp else {}),
        "device": str(runtime.device),
        "precision": runtime.precision,
        "warnings": model.diagnose(metrics),
    }


def log_final(cfg, logger: TensorBoardLogger, fit, metrics: dict, test_metrics: dict) -> None:
    """The test metrics as scalars, the charts' layout, and the run's HParams row."""
    logger.scalars(test_metrics, fit.epochs_trained)
    logger.layout([*fit.history[-1], *test_metrics] if fit.history else test_metrics)
    if cfg.logger.log_hparams:
        # One column per final metric (with layer_stats, the first step's init/*); per-class
        # values stay in scalars and metrics.json.
        final = {
            k: v
            for k, v in metrics.items()
            if (k.startswith(("test/", "init/")) or k.endswith("_best")) and k.count("/") == 1
        }
        logger.hparams(hparams_of(cfg), final, fit.epochs_trained)


def dataset_choice() -> str | None:
    """The `dataset=` option this run was composed with."""
    return HydraConfig.get().runtime.choices.get("dataset") if HydraConfig.initialized() else None


def checkpoint_to_resume(cfg: DictConfig, out: Path) -> dict | None:
    """`ckpt_path` (a file or a run folder), or this run folder's last.pt with trainer.resume."""
    if cfg.ckpt_path:
        return load_checkpoint(cfg.ckpt_path)
    last = out / "checkpoints" / "last.pt"
    if cfg.trainer.resume:
        if last.exists():
            return load_checkpoint(last)
        log.info("trainer.resume=true but %s does not exist yet: starting from scratch.", last)
    return None


def print_config_tree(cfg: DictConfig) -> None:
    order = [
        "model",
        "dataset",
        "optimizer",
        "scheduler",
        "regularization",
        "trainer",
        "logger",
        "paths",
    ]
    lines = ["CONFIG"]
    for key in order + [k for k in cfg if k not in order]:
        node = cfg.get(key)
        body = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else f"{node}\n"
        lines.append(f"├── {key}")
        lines += [f"│   {line}" for line in body.rstrip().splitlines()]
    print("\n".join(lines), flush=True)


def report(out: Path, metrics: dict[str, float], warnings: list[str] = ()) -> None:
    for line in warnings:
        log.warning(line)
    logdir = out
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        logdir = Path(HydraConfig.get().sweep.dir)
    shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    print(
        f"Final metrics: {shown}\n"
        + "".join(f"Warning: {line}\n" for line in warnings)
        + f"Run folder: {out}\nTensorBoard: tensorboard --logdir {logdir}",
        flush=True,
    )


def main() -> None:
    """Console entry point: user mistakes become one clear paragraph and exit code 2.

    Start-up (composing the config, building data and model, importing what they need) makes
    some 10^5 long-lived objects and almost no garbage, yet Python's collector scans them again
    and again: 0.3-0.6 s before the first step on 2 cores. It is off until `run` starts training.
    """
    gc.disable()
    try:
        handle_user_errors(train)
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
