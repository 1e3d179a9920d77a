"""Test-set latent codes, with labels and thumbnails, for TensorBoard's embedding projector."""

from __future__ import annotations

from collections.abc import Callable

import torch

# The projector's sprite sheet grows with the square root of the count; 10,000 stays light.
MAX_POINTS = 10_000


@torch.no_grad()
def log_latent_projector(
    encode: Callable[[torch.Tensor], torch.Tensor],
    loader,
    preprocess,
    logger,
    class_names: list[str] | None = None,
    tag: str = "test/latent",
) -> int:
    """Encode up to MAX_POINTS test inputs and write them to the projector; returns the count."""
    if logger is None:
        return 0
    codes, labels, thumbs = [], [], []
    seen = 0
    for batch in loader:
        x, y = preprocess(batch, train=False)
        codes.append(encode(x).float().flatten(1).cpu())
        labels.append(y.cpu())
        if x.dim() == 4:  # images get thumbnails; series have no picture to show
            thumbs.append(x.float().cpu())
        seen += len(x)
        if seen >= MAX_POINTS:
            break
    codes_t = torch.cat(codes)[:MAX_POINTS]
    label_t = torch.cat(labels)[:MAX_POINTS].tolist()
    names = [class_names[i] if class_names else str(i) for i in label_t]
    sprites = torch.cat(thumbs)[:MAX_POINTS] if thumbs else None
    logger.embedding(codes_t, names, sprites, tag)
    return len(codes_t)
