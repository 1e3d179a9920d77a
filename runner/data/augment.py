"""Train-time augmentation applied to a whole batch on its device, with per-sample parameters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.data.sequence_augment import SequenceAugmentation


class BatchAugmentation:
    """Random affine (rotation, translation, zoom), horizontal flip and brightness/contrast.

    Works on float batches in [0, 1] of shape [B, C, H, W]; every sample draws its own parameters.
    """

    def __init__(
        self,
        rotation: float = 0.0,
        translate: float = 0.0,
        scale: float = 0.0,
        hflip: bool = False,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ) -> None:
        self.rotation = rotation
        self.translate = translate
        self.scale = scale
        self.hflip = hflip
        self.brightness = brightness
        self.contrast = contrast

    @property
    def enabled(self) -> bool:
        return any(
            (self.rotation, self.translate, self.scale, self.hflip, self.brightness, self.contrast)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.rotation or self.translate or self.scale:
            x = self._affine(x)
        if self.hflip:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(-1), x)
        if self.brightness:
            x = x * self._uniform(x, 1 - self.brightness, 1 + self.brightness)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * self._uniform(x, 1 - self.contrast, 1 + self.contrast) + mean
        return x.clamp_(0, 1) if (self.brightness or self.contrast) else x

    @staticmethod
    def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.empty(x.shape[0], 1, 1, 1, device=x.device).uniform_(low, high)

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        angle = torch.empty(n, device=x.device).uniform_(-1, 1) * math.radians(self.rotation)
        zoom = torch.empty(n, device=x.device).uniform_(1 - self.scale, 1 + self.scale)
        shift = torch.empty(n, 2, device=x.device).uniform_(-1, 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def make_augmentation(settings: dict, series: bool) -> BatchAugmentation | SequenceAugmentation:
    """`regularization.augmentation` split by data kind (runner.config.augmentation_keys): image
    keys build a BatchAugmentation, series keys a SequenceAugmentation. Keys of the other kind must
    stay off (at their defaults), so a setting is never silently ignored."""
    from runner.config import augmentation_keys
    from runner.data.sequence_augment import SequenceAugmentation

    kinds = {"images": augmentation_keys("images"), "series": augmentation_keys("series")}
    own, other = ("series", "images") if series else ("images", "series")
    wrong = [k for k, off in kinds[other].items() if k in settings and settings[k] != off]
    if wrong:
        raise RunnerError(
            f"regularization.augmentation.{wrong[0]} applies to {other}, but this dataset holds "
            f"{own}. Set it back to its default or use {', '.join(kinds[own])} for {own}."
        )
    chosen = {k: v for k, v in settings.items() if k in kinds[own]}
    return SequenceAugmentation(**chosen) if series else BatchAugmentation(**chosen)
