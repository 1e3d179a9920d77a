"""One optimiser step with autocast, gradient scaling and clipping: what a family calls per loss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch


class OptimizerStep:
    """`step(loss, optimizer)` = zero grads, backward, unscale, clip, step.

    `16-mixed` uses one GradScaler per optimiser (a GAN steps two), `bf16-mixed` needs none.
    """

    def __init__(
        self,
        device: torch.device,
        precision: str = "32",
        grad_clip: float | None = None,
    ):
        self.device_type = device.type
        self.precision = precision
        self.grad_clip = grad_clip
        self.dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        # Called after backward with the optimiser whose gradients are ready, unscaled and not
        # yet clipped (runner.training.layer_stats reads them); None: nothing to call.
        self.on_gradients: Callable[[torch.optim.Optimizer], None] | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def _scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(
                self.device_type, enabled=self.precision == "16-mixed"
            )
        return self.scalers[name]

    def __call__(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, name: str = "model"
    ) -> None:
        scaler = self._scaler(name)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # under DDP, gradients are averaged over ranks here
        if self.grad_clip or self.on_gradients is not None:
            scaler.unscale_(optimizer)  # the step then skips its own unscaling: same update
        if self.on_gradients is not None:
            self.on_gradients(optimizer)
        if self.grad_clip:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self) -> dict:
        return {name: scaler.state_dict() for name, scaler in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, scaler_state in state.items():
            self._scaler(name).load_state_dict(scaler_state)
