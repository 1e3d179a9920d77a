"""Faults the DDP tests inject from inside a run (`tests.ddp_faults.FaultyAutoencoder`)."""

from __future__ import annotations

import os
import signal

import torch

from runner import distributed
from runner.errors import RunnerError
from runner.models.autoencoder import Autoencoder


class FaultyAutoencoder(Autoencoder):
    """The autoencoder, plus faults at a training step: a NaN loss on rank `bad_rank` (`nan_at`),
    an error on rank `bad_rank` alone (`fail_at`), or a kill of rank 0 (`kill_at`: SIGKILL, as
    by the OOM killer or a pre-empted node)."""

    def __init__(
        self,
        *args,
        nan_at: int | None = None,
        fail_at: int | None = None,
        bad_rank: int = 1,
        kill_at: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.nan_at, self.fail_at, self.bad_rank, self.kill_at = nan_at, fail_at, bad_rank, kill_at
        self.steps = 0

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = super().compute_losses(x, y)
        if not self.training:
            return losses
        self.steps += 1
        if self.kill_at == self.steps and distributed.rank() == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        if distributed.rank() == self.bad_rank:
            if self.nan_at == self.steps:
                losses["loss"] = losses["loss"] * float("nan")
            if self.fail_at == self.steps:
                raise RunnerError(f"Injected failure on rank {self.bad_rank}.")
        return losses
