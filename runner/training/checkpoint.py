"""Checkpoints are plain dicts of tensors and builtins, written atomically, read weights-only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from runner.errors import RunnerError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write a temporary file in the same folder, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its checkpoints/last.pt)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise RunnerError(
            f"Checkpoint {p} does not exist. Pass ckpt_path=<run folder> or "
            "ckpt_path=<run folder>/checkpoints/last.pt (or best.pt)."
        )
    return p


def load_weights(model: torch.nn.Module, state: dict[str, Any], mismatch: str) -> None:
    """`model.load_state_dict(state["model"])`; a mismatch raises a RunnerError that starts
    with `mismatch` and quotes the first line of torch's explanation."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise RunnerError(f"{mismatch}: {str(exc).splitlines()[0]} ...") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with weights_only=True; unreadable files raise a RunnerError naming the file."""
    p = resolve_checkpoint(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunnerError(
            f"Checkpoint {p} is corrupt or not a checkpoint of this project "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Use another checkpoint (best.pt, last.pt) or start without ckpt_path."
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise RunnerError(
            f"Checkpoint {p} holds no model state; it was not written by this project."
        )
    return state
