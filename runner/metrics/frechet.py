"""Fréchet distance between two sets of feature vectors, through torchmetrics' FID metric."""

from __future__ import annotations

import torch
from torch import nn


class _Precomputed(nn.Module):
    """Identity "feature extractor": the features were computed beforehand by our classifier."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of Gaussians fitted to [N, D] rows."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"Expected [N, D] features of equal D, got {real.shape} and {fake.shape}.")
    from torchmetrics.image.fid import FrechetInceptionDistance  # only when samples are scored

    metric = FrechetInceptionDistance(
        feature=_Precomputed(real.shape[1]), normalize=False, sync_on_compute=False
    )
    metric.update(real.detach().double().cpu(), real=True)
    metric.update(fake.detach().double().cpu(), real=False)
    # Sampling noise can leave a tiny negative value for identical distributions.
    return max(float(metric.compute()), 0.0)
