"""What every model family provides to the training loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from runner.training.step import OptimizerStep

Batch = tuple[torch.Tensor, torch.Tensor]
MakeOptimizer = Callable[..., torch.optim.Optimizer]
Wrap = Callable[[nn.Module], nn.Module]  # a module -> the same in DistributedDataParallel


class LossFunction(nn.Module):
    """`forward(*inputs)` = `fn(*inputs)`, over the parameters of `networks`: what DDP wraps so
    that a family's losses, not one of its networks, is the synchronised forward pass."""

    def __init__(self, fn: Callable[..., dict | torch.Tensor | tuple], *networks: nn.Module):
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.fn = fn

    def forward(self, *inputs):
        return self.fn(*inputs)


class RunnerModel(nn.Module):
    """A model family: its networks, its losses, its optimisation step and the images it shows.

    The loop owns epochs, devices, precision, checkpoints and logging. A family owns the rest:
    `compute_losses` returns a dict of scalar tensors whose "loss" is minimised; families with
    several optimisers (the GAN) override `configure_optimizers` and `training_step`.

    Data-parallel training: `distribute(wrap)` wraps what `training_step` runs in PyTorch's
    DistributedDataParallel. The wrappers live outside the module tree (`self.parallel`), so
    `state_dict()` has the same keys with and without DDP.
    """

    # The dataset's class names, set by the runner after the data is loaded (for logs and images).
    class_names: list[str] | None = None
    # DDP wrappers by name, set by `distribute`; empty in a single process.
    parallel: dict[str, nn.Module] = {}
    # Regularization keys this family has no layer for -> what to do instead. A value other than
    # the key's default stops the run at start-up (runner.validation.check_regularization)
    # instead of training a model that ignores it.
    unsupported_regularization: ClassVar[dict[str, str]] = {}
    # Classes the data must have (a classifier needs two; an autoencoder learns from one).
    min_classes: ClassVar[int] = 1

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """The family's rules across keys, checked at start-up before any data is loaded
        (runner.validation.validate); raise RunnerError. Single keys are checked against the
        constructor's signature: its `Literal` hints and `Annotated[..., Field(...)]` ranges."""

    def distribute(self, wrap: Wrap) -> None:
        """Wrap the training forward for DDP. One wrapper around `compute_losses` covers every
        trainable parameter, also one held outside submodules (a VAE's `log_sigma`). Families
        whose trainable set changes (unfreezing) call this again."""
        self._wrap = wrap
        self.parallel = {"losses": wrap(LossFunction(self.compute_losses, self))}

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """`compute_losses`, through the DDP wrapper when training data-parallel."""
        wrapped = self.parallel.get("losses")
        if wrapped is not None and self.training:
            return wrapped(x, y)
        return self.compute_losses(x, y)

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
            losses = self.losses(*batch)
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

    def on_fit_start(self, train, val, preprocess, steps_per_epoch: int) -> None:
        """Before the first epoch, with loaders over the whole train and val splits (the same on
        every rank), the batch preprocessing and this rank's steps per epoch: a family's set-up
        from the data (transfer's batch-norm statistics and linear probe). A resumed run loads its
        checkpoint over what this did."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Hook for schedules owned by the model (KL warm-up, unfreezing)."""

    def on_train_epoch_end(self, metrics: dict[str, float]) -> None:
        """After each epoch, with its `train/*` and `val/*` means (the same on every rank): the
        place for a family's own stop rules (the GAN's collapse), so all ranks stop together."""
