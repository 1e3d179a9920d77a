"""The Hydra plugin class. Hydra's plugin scan imports this module (and config.py) at every start,
so Optuna and the sweep's own modules (`_core` and the others named with `_`) load only when a
sweep begins."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class Optuna4Sweeper(Sweeper):
    def __init__(self, **params: Any) -> None:
        from ._core import OptunaSweep

        self.sweep_impl = OptunaSweep(**params)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.sweep_impl.setup(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.launcher = self.sweep_impl.launcher

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweep_impl.sweep(arguments)
