"""Corrupted images: the denoising autoencoder's training noise, and the one fixed noise on which
every image autoencoder's denoising is scored (`test/denoise_mse`, runner.models.code_metrics)."""

from __future__ import annotations

from typing import Literal

import torch

NoiseType = Literal["gaussian", "masking", "salt_and_pepper"]

# The noise every family is scored on, the same images for all: Gaussian, std 0.3, clipped to
# [0, 1] (the denoising autoencoder's default training noise), drawn from this seed.
FIXED_NOISE: tuple[NoiseType, float] = ("gaussian", 0.3)
FIXED_NOISE_SEED = 0


def corrupt(
    x: torch.Tensor,
    noise_type: NoiseType,
    level: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian (std = level, clipped to [0, 1]), masking (each pixel zeroed with p = level) or
    salt and pepper (each pixel set to 0 or 1 with p = level). The noise comes from `generator`
    (on x's device), or the global stream."""
    like = {"generator": generator, "dtype": x.dtype, "device": x.device}
    if noise_type == "gaussian":
        return (x + level * torch.randn(x.shape, **like)).clamp(0, 1)
    hit = torch.rand(x.shape, **like) < level
    if noise_type == "masking":
        return x.masked_fill(hit, 0.0)
    salt = (torch.rand(x.shape, **like) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


class FixedNoise:
    """Corrupts with FIXED_NOISE from one generator seeded once, image after image: the same images
    in the same order get the same noise whichever family sees them and in whatever batches. The
    noise is drawn on the CPU, so a GPU run gets the same numbers."""

    def __init__(self, seed: int = FIXED_NOISE_SEED) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        noisy = [corrupt(image, *FIXED_NOISE, self.generator) for image in x.float().cpu()]
        return torch.stack(noisy).to(x)
