"""Config schemas and start-up checks.

The fixed groups (trainer, regularization, logger, paths) are typed dataclasses registered in
Hydra's ConfigStore, so Hydra itself rejects unknown keys and wrong types while composing. The
pluggable groups (model, dataset, optimizer, scheduler) name their class through `_target_`; their
keys are checked against that class's signature, and `Literal[...]` hints give the valid choices.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.errors import RunnerError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class EarlyStoppingConfig:
    monitor: str = "${optimized_metric}"
    mode: str = "${optimized_mode}"
    patience: int | None = None  # None switches early stopping off
    min_delta: float = 0.0


@dataclass
class AugmentationConfig:
    rotation: float = 0.0  # degrees, sampled in [-rotation, rotation]
    translate: float = 0.0  # fraction of the image size
    scale: float = 0.0  # zoom sampled in [1 - scale, 1 + scale]
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    # Series (dataset=timeseries): see runner/data/sequence_augment.py
    jitter: float = 0.0  # std of added Gaussian noise (series are z-normalised)
    scaling: float = 0.0  # std of a per-series, per-channel factor around 1
    time_warp: float = 0.0  # largest relative change of speed
    window_slice: float = 1.0  # fraction of the length kept and stretched back; 1 = off


@dataclass
class RegularizationConfig:
    dropout: float = 0.0
    # auto: each family's own (batch norm in the cnn and the GAN, none in the autoencoders)
    normalization: str = "auto"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    seed: int = 42
    deterministic: bool = False
    compile: bool = False
    resume: bool = False
    loader: str = "auto"
    num_workers: int = 2
    limit_train_batches: int | None = None
    progress_bar: bool = True
    log_every_n_steps: int = 50
    strategy: str = "auto"
    sync_batchnorm: bool = False
    ddp_timeout_min: float = 60.0
    threads: int | None = None


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    log_images: bool = True
    image_every_n_epochs: int = 1
    num_images: int = 32
    log_hparams: bool = True


@dataclass
class CVConfig:
    folds: int | None = None  # K >= 2 trains K models (K-fold cross-validation); None: off
    fold: int | None = None  # set by runner.search.cv for each fold's run
    seed: int = 0


@dataclass
class SearchConfig:
    """Set by the Optuna sweeper on each trial, so the trial can report to its study."""

    storage: str | None = None
    study: str | None = None
    trial_id: int | None = None


@dataclass
class PathsConfig:
    root_dir: str = "."
    data_dir: str = "data"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class RunConfig:
    model: Any = None
    dataset: Any = None
    optimizer: Any = None
    scheduler: Any = None
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    task_name: str = "train"
    optimized_metric: str = "val/loss"
    optimized_mode: str = "min"
    ckpt_path: str | None = None
    tags: list[str] = field(default_factory=list)


def register_configs() -> None:
    """Make the schemas visible to Hydra (`defaults: [run_schema, ...]` in config.yaml)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="regularization", name="regularization_schema", node=RegularizationConfig)
    store.store(group="logger", name="logger_schema", node=LoggerConfig)


# Fixed vocabularies of the typed groups. Model-specific choices live in the models' Literal hints.
CHOICES: dict[str, Sequence[str]] = {
    "trainer.device": ("auto", "cpu", "cuda", "mps"),
    "trainer.precision": ("auto", "32", "16-mixed", "bf16-mixed"),
    "trainer.loader": ("auto", "device", "dataloader"),
    "trainer.strategy": ("auto", "single", "ddp"),
    "regularization.normalization": ("auto", "none", "batch", "layer"),
    "regularization.early_stopping.mode": ("min", "max"),
    "optimized_mode": ("min", "max"),
}


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _fraction_open_right(v: float) -> bool:
    return 0 <= v < 1


def _fraction_closed(v: float) -> bool:
    return 0 <= v <= 1


def _fraction_open_left(v: float) -> bool:
    return 0 < v <= 1


def _fraction_open(v: float) -> bool:
    return 0 < v < 1


# key -> (check, what is allowed). Keys a config lacks are skipped; None passes where allowed.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "optimizer.lr": (_positive, "a number > 0"),
    "optimizer.generator.lr": (_positive, "a number > 0"),
    "optimizer.discriminator.lr": (_positive, "a number > 0"),
    "model.label_smoothing": (_fraction_open_right, "a number in [0, 1)"),
    "model.n_critic": (_positive, "an integer >= 1"),
    "regularization.dropout": (_fraction_open_right, "a number in [0, 1)"),
    "regularization.weight_decay": (_non_negative, "a number >= 0"),
    "regularization.grad_clip": (_positive, "a number > 0, or null to switch clipping off"),
    "regularization.early_stopping.patience": (_non_negative, "an integer >= 0, or null (off)"),
    "regularization.early_stopping.min_delta": (_non_negative, "a number >= 0"),
    "regularization.augmentation.rotation": (_non_negative, "degrees >= 0"),
    "regularization.augmentation.translate": (_fraction_open_right, "a fraction in [0, 1)"),
    "regularization.augmentation.scale": (_fraction_open_right, "a fraction in [0, 1)"),
    "regularization.augmentation.brightness": (_fraction_closed, "a number in [0, 1]"),
    "regularization.augmentation.contrast": (_fraction_closed, "a number in [0, 1]"),
    "regularization.augmentation.jitter": (_non_negative, "a number >= 0"),
    "regularization.augmentation.scaling": (_non_negative, "a number >= 0"),
    "regularization.augmentation.time_warp": (_fraction_open_right, "a number in [0, 1)"),
    "regularization.augmentation.window_slice": (_fraction_open_left, "a fraction in (0, 1]"),
    "trainer.max_epochs": (_positive, "an integer >= 1"),
    "trainer.batch_size": (_positive, "an integer >= 1"),
    "trainer.eval_batch_size": (_positive, "an integer >= 1, or null (= batch_size)"),
    "trainer.num_workers": (_non_negative, "an integer >= 0"),
    "trainer.limit_train_batches": (_positive, "an integer >= 1, or null (all)"),
    "trainer.log_every_n_steps": (_positive, "an integer >= 1"),
    "trainer.threads": (_positive, "an integer >= 1, or null (automatic)"),
    "trainer.ddp_timeout_min": (_positive, "minutes > 0"),
    "logger.image_every_n_epochs": (_positive, "an integer >= 1"),
    "logger.num_images": (_positive, "an integer >= 1"),
    "dataset.val_fraction": (_fraction_open, "a fraction in (0, 1)"),
    "dataset.train_subset": (_positive, "an integer >= 1, or null (all)"),
    "model.latent_dim": (_positive, "an integer >= 1"),
    "model.noise_level": (_fraction_closed, "a number in [0, 1]"),
    "model.sparsity_weight": (_non_negative, "a number >= 0"),
    "model.sparsity_target": (_fraction_open, "a number in (0, 1)"),
    "model.backbone_lr_scale": (_non_negative, "a number >= 0"),
    "model.unfreeze_after": (_non_negative, "an integer >= 0, or null"),
    "model.warmup_epochs": (_non_negative, "a number of epochs >= 0"),
    "model.head_dropout": (_fraction_open_right, "a number in [0, 1)"),
    "model.input_size": (_positive, "an integer >= 1, or null to keep the image size"),
    "model.head_hidden": (_positive, "an integer >= 1, or null for one linear layer"),
    "model.beta": (_non_negative, "a number >= 0"),
    "model.kl_warmup_epochs": (_non_negative, "an integer >= 0"),
    "model.nll_samples": (_positive, "an integer >= 1"),
    "model.fd_samples": (lambda v: v >= 2, "an integer >= 2"),
    "model.nll_images": (_positive, "an integer >= 1, or null (all)"),
    "model.ema_decay": (_fraction_open, "a number in (0, 1), or null (off)"),
    "model.val_fd_samples": (lambda v: v == 0 or v >= 2, "0 (off) or an integer >= 2"),
}

TARGET_GROUPS = (
    "model",
    "dataset",
    "optimizer",
    "optimizer.generator",
    "optimizer.discriminator",
    "scheduler.scheduler",
)


def validate(cfg: DictConfig, resolved: bool = False) -> None:
    """Check choices, ranges and `_target_` keys of a composed config; raise RunnerError.

    `resolved`: a run's saved config, whose interpolations are values now, so whether a
    regularization key reaches the model (checked when it trained) cannot be seen again."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and str(value) not in allowed:
            raise RunnerError(
                f"{key}={value!r} is not a valid choice. Choose one of: " + ", ".join(allowed) + "."
            )
    for key, (check, allowed) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or math.isnan(value)
            or not check(value)
        ):
            raise RunnerError(f"{key}={value!r} is out of range: expected {allowed}.")
    check_schema_keys(cfg)
    for path in TARGET_GROUPS:
        node = OmegaConf.select(cfg, path)
        if isinstance(node, DictConfig) and node.get("_target_"):
            check_target_node(path, node)
    if not resolved:
        check_regularization(cfg)
    monitored = {
        cfg.get("optimized_metric"),
        OmegaConf.select(cfg, "regularization.early_stopping.monitor"),
    }
    if "val/fd" in monitored and not OmegaConf.select(cfg, "model.fd_classifier", default=None):
        raise RunnerError(
            "val/fd (the Fréchet distance of samples to the validation images) is monitored, but "
            "it is only measured with model.fd_classifier=<the run folder of a cnn trained on "
            "the same dataset, e.g. experiment=cnn_mnist>. Pass one, or monitor another metric "
            "(optimized_metric=val/g_loss)."
        )


# Regularization keys that act through a model's own layers, so a family's config must read them.
# The others act the same in every family: weight decay in the optimiser, clipping in the
# optimiser step, augmentation on the batch, early stopping in the loop.
MODEL_REGULARIZATION = ("dropout", "normalization")


def check_regularization(cfg: DictConfig) -> None:
    """A regularization key set away from its default must reach the model (or its optimisers);
    one that the family has no layer for, or whose value its config replaces, stops the run."""
    reg = cfg.get("regularization")
    model = cfg.get("model")
    if not isinstance(reg, DictConfig) or not isinstance(model, DictConfig):
        return
    target = model.get("_target_")
    defaults = RegularizationConfig()
    refused = getattr(get_object(target), "unsupported_regularization", {}) if target else {}
    reads = _interpolations(model)
    for key in MODEL_REGULARIZATION:
        value = reg.get(key)
        if value == getattr(defaults, key):
            continue
        if key in refused:
            raise RunnerError(
                f"regularization.{key}={value!r} does not apply to model {target}: {refused[key]}"
            )
        if target and f"regularization.{key}" not in reads:
            raise RunnerError(
                f"regularization.{key}={value!r} would not reach model {target}: no key of its "
                f"config reads ${{regularization.{key}}}. Set the model's own key instead (see "
                "--cfg job), or make it read the regularization key."
            )
    decay = reg.get("weight_decay")
    for path in ("optimizer", "optimizer.generator", "optimizer.discriminator"):
        node = OmegaConf.select(cfg, path)
        optimizer = isinstance(node, DictConfig) and node.get("_target_")
        if decay and optimizer and node.get("weight_decay") != decay:
            raise RunnerError(
                f"regularization.weight_decay={decay} would not reach {path} "
                f"({node._target_}), whose weight_decay is {node.get('weight_decay')}. Set "
                f"{path}.weight_decay instead, or give its config "
                "weight_decay: ${regularization.weight_decay}."
            )


def _interpolations(node: DictConfig) -> str:
    """Every unresolved value under `node`, as one string to search for `${...}` references."""
    return repr(OmegaConf.to_container(node, resolve=False))


def check_schema_keys(cfg: DictConfig) -> None:
    """Keys that `+key=value` forced past the typed schema (`+trainer.max_epoch=3`) would be
    ignored silently: refuse them like any unknown key. The `_target_` groups are checked against
    their target's signature instead."""
    schema = OmegaConf.to_container(OmegaConf.structured(RunConfig), resolve=False)
    plain = OmegaConf.to_container(cfg, resolve=False)
    typed = {k: v for k, v in plain.items() if k not in TARGETS}

    def walk(node: dict, known: dict, prefix: str) -> None:
        for key, child in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in known:
                raise RunnerError(unknown_key_message(path, [str(k) for k in known], prefix))
            if isinstance(child, dict) and isinstance(known[key], dict):
                walk(child, known[key], path)

    walk(typed, schema, "")


# Groups whose keys are checked against their `_target_`'s signature, not the schema.
TARGETS = ("model", "dataset", "optimizer", "scheduler")


def check_target_node(path: str, node: DictConfig) -> None:
    """Reject keys the `_target_` does not accept and values outside its Literal choices."""
    target_name = node._target_
    try:
        target = get_object(target_name)
    except Exception as exc:
        raise RunnerError(f"{path}._target_={target_name!r} cannot be imported ({exc}).") from None
    signature = inspect.signature(target)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    hints = _type_hints(target)
    values = OmegaConf.to_container(node, resolve=True)
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_any:
                continue
            valid = [p for p in params if p not in ("self", "params", "optimizer")]
            raise RunnerError(unknown_key_message(f"{path}.{key}", valid, prefix=path))
        hint = hints.get(key)
        if value is None and OmegaConf.is_interpolation(node, key):
            continue  # filled from the data once it is loaded (image_folder's num_classes)
        if hint is not None and not _matches(value, hint):
            raise RunnerError(f"{path}.{key}={value!r} is not valid: expected {_describe(hint)}.")


def unknown_key_message(full_key: str, valid: Sequence[str], prefix: str) -> str:
    """'Unknown key a.b. Did you mean a.c? Valid keys under a: ...'"""
    leaf = full_key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, list(valid), n=1)
    hint = (
        f" Did you mean {prefix}.{close[0]}?"
        if close and prefix
        else (f" Did you mean {close[0]}?" if close else "")
    )
    where = f"under {prefix}" if prefix else "at the top level"
    return f"Unknown key {full_key}.{hint} Valid keys {where}: {', '.join(sorted(valid))}."


def _type_hints(target: Any) -> dict[str, Any]:
    func = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(func)
    except Exception:  # third-party hints (torch) may not resolve; their keys are still checked
        return {}


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple | ListConfig):
            return False
        # Sequence[int], list[int], tuple[int, ...]: every item is checked
        uniform = len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis)
        return all(_matches(v, args[0] if uniform else Any) for v in value)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if args:
        return " or ".join(_describe(a) for a in args)
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def explain_hydra_error(exc: Exception, overrides: Sequence[str]) -> str:
    """Turn Hydra's composition errors into one paragraph naming the key and what is allowed."""
    text = str(exc)
    missing = re.search(r"Could not find '([^']+)'", text)
    options = re.search(r"Available options in '([^']+)':\n((?:\t.*\n?)+)", text)
    if missing:
        group, _, choice = missing.group(1).rpartition("/")
        if options:
            names = [
                o.strip()
                for o in options.group(2).splitlines()
                if o.strip() and not o.strip().endswith("_schema")
            ]
            return (
                f"Unknown choice {group}={choice}. Valid choices for {group}: {', '.join(names)}."
            )
        return f"Unknown choice {group}={choice}: no such config in conf/{group}/."
    cause_text = str(exc.__cause__) if exc.__cause__ is not None else ""
    key_match = re.search(r"full_key: (\S+)", cause_text)
    if key_match and re.search(r"Key '[^']+' (is )?not in", cause_text):
        full_key = key_match.group(1)
        prefix = full_key.rpartition(".")[0]
        valid = _keys_at(
            prefix, [o for o in overrides if not o.lstrip("+~").startswith(full_key + "=")]
        )
        if valid is not None:
            return unknown_key_message(full_key, valid, prefix)
        return (
            f"Unknown key {full_key}. Check the spelling against conf/ and the model's arguments."
        )
    if key_match:
        first = cause_text.splitlines()[0]
        return f"Invalid value for {key_match.group(1)}: {first}."
    if type(exc).__name__ == "OverrideParseException":
        return (
            f"Could not parse the command-line overrides ({text.splitlines()[0]}). "
            "Overrides look like key=value or group=option."
        )
    return text.splitlines()[0] if text else type(exc).__name__


def _keys_at(prefix: str, overrides: Sequence[str]) -> list[str] | None:
    """The keys a composed config has under `prefix`, or None if it cannot be composed."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose("config", overrides=[o for o in overrides if not o.startswith("-")])
        node = OmegaConf.select(cfg, prefix) if prefix else cfg
        return (
            [k for k in node if not str(k).startswith("_")]
            if isinstance(node, DictConfig)
            else None
        )
    except Exception:
        return None
    finally:
        GlobalHydra.instance().clear()


def compose_run_config(output_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m runner.train <overrides>` would run, for a run in `output_dir`;
    for tests, benchmarks and notebooks that call `runner.train.run(cfg)` in-process."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "config",
            overrides=[*overrides, f"hydra.run.dir={output_dir}"],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)  # resolves ${hydra:...} and the HParams choices
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg
