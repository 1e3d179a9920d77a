"""Config schemas: every fixed key, its type, default, choices and range, in one place.

The fixed groups are dataclasses in Hydra's ConfigStore, so OmegaConf rejects unknown keys, wrong
types and (Enum fields) unknown choices while Hydra composes, before anything is written. Ranges
sit beside the field they constrain (`Annotated[float, Field(ge=0, lt=1)]`); pydantic checks them
first thing in the job (runner/validation.py), as it checks the `_target_` groups (model, dataset,
optimizer, scheduler) against their target's signature. A new option is one field here and the
code that reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
T = TypeVar("T")
# Unknown keys are refused, also those that `+key=value` forced past OmegaConf.
CLOSED = {"extra": "forbid"}


class Choice(str, Enum):
    """A closed vocabulary. A member is its string (`cfg.trainer.device == "cuda"`)."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        return cls._value2member_map_.get(str(value))  # trainer.precision=32 arrives as an int


def choices(name: str, *values: str) -> Any:
    return Choice(name, [(v, v) for v in values])


Device = choices("Device", "auto", "cpu", "cuda", "mps")
Precision = choices("Precision", "auto", "32", "16-mixed", "bf16-mixed")
LoaderKind = choices("LoaderKind", "auto", "device", "dataloader")
Strategy = choices("Strategy", "auto", "single", "ddp")
Normalization = choices("Normalization", "auto", "none", "batch", "layer")
Mode = choices("Mode", "min", "max")
Interval = choices("Interval", "epoch", "step")

Fraction = Annotated[float, Field(ge=0, lt=1)]
Unit = Annotated[float, Field(ge=0, le=1)]


@dataclass
class TrainerConfig:
    __pydantic_config__ = CLOSED
    # None (auto): from the model family's recipe and the data size (runner/training/budget.py)
    max_epochs: PositiveInt | None = None
    # None: the recipe's steps; a number: auto epochs are as many as this many steps take
    max_steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None  # per process under DDP; None (auto) as max_epochs
    eval_batch_size: PositiveInt | None = None  # None: batch_size
    device: Device = Device("auto")  # auto: cuda > mps > cpu
    # auto: bf16-mixed (or 16-mixed) on CUDA, 32 elsewhere
    precision: Precision = Precision("auto")
    seed: int = 42
    deterministic: bool = False  # bit-reproducible runs and resumes, at some speed cost
    compile: bool = False  # torch.compile the networks
    resume: bool = False  # continue from <run folder>/checkpoints/last.pt if it exists
    # auto: in-memory datasets are served from the device; device; dataloader
    loader: LoaderKind = LoaderKind("auto")
    num_workers: Annotated[int, Field(ge=0)] = 2  # DataLoader workers for on-disk datasets
    limit_train_batches: PositiveInt | None = None  # None: every batch
    progress_bar: bool = True
    log_every_n_steps: PositiveInt = 50
    # auto: ddp when torchrun or a multi-task SLURM job started several processes; single; ddp
    strategy: Strategy = Strategy("auto")
    sync_batchnorm: bool = False  # ddp on CUDA: BatchNorm statistics over the global batch
    # ddp: how long ranks wait for each other (rank 0 alone computes whole-set test metrics)
    ddp_timeout_min: PositiveFloat = 60.0
    threads: PositiveInt | None = None  # CPU threads; None: all cores (or cores / n_jobs)


@dataclass
class EarlyStoppingConfig:
    __pydantic_config__ = CLOSED
    monitor: str = "${optimized_metric}"
    mode: Mode = "${optimized_mode}"
    patience: Annotated[int, Field(ge=0)] | None = None  # epochs without improvement; None: off
    min_delta: NonNegativeFloat = 0.0


# The kind of data an augmentation key applies to (images unless marked); its default is "off".
SERIES = MappingProxyType({"data": "series"})


@dataclass
class AugmentationConfig:
    """Train-time, per sample, on the device (runner/data/augment.py, sequence_augment.py). The
    one list of the keys: `augmentation_keys` reads which data each applies to from here."""

    __pydantic_config__ = CLOSED
    rotation: NonNegativeFloat = 0.0  # degrees, sampled in [-rotation, rotation]
    translate: Fraction = 0.0  # fraction of the image size
    scale: Fraction = 0.0  # zoom sampled in [1 - scale, 1 + scale]
    hflip: bool = False  # only where mirrored images are still valid (not digits)
    brightness: Unit = 0.0
    contrast: Unit = 0.0
    # std of added noise (series are z-normalised)
    jitter: NonNegativeFloat = field(default=0.0, metadata=SERIES)
    # std of a per-series, per-channel factor around 1
    scaling: NonNegativeFloat = field(default=0.0, metadata=SERIES)
    # largest relative change of speed
    time_warp: Fraction = field(default=0.0, metadata=SERIES)
    # fraction of the length kept and stretched back; 1 = off
    window_slice: Annotated[float, Field(gt=0, le=1)] = field(default=1.0, metadata=SERIES)


def augmentation_keys(data: Literal["images", "series"]) -> dict[str, Any]:
    """The `regularization.augmentation` keys that apply to `data`, each with its default (off)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(AugmentationConfig)
        if f.metadata.get("data", "images") == data
    }


@dataclass
class RegularizationConfig:
    __pydantic_config__ = CLOSED
    dropout: Fraction = 0.0
    # auto: each family's own (batch norm in the cnn and the GAN, none in the autoencoders)
    normalization: Normalization = Normalization("auto")
    weight_decay: NonNegativeFloat = 0.0
    grad_clip: PositiveFloat | None = None  # max gradient norm; None: off
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)


@dataclass
class LoggerConfig:
    __pydantic_config__ = CLOSED
    tensorboard: bool = True
    log_images: bool = True
    # None (auto): about ten times a run, and at its first and last epoch
    image_every_n_epochs: PositiveInt | None = None
    num_images: PositiveInt = 32
    log_hparams: bool = True
    # Each Linear and Conv layer's output and weight-gradient std at the first step and the
    # first step of every epoch (layers/*), and the first step's in the final metrics (init/*)
    layer_stats: bool = False


@dataclass
class SchedulerConfig:
    __pydantic_config__ = CLOSED
    scheduler: Any = None  # a `_partial_` torch scheduler, or None
    interval: Interval = Interval("epoch")  # when it steps: every epoch or every batch
    monitor: str | None = None  # the metric ReduceLROnPlateau reads


@dataclass
class CVConfig:
    __pydantic_config__ = CLOSED
    folds: Annotated[int, Field(ge=2)] | None = None  # K-fold cross-validation; None: off
    fold: int | None = None  # set by runner.search.cv for each fold's run
    seed: int = 0


@dataclass
class SearchConfig:
    """Set by the Optuna sweeper on each trial, so the trial can report to its study."""

    __pydantic_config__ = CLOSED
    storage: str | None = None
    study: str | None = None
    trial: int | None = None  # the trial's number (== its job number and folder name)
    # The sampler preset that proposed this run when hydra.sweeper.compare_samplers races several
    # (one study each); unlike the three above it differs between runs: a column of the table.
    sampler: str | None = None


@dataclass
class PathsConfig:
    __pydantic_config__ = CLOSED
    root_dir: str = "."
    data_dir: str = "data"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class RunConfig:
    __pydantic_config__ = CLOSED
    model: Any = None
    dataset: Any = None
    optimizer: Any = None
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    task_name: str = "train"
    optimized_metric: str = "val/loss"
    optimized_mode: Mode = Mode("min")
    ckpt_path: str | None = None
    tags: list[str] = field(default_factory=list)


def settings_of(node: DictConfig, schema: type[T]) -> T:
    """A config group as its dataclass, typed and checked: the trainer and the logger take theirs
    in one piece. Works for a composed config and for a run's saved (plain) one."""
    values = OmegaConf.to_container(node, resolve=True)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))


def register_configs() -> None:
    """Make the schemas visible to Hydra (`defaults: [run_schema, ...]` in config.yaml)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="regularization", name="regularization_schema", node=RegularizationConfig)
    store.store(group="logger", name="logger_schema", node=LoggerConfig)


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
