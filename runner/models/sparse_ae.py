"""Sparse autoencoder: a penalty keeps most code units near zero for each input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt

from runner.models.autoencoder import Autoencoder, autoencoder_arguments
from runner.models.base import Target, inputs_of
from runner.models.blocks import Activation, Dropout, Init, Normalization


class SparseAutoencoder(Autoencoder):
    """`sparsity="l1"`: L1 on ReLU codes. `sparsity="kl"`: KL(rho || mean activation) on sigmoid
    codes, the classic formulation with target rate `sparsity_target`.

    The reconstruction error is a mean over the image's values, so the penalty is counted per
    input value too (`sparsity_weight * penalty / values`): the balance between the two, and how
    many units stay active, then hold for 8x8 digits and 32x32 colour images alike (with one
    weight for both, the larger images' codes all died).

    Logs the penalty, the mean code activation and the fraction of near-zero activations.
    """

    NEAR_ZERO = 0.01

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: PositiveInt = 64,
        sparsity: Literal["l1", "kl"] = "l1",
        sparsity_weight: NonNegativeFloat = 0.05,  # per input value
        sparsity_target: Annotated[float, Field(gt=0, lt=1)] = 0.05,
        arch: Literal["mlp", "conv"] = "mlp",
        hidden_dims: Sequence[int] = (256,),
        channels: Sequence[int] = (32, 64),
        activation: Activation = "relu",
        init: Init = "default",
        dropout: Dropout = 0.0,
        normalization: Normalization = "none",
        recon_loss: Literal["mse", "bce"] = "mse",
    ) -> None:
        # No linear path: PCA's dense codes are what the sparsity penalty works against.
        super().__init__(
            **autoencoder_arguments(
                locals(), code_activation="relu" if sparsity == "l1" else "sigmoid"
            ),
            linear="none",
        )
        self.sparsity = sparsity
        self.sparsity_weight = sparsity_weight
        self.sparsity_target = sparsity_target

    def penalty(self, code: torch.Tensor) -> torch.Tensor:
        if self.sparsity == "l1":
            return code.abs().sum(dim=1).mean()
        rho = self.sparsity_target
        rho_hat = code.mean(dim=0).clamp(1e-6, 1 - 1e-6)
        kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
        return kl.sum()

    targets = (
        Target("recon_mse", "pca_mse", "PCA with as many components as the code has active units"),
    )

    def diagnose(self, metrics: dict[str, float]) -> list[str]:
        lines = super().diagnose(metrics)
        if metrics.get("test/frac_near_zero", 0.0) >= 0.999:
            lines.append(
                "Dead code: every code unit is ~0 for every test image (test/frac_near_zero=1), "
                "so the decoder draws one image for all. Lower model.sparsity_weight."
            )
        return lines

    @torch.no_grad()
    def baseline_components(self, test, preprocess) -> int:
        """The mean number of code units active (above NEAR_ZERO) per test image, at least 1:
        a sparse code wider than the image is compared with PCA of its active size."""
        active, count = 0.0, 0
        for x in inputs_of(test, preprocess):
            active += float((self.encode(x).abs() >= self.NEAR_ZERO).sum())
            count += len(x)
        return max(1, round(active / max(count, 1)))

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        code = self.encode(x).float()
        losses = self.reconstruction_losses(self.decode_logits(code), x)
        penalty = self.penalty(code)
        values = x[0].numel()
        losses["loss"] = losses["loss"] + self.sparsity_weight * penalty / values
        losses["sparsity_penalty"] = penalty.detach()
        losses["mean_activation"] = code.detach().mean()
        losses["frac_near_zero"] = (code.detach().abs() < self.NEAR_ZERO).float().mean()
        return losses
