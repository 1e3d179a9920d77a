"""Layer statistics (`logger.layer_stats=true`): how the scale of each Linear and Conv layer's
output and of its weight gradient starts and evolves, the figures of a weight-init study.

The loop records one training step per epoch, its first, through `LayerStats.record`: forward
hooks, registered for that step only and removed right after it, keep each layer's output, and the
`OptimizerStep` hands over the gradients after backward (unscaled under 16-mixed, before
clipping). Off, nothing is registered and nothing is computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from runner.training.step import OptimizerStep
    from runner.training.tensorboard import TensorBoardLogger

LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
HISTOGRAM_VALUES = 2**16  # a histogram of a large layer reads an evenly strided subset


class LayerStats:
    """Records steps into TensorBoard (`layers/activation_std/<layer>`,
    `layers/gradient_std/<layer>`, histograms `layers/activation/<layer>`, at the global step)
    and keeps the first step's figures for the run's final metrics (`first_step`).

    Layers are named by their module path (`body.0`, `head`). A layer run twice in one step (a
    discriminator on real and fake images) is recorded at its first call.
    """

    def __init__(self, logger: TensorBoardLogger | None) -> None:
        self.logger = logger
        self.first_step: dict[str, float] = {}

    @contextmanager
    def record(self, model: nn.Module, step: OptimizerStep, global_step: int) -> Iterator[None]:
        """Around one training step (the `global_step`-th, counting from 1): its statistics."""
        layers = {name: m for name, m in model.named_modules() if isinstance(m, LAYERS)}
        outputs: dict[str, torch.Tensor] = {}  # in the order the forward pass ran them
        gradients: dict[str, torch.Tensor] = {}

        def keep_output(name: str):
            def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
                outputs.setdefault(name, output.detach())

            return hook

        def keep_gradients(optimizer: torch.optim.Optimizer) -> None:
            stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
            for name, layer in layers.items():
                grad = layer.weight.grad
                if id(layer.weight) in stepped and grad is not None and name not in gradients:
                    gradients[name] = grad.detach().float().std()

        handles = [m.register_forward_hook(keep_output(name)) for name, m in layers.items()]
        step.on_gradients = keep_gradients
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            step.on_gradients = None
        self._write(outputs, gradients, global_step)

    def _write(
        self, outputs: dict[str, torch.Tensor], gradients: dict[str, torch.Tensor], step: int
    ) -> None:
        activation = _floats({name: out.float().std() for name, out in outputs.items()})
        gradient = _floats(gradients)
        if step == 1:
            self.first_step = first_and_last(activation, gradient)
        if self.logger is None:
            return
        self.logger.scalars({f"layers/activation_std/{k}": v for k, v in activation.items()}, step)
        self.logger.scalars({f"layers/gradient_std/{k}": v for k, v in gradient.items()}, step)
        self.logger.histograms(
            {f"layers/activation/{name}": _subset(out) for name, out in outputs.items()}, step
        )


def first_and_last(activation: dict[str, float], gradient: dict[str, float]) -> dict[str, float]:
    """`init/{activation,gradient}_std_{first,last}`: the first layer the forward pass ran and the
    last hidden one (the one before the output layer, whose scale the loss sets rather than the
    init; the only one in a one-layer model)."""
    ran = list(activation)
    if not ran:
        return {}
    first, last = ran[0], ran[-2] if len(ran) > 1 else ran[0]
    figures = {
        "init/activation_std_first": activation[first],
        "init/activation_std_last": activation[last],
    }
    for position, name in (("first", first), ("last", last)):
        if name in gradient:
            figures[f"init/gradient_std_{position}"] = gradient[name]
    return figures


def _floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Tensors to floats with one device sync for all of them."""
    if not values:
        return {}
    return dict(zip(values, torch.stack(list(values.values())).tolist()))


def _subset(output: torch.Tensor) -> torch.Tensor:
    flat = output.flatten()
    return flat[:: max(1, flat.numel() // HISTOGRAM_VALUES)].float()
