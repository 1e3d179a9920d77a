"""The own options of the entrypoints that reuse a finished run, as config schemas.

`python -m runner.sample ckpt_path=RUN n=16` composes conf/sample.yaml: the training config
(conf/config.yaml), whose keys you name override the run's saved config, and the `SampleOptions`
below, which are this command's alone. So `--help`, `--cfg job`, unknown keys with suggestions,
types, choices and ranges behave as they do for `runner.train`: OmegaConf checks types and choices
while Hydra composes, pydantic the ranges (`runner.validation.check_options`). A new option is one
field here and the code that reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from pydantic import Field, PositiveInt

from runner.config import CLOSED, RunConfig, choices, register_configs

Checkpoint = choices("Checkpoint", "best", "last")
Split = choices("Split", "test", "val", "train")


@dataclass
class EvalOptions:
    __pydantic_config__ = CLOSED
    checkpoint: Checkpoint = Checkpoint("best")  # the run's checkpoints/<checkpoint>.pt
    split: Split = Split("test")  # the split of the data that is tested


@dataclass
class SampleOptions:
    __pydantic_config__ = CLOSED
    n: PositiveInt = 64  # samples drawn (and test images reconstructed)
    seed: int = 0  # the same seed draws the same pictures
    steps: Annotated[int, Field(ge=2)] = 10  # images in each row of interpolation.png
    input: str | None = None  # a folder of images or one image file to reconstruct
    checkpoint: Checkpoint = Checkpoint("best")


@dataclass
class PredictOptions:
    __pydantic_config__ = CLOSED
    input: str | None = None  # a folder of images or one image file to classify (required)
    top_k: PositiveInt = 3  # classes listed per image in predictions.csv
    grid: bool = True  # also write predictions.png, the images captioned with their predictions
    checkpoint: Checkpoint = Checkpoint("best")


@dataclass
class EvaluateSamplesOptions:
    __pydantic_config__ = CLOSED
    classifier: str | None = None  # the folder of a cnn run on the same data (required)
    samples: PositiveInt = 10_000  # samples drawn and scored
    checkpoint: Checkpoint = Checkpoint("best")


# Entrypoint (its module runner.<name> and its conf/<name>.yaml) -> the schema of its options.
OPTIONS: dict[str, type] = {
    "eval": EvalOptions,
    "sample": SampleOptions,
    "predict": PredictOptions,
    "evaluate_samples": EvaluateSamplesOptions,
}


def entry_schema(options: type) -> DictConfig:
    """The node `<name>_schema` that conf/<name>.yaml merges after conf/config.yaml: typed as
    RunConfig plus `options`, so the root accepts the options, with the run's keys MISSING, so
    merging it leaves what config.yaml composed in place (a MISSING value never overrides)."""
    schema = dataclasses.make_dataclass(f"{options.__name__}Config", [], bases=(RunConfig, options))
    node = OmegaConf.structured(schema)
    for run_key in dataclasses.fields(RunConfig):
        node[run_key.name] = MISSING
    return node


def register_entry_configs() -> None:
    """Make the training schemas and every entrypoint's schema visible to Hydra."""
    register_configs()
    store = ConfigStore.instance()
    for name, options in OPTIONS.items():
        store.store(name=f"{name}_schema", node=entry_schema(options))
