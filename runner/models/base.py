"""What every model family provides to the training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from runner.training.step import OptimizerStep

Batch = tuple[torch.Tensor, torch.Tensor]
MakeOptimizer = Callable[..., torch.optim.Optimizer]


class RunnerModel(nn.Module):
    """A model family: its networks, its losses, its optimisation step and the images it shows.

    The loop owns epochs, devices, precision, checkpoints and logging. A family owns the rest:
    `compute_losses` returns a dict of scalar tensors whose "loss" is minimised; families with
    several optimisers (the GAN) override `configure_optimizers` and `training_step`.
    """

    # The dataset's class names, set by the runner after the data is loaded (for logs and images).
    class_names: list[str] | None = None

    def configure_optimizers(
        self, make_optimizer: MakeOptimizer
    ) -> dict[str, torch.optim.Optimizer]:
        """Named optimisers; `make_optimizer(params, **overrides)` is the configured partial."""
        return {"model": make_optimizer(self.parameters())}

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def training_step(
        self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer], step: OptimizerStep
    ) -> dict[str, torch.Tensor]:
        with step.autocast():
            losses = self.compute_losses(*batch)
        step(losses["loss"], optimizers["model"])
        return losses

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.compute_losses(*batch)

    @torch.no_grad()
    def test_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.validation_step(batch)

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Image grids ([C, H, W] in [0, 1]) to show for a fixed validation batch."""
        return {}

    @torch.no_grad()
    def on_validation_end(self, loader, preprocess) -> dict[str, float]:
        """After each validation pass: extra whole-set metrics, named `val/...` (the GAN's FD)."""
        return {}

    @torch.no_grad()
    def on_test_end(self, loader, preprocess, logger) -> dict[str, float]:
        """After the test pass over the best checkpoint: extra whole-test-set metrics (returned,
        named `test/...`) and artifacts for TensorBoard (`logger` may be None)."""
        return {}

    def on_train_epoch_start(self, epoch: int) -> None:
        """Hook for schedules owned by the model (KL warm-up, unfreezing)."""


def parameters_of(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]
