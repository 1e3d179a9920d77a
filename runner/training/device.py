"""Device, precision and seeding."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from runner.errors import RunnerError

log = logging.getLogger(__name__)


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunnerError(
            "trainer.device=cuda but no CUDA GPU is visible; use trainer.device=auto or cpu."
        )
    if name == "mps" and not has_mps:
        raise RunnerError(
            "trainer.device=mps but MPS is not available; use trainer.device=auto or cpu."
        )
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16-mixed on GPUs that support it, else 16-mixed on CUDA; 32 elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return "32"
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if precision == "16-mixed" and device.type != "cuda":
        log.warning("trainer.precision=16-mixed needs CUDA; training in 32-bit on %s.", device.type)
        return "32"
    return precision


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    """Every random stream training touches, as tensors and builtins (weights-only loadable)."""
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
