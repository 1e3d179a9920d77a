"""What every model family provides to the training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from runner.models.capabilities import SampleScorer
from runner.training.step import OptimizerStep

Batch = tuple[torch.Tensor, torch.Tensor]
MakeOptimizer = Callable[..., torch.optim.Optimizer]
Wrap = Callable[[nn.Module], nn.Module]  # a module -> the same in DistributedDataParallel


@dataclass(frozen=True)
class Recipe:
    """The training a family needs in order to learn, whatever the size of the data. A run that
    leaves `trainer.batch_size`, `trainer.max_epochs` or an optimizer key null (auto) gets it
    from here, sized for its training split (runner.training.budget); a value set wins."""

    steps: int = 4000  # optimiser steps to learn in
    batch_size: int = 128  # on large data; smaller on small data, so an epoch has some steps
    min_batch_size: int = 16
    max_epochs: int = 1000  # however small the data
    # Values for the optimizer keys left null (lr, betas); keys neither sets keep torch's.
    optimizer: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"lr": 1e-3}))


@dataclass(frozen=True)
class Target:
    """A finished run learned when its `test/<metric>` beats `test/<baseline>`, what doing almost
    nothing scores on the same split (`describe` names it in the summary)."""

    metric: str
    baseline: str
    describe: str
    mode: str = "min"
    factor: float = 1.0  # the metric must beat baseline x factor

    def missed(self, metrics: dict[str, float]) -> str | None:
        """One line when the run has both numbers and the metric does not beat the baseline."""
        value, base = metrics.get(f"test/{self.metric}"), metrics.get(f"test/{self.baseline}")
        if value is None or base is None:
            return None
        bar = base * self.factor
        if (value < bar) if self.mode == "min" else (value > bar):
            return None
        if self.factor != 1:
            return (
                f"test/{self.metric}={value:.4g} misses its target, {self.factor:g} x "
                f"test/{self.baseline}={base:.4g} ({self.describe})."
            )
        return (
            f"test/{self.metric}={value:.4g} does not beat test/{self.baseline}={base:.4g} "
            f"({self.describe}): the model did not learn more than that baseline."
        )


def coverage_collapse(metrics: dict[str, float], classes: int | None) -> str | None:
    """A generator whose samples fall into one or two of (at least three) classes, named."""
    coverage = metrics.get("test/class_coverage")
    if coverage is None or not classes or classes < 3 or coverage > 2:
        return None
    return (
        f"Mode collapse: the samples cover {coverage:.0f} of {classes} classes "
        "(test/class_coverage): the generator draws a few kinds of image whatever its noise."
    )


def inputs_of(loader, preprocess) -> Iterator[torch.Tensor]:
    """A loader's inputs as the model sees them at evaluation, batch by batch."""
    for batch in loader:
        yield preprocess(batch, train=False)[0]


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
    # Wraps a long evaluation loop in a progress bar: `progress(items, desc=..., total=...)`;
    # the loop sets it as trainer.progress_bar says.
    progress: Callable[..., Iterable] = staticmethod(lambda items, **_: items)
    # Scores samples in a classifier run's feature space (a family names the run, e.g. its
    # model.fd_classifier); the loop hands one in (runner.training.scoring), as it sets `progress`.
    scorer: SampleScorer | None = None
    # Classes the data must have (a classifier needs two; an autoencoder learns from one).
    min_classes: ClassVar[int] = 1
    # The training it needs: steps, batch size, learning rate (see Recipe).
    recipe: ClassVar[Recipe] = Recipe()
    # What its test metrics must beat (`baselines` computes them; `diagnose` reports misses).
    targets: ClassVar[tuple[Target, ...]] = ()

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

    @torch.no_grad()
    def baselines(self, train, test, preprocess) -> dict[str, float]:
        """After the test pass: what doing almost nothing scores on the test split, named as
        test metrics are (without `test/`): PCA for an autoencoder, the majority class for a
        classifier. Computed once, on rank 0, with the whole train and test splits."""
        return {}

    @torch.no_grad()
    def code_metrics(self, train, test, preprocess) -> dict[str, float]:
        """After the test pass: what the trained model's codes are worth, named as test metrics
        are (without `test/`): a linear probe's accuracy on them and denoising of a fixed noise
        for the image autoencoders (runner.models.code_metrics). Computed once, on rank 0, beside
        `baselines`."""
        return {}

    def diagnose(self, metrics: dict[str, float]) -> list[str]:
        """One line for each way this finished run failed to learn, from its final metrics:
        a target missed, a collapse named (families add theirs)."""
        return [line for target in self.targets if (line := target.missed(metrics))]

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
