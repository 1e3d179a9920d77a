"""Train-time augmentation of a batch of series [B, T, C] on its device (Um et al., 2017;
Le Guennec et al., 2016), with per-sample parameters.

Series may end in NaN padding (variable length): every transform works on each series' own
length and leaves its padding where it is, so a model still finds the true length.
"""

from __future__ import annotations

import torch


class SequenceAugmentation:
    """Jitter (Gaussian noise of std `jitter`), scaling (one factor per series and channel, std
    `scaling` around 1), time warp (a smooth random change of speed of up to +-`time_warp`) and
    window slicing (a random window of `window_slice` of the length stretched back to full)."""

    def __init__(
        self,
        jitter: float = 0.0,
        scaling: float = 0.0,
        time_warp: float = 0.0,
        window_slice: float = 1.0,
        warp_knots: int = 4,
    ) -> None:
        self.jitter = jitter
        self.scaling = scaling
        self.time_warp = time_warp
        self.window_slice = window_slice
        self.warp_knots = warp_knots

    @property
    def enabled(self) -> bool:
        return bool(self.jitter or self.scaling or self.time_warp or self.window_slice < 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_warp or self.window_slice < 1:
            x = resample(x, self._positions(x))
        if self.scaling:
            x = x * (1 + self.scaling * torch.randn(x.shape[0], 1, x.shape[2], device=x.device))
        if self.jitter:
            x = x + self.jitter * torch.randn_like(x)
        return x  # NaN padding stays NaN through every step

    def _positions(self, x: torch.Tensor) -> torch.Tensor:
        """Where each output step reads the input, in [0, length_i - 1] per series: [B, T]."""
        n, steps, _ = x.shape
        last = (series_lengths(x) - 1).clamp(min=1).float().unsqueeze(1)  # [B, 1]
        u = (torch.arange(steps, device=x.device) / last).clamp(max=1)  # [0, 1] along each series
        if self.time_warp:
            # Random speeds at a few knots, interpolated and integrated: a smooth monotone map
            # of [0, 1] onto itself, sampled on `steps` points and read at u.
            knots = 1 + self.time_warp * (2 * torch.rand(n, self.warp_knots, device=x.device) - 1)
            speed = torch.nn.functional.interpolate(
                knots.unsqueeze(1), size=steps, mode="linear", align_corners=True
            ).squeeze(1)
            warp = torch.cumsum(speed, 1) - speed[:, :1]
            warp = warp / warp[:, -1:].clamp(min=1e-6)
            u = _interpolate(warp, u * (steps - 1))
        if self.window_slice < 1:
            u = torch.rand(n, 1, device=x.device) * (1 - self.window_slice) + u * self.window_slice
        return u * last


def _interpolate(grid: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """`grid` [B, T] read at fractional indices `at` [B, T] by linear interpolation."""
    low = at.floor().long().clamp(max=grid.shape[1] - 1)
    high = (low + 1).clamp(max=grid.shape[1] - 1)
    frac = at - low
    return grid.gather(1, low) * (1 - frac) + grid.gather(1, high) * frac


def series_lengths(x: torch.Tensor) -> torch.Tensor:
    """Steps up to the last one with any observed value: [B] (padding is NaN at the end)."""
    seen = ~torch.isnan(x).all(dim=2)  # [B, T]
    steps = torch.arange(1, x.shape[1] + 1, device=x.device)
    return (seen * steps).amax(dim=1)


def resample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of each series at fractional `positions` [B, T], kept inside each
    series' length; steps past the length stay as they were (padding)."""
    lengths = series_lengths(x)
    low = positions.floor().long()
    high = (low + 1).minimum((lengths - 1).clamp(min=0).unsqueeze(1))
    frac = (positions - low).unsqueeze(2)
    index = low.unsqueeze(2).expand(-1, -1, x.shape[2])
    upper = high.unsqueeze(2).expand(-1, -1, x.shape[2])
    values = x.gather(1, index) * (1 - frac) + x.gather(1, upper) * frac
    inside = torch.arange(x.shape[1], device=x.device) < lengths.unsqueeze(1)
    return torch.where(inside.unsqueeze(2), values, x)
