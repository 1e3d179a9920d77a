"""The Hydra plugin class; Optuna is imported only when a sweep starts (Hydra imports every
plugin module at start-up)."""

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
