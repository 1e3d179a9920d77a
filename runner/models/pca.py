"""Principal component analysis in torch: the linear path of the autoencoders (fitted once, then
fixed) and the baseline every autoencoder must beat (PCA with as many components as its code)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

# Up to this many values per example the covariance is summed exactly (D x D float64); above it
# a randomized SVD of a sample of at most SAMPLE_VALUES numbers finds the top components.
EXACT_MAX_VALUES = 4096
SAMPLE_VALUES = 50_000_000


@dataclass
class PCA:
    mean: torch.Tensor  # [D]
    components: torch.Tensor  # [D, k], orthonormal columns, largest variance first

    @property
    def k(self) -> int:
        return self.components.shape[1]

    def encode(self, rows: torch.Tensor) -> torch.Tensor:
        c = self.components.to(rows)
        return (rows - self.mean.to(rows)) @ c

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.components.to(codes).T + self.mean.to(codes)

    def reconstruct(self, rows: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(rows))

    @torch.no_grad()
    def copy_into(self, encoder: nn.Linear, decoder: nn.Linear) -> None:
        """Make `encoder` (D -> k) and `decoder` (k -> D) this PCA's maps, frozen."""
        like = encoder.weight
        encoder.weight.copy_(self.components.T.to(like))
        encoder.bias.copy_((-self.components.T @ self.mean).to(like))
        decoder.weight.copy_(self.components.to(like))
        decoder.bias.copy_(self.mean.to(like))
        encoder.requires_grad_(False)
        decoder.requires_grad_(False)


@torch.no_grad()
def fit_pca(batches: Iterable[torch.Tensor], k: int) -> PCA:
    """The top `k` principal components of the rows of `batches` ([N, D] each). Components past
    the data's rank (a code wider than the input) are zero columns."""
    count, total, outer, kept = 0, None, None, []
    for rows in batches:
        rows = rows.flatten(1).detach().double().cpu()
        d = rows.shape[1]
        if d <= EXACT_MAX_VALUES:
            if total is None:
                total, outer = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d).double()
            total, outer = total + rows.sum(0), outer + rows.T @ rows
        elif (count + len(rows)) * d <= SAMPLE_VALUES or not kept:
            kept.append(rows.float())
        count += len(rows)
    if total is not None:
        mean = total / count
        _, vectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))  # ascending
        top = vectors.flip(1)
    else:
        sample = torch.cat(kept)
        mean = sample.double().mean(0)
        centered = sample - mean.float()
        q = min(k + 10, *centered.shape)
        generator_state = torch.random.get_rng_state()  # fitting must not shift the run's stream
        torch.manual_seed(0)
        _, _, v = torch.svd_lowrank(centered, q=q, niter=4)
        torch.random.set_rng_state(generator_state)
        top = v.double()
    d = mean.shape[0]
    components = torch.zeros(d, k, dtype=torch.float64)
    n = min(k, top.shape[1], d)
    components[:, :n] = top[:, :n]
    return PCA(mean.float(), components.float())


@torch.no_grad()
def reconstruction_mse(pca: PCA, rows: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean squared error of PCA's reconstruction of `inputs` against `targets` (pairs [N, ...]),
    per value: for a denoising baseline the inputs are the corrupted images."""
    total, count = 0.0, 0
    for inputs, targets in rows:
        recon = pca.reconstruct(inputs.flatten(1).float())
        total += float(((recon - targets.flatten(1).float()) ** 2).sum())
        count += targets.numel()
    return total / max(count, 1)
