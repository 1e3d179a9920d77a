"""Autoencoders: `ae` (MLP) and `deep_ae` (convolutional) share this class; sparse and
denoising variants subclass it."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from runner.models.base import RunnerModel
from runner.models.blocks import (
    Activation,
    Dropout,
    Init,
    Normalization,
    conv_decoder,
    conv_encoder,
    conv_sizes,
    family_norm,
    image_pairs,
    init_weights,
    make_activation,
    mlp,
)

CodeActivation = Literal["none", "relu", "sigmoid"]


class Autoencoder(RunnerModel):
    """Encoder to a `latent_dim` code, decoder back to the image; outputs are in [0, 1].

    `arch="mlp"` flattens the image; `arch="conv"` uses stride-2 convolutions sized from the
    input shape. The reconstruction loss is per-pixel MSE or BCE on [0, 1] targets.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: PositiveInt = 32,
        arch: Literal["mlp", "conv"] = "mlp",
        hidden_dims: Sequence[int] = (256, 128),
        channels: Sequence[int] = (32, 64),
        activation: Activation = "relu",
        code_activation: CodeActivation = "none",
        init: Init = "default",
        dropout: Dropout = 0.0,
        normalization: Normalization = "none",
        recon_loss: Literal["mse", "bce"] = "mse",
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.latent_dim = latent_dim
        self.recon_loss = recon_loss
        self.arch = arch
        normalization = family_norm(normalization, "none")
        c, h, w = self.in_shape
        if arch == "mlp":
            dims = [c * h * w, *hidden_dims, latent_dim]
            self.encoder = nn.Sequential(
                nn.Flatten(), mlp(dims, activation, dropout, normalization)
            )
            self.decoder = nn.Sequential(
                mlp(dims[::-1], activation, dropout, normalization), nn.Unflatten(1, self.in_shape)
            )
        else:
            sizes = conv_sizes(h, w, len(channels))
            fh, fw = sizes[-1]
            flat = channels[-1] * fh * fw
            self.encoder = nn.Sequential(
                conv_encoder(c, channels, activation, dropout, normalization),
                nn.Flatten(),
                nn.Linear(flat, latent_dim),
            )
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, flat),
                make_activation(activation),
                nn.Unflatten(1, (channels[-1], fh, fw)),
                conv_decoder(c, list(channels)[::-1], sizes[::-1], activation, normalization),
            )
        self.code_activation = {"none": nn.Identity(), "relu": nn.ReLU(), "sigmoid": nn.Sigmoid()}[
            code_activation
        ]
        init_weights(self, init, activation)

    # runner.sample draws codes from a Gaussian fitted to the test images' codes: a plain
    # autoencoder has no prior of its own.
    prior = "codes"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.code_activation(self.encoder(x))

    def conv_maps(self, x: torch.Tensor) -> torch.Tensor | None:
        """arch=conv: the encoder's last convolutional maps [N, C, H, W], where transfer runs can
        cut it (model.cut=trunk or pooled); None for arch=mlp, which has none."""
        return self.encoder[0](x) if self.arch == "conv" else None

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> codes (what runner.sample interpolates between)."""
        return self.encode(x)

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> images in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z).float())

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1]."""
        return torch.sigmoid(self.decode_logits(self.encode(x)))

    def reconstruction_losses(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        logits = logits.float()
        recon = torch.sigmoid(logits)
        mse = F.mse_loss(recon, target)
        if self.recon_loss == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            loss = mse
        return {"loss": loss, "recon_mse": mse.detach()}

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.reconstruction_losses(self.decode_logits(self.encode(x)), x)

    @torch.no_grad()
    def on_test_end(self, loader, preprocess, logger) -> dict[str, float]:
        """Test-set codes with labels and thumbnails go to TensorBoard's embedding projector."""
        from runner.metrics import log_latent_projector

        log_latent_projector(self.encode, loader, preprocess, logger, self.class_names)
        return {}

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs with their reconstructions beside them."""
        return {"reconstructions": image_pairs(x, self(x))}


def autoencoder_arguments(values: dict, **changed) -> dict:
    """The `Autoencoder` arguments among a subclass's `locals()`, with `changed` ones replaced:
    subclasses spell out their whole signature (start-up checks read it) and pass the rest on."""
    names = inspect.signature(Autoencoder.__init__).parameters
    return {**{k: v for k, v in values.items() if k in names and k != "self"}, **changed}
