"""Tracks the best value of a monitored metric; stops after `patience` epochs without progress."""

from __future__ import annotations

import math


class EarlyStopping:
    """With `patience=None` it only tracks the best value (used for the best checkpoint)."""

    def __init__(
        self, monitor: str, mode: str = "min", patience: int | None = None, min_delta: float = 0.0
    ):
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; True when it improved on the best so far."""
        if self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best = value
            self.wait = 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        # As Keras and Lightning count: `patience` epochs in a row without improvement.
        return self.patience is not None and self.wait > 0 and self.wait >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
