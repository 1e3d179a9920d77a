"""Denoising autoencoder: corrupt the input, reconstruct the clean image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from runner.models.autoencoder import Autoencoder, LinearPath, autoencoder_arguments
from runner.models.base import Target
from runner.models.blocks import Activation, Dropout, Init, Normalization, image_pairs
from runner.models.code_metrics import score_codes
from runner.models.noise import FIXED_NOISE, NoiseType, corrupt


class DenoisingAutoencoder(Autoencoder):
    """Trained on corrupted inputs against clean targets.

    Logs `noisy_mse` (corrupted vs clean) beside `recon_mse` (output vs clean): the gap is what
    the model removes.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: PositiveInt = 32,
        noise_type: NoiseType = "gaussian",
        noise_level: Annotated[float, Field(ge=0, le=1)] = 0.3,  # std, or probability
        arch: Literal["mlp", "conv"] = "conv",
        hidden_dims: Sequence[int] = (256, 128),
        channels: Sequence[int] = (32, 64),
        activation: Activation = "relu",
        init: Init = "default",
        dropout: Dropout = 0.0,
        normalization: Normalization = "none",
        recon_loss: Literal["mse", "bce"] = "mse",
        linear: LinearPath = "auto",
    ) -> None:
        super().__init__(**autoencoder_arguments(locals(), code_activation="none"))
        self.noise_type = noise_type
        self.noise_level = noise_level

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        noisy = corrupt(x, self.noise_type, self.noise_level)
        losses = self.reconstruction_losses(self.decode_logits(self.encode(noisy)), x)
        losses["noisy_mse"] = F.mse_loss(noisy, x).detach()
        return losses

    targets = (
        Target("recon_mse", "noisy_mse", "the noisy input's own error", factor=0.5),
        Target(
            "recon_mse", "pca_mse", "PCA of the noisy input with as many components as the code"
        ),
    )

    @torch.no_grad()
    def code_metrics(self, train, test, preprocess) -> dict[str, float]:
        """As every autoencoder's, but its test pass's `recon_mse` and `noisy_mse` are of its own
        noise (its targets compare them): the error on clean images is `clean_recon_mse`, and the
        fixed noise's `noisy_mse` replaces its own only where the two noises are one (default)."""
        metrics = score_codes(
            self.encode_images, self.decode_images, train, test, preprocess, recon=True
        )
        metrics["clean_recon_mse"] = metrics.pop("recon_mse")
        if (self.noise_type, self.noise_level) != FIXED_NOISE:
            del metrics["noisy_mse"]
        return metrics

    def baseline_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return corrupt(x, self.noise_type, self.noise_level)

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Noisy | denoised | clean, side by side."""
        noisy = corrupt(x, self.noise_type, self.noise_level)
        return {"denoising": image_pairs(noisy, self(noisy), x)}
