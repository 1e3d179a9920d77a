"""Autoencoders: `ae` (MLP) and `deep_ae` (convolutional) share this class; sparse and
denoising variants subclass it."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from runner.models.base import RunnerModel, Target, inputs_of
from runner.models.blocks import (
    Activation,
    Dropout,
    Init,
    Normalization,
    family_norm,
    image_coders,
    image_pairs,
    init_weights,
)
from runner.models.code_metrics import score_codes
from runner.models.pca import PCA, fit_pca, reconstruction_mse

CodeActivation = Literal["none", "relu", "sigmoid"]
LinearPath = Literal["auto", "pca", "none"]
# The linear path's reconstruction is clamped to [EPS, 1 - EPS] before it enters logit space.
EPS = 1e-3


class Autoencoder(RunnerModel):
    """Encoder to a `latent_dim` code, decoder back to the image; outputs are in [0, 1].

    `arch="mlp"` flattens the image; `arch="conv"` uses stride-2 convolutions sized from the
    input shape. The reconstruction loss is per-pixel MSE or BCE on [0, 1] targets.

    `linear="pca"` (auto) runs a linear map between the image and the code beside the encoder and
    the decoder: PCA of the training images with `latent_dim` components, fitted before the first
    epoch and then fixed, while the networks' last layers start from zero. Training so starts
    from PCA's reconstruction and the networks learn what is left, on 1,000 images as on 50,000;
    a plain autoencoder on small data stays far above PCA (docs/models.md). `none`: the networks
    alone, as in the textbook.
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
        linear: LinearPath = "auto",
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.latent_dim = latent_dim
        self.recon_loss = recon_loss
        self.arch = arch
        self.linear = "pca" if linear == "auto" else linear
        normalization = family_norm(normalization, "none")
        # arch=conv: the convolutions straight to the code (`hidden_dims` are the MLP's).
        self.encoder, self.decoder, _ = image_coders(
            self.in_shape,
            latent_dim,
            arch,
            channels,
            hidden_dims if arch == "mlp" else (),
            activation,
            dropout,
            normalization,
            code=True,
        )
        self.code_activation = {"none": nn.Identity(), "relu": nn.ReLU(), "sigmoid": nn.Sigmoid()}[
            code_activation
        ]
        init_weights(self, init, activation)
        if self.linear == "pca":
            values = math.prod(self.in_shape)
            self.linear_encoder = nn.Linear(values, latent_dim).requires_grad_(False)
            self.linear_decoder = nn.Linear(latent_dim, values).requires_grad_(False)
            self._register_load_state_dict_pre_hook(self._without_linear_path)
        self._register_load_state_dict_pre_hook(_dense_layers_as_sequences)

    def _without_linear_path(self, state_dict, prefix, *args) -> None:
        """A run saved before the linear path existed loads as the networks alone."""
        if f"{prefix}linear_encoder.weight" not in state_dict and self.linear == "pca":
            self.linear = "none"
            del self.linear_encoder, self.linear_decoder

    # runner.sample draws codes from a Gaussian fitted to the test images' codes: a plain
    # autoencoder has no prior of its own.
    prior = "codes"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        if self.linear == "pca":
            code = code + self.linear_encoder(x.flatten(1))
        return self.code_activation(code)

    def on_fit_start(self, train, val, preprocess, steps_per_epoch: int) -> None:
        if self.linear == "pca":
            with torch.random.fork_rng(devices=[]):  # reading data must not shift the stream
                self.fit_linear_path(fit_pca(inputs_of(train, preprocess), self.latent_dim))

    @torch.no_grad()
    def fit_linear_path(self, pca: PCA) -> None:
        """The linear maps := `pca`, fixed; the encoder's and decoder's last layers := 0."""
        pca.copy_into(self.linear_encoder, self.linear_decoder)
        for network in (self.encoder, self.decoder):
            last = [
                m
                for m in network.modules()
                if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)
            ]
            nn.init.zeros_(last[-1].weight)
            nn.init.zeros_(last[-1].bias)

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
        out = self.decoder(z)
        if self.linear == "pca":
            linear = self.linear_decoder(z).view(len(z), *self.in_shape).float()
            out = out + torch.logit(linear.clamp(EPS, 1 - EPS)).to(out.dtype)
        return out

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

    def baseline_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the baselines reconstruct from (the denoising autoencoder: corrupted images)."""
        return x

    def baseline_components(self, test, preprocess) -> int:
        """How many principal components the PCA baseline gets: as many as the code has."""
        return self.latent_dim

    @torch.no_grad()
    def baselines(self, train, test, preprocess) -> dict[str, float]:
        """PCA with as many components (fitted on the training split) and the mean training
        image, both scored on the test split as the model is."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            k = self.baseline_components(test, preprocess)
            pca = fit_pca(inputs_of(train, preprocess), k)
            pairs = [(self.baseline_inputs(x).cpu(), x.cpu()) for x in inputs_of(test, preprocess)]
        mean_only = PCA(pca.mean, pca.components[:, :0])
        return {
            "pca_mse": reconstruction_mse(pca, pairs),
            "pca_components": float(k),
            "mean_image_mse": reconstruction_mse(mean_only, pairs),
        }

    targets = (Target("recon_mse", "pca_mse", "PCA with as many components as the code"),)

    @torch.no_grad()
    def code_metrics(self, train, test, preprocess) -> dict[str, float]:
        """The probes on the codes and on PCA's and the denoising of the fixed noise
        (runner.models.code_metrics); `recon_mse` is the test pass's, the loss's own number."""
        return score_codes(self.encode_images, self.decode_images, train, test, preprocess)

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs with their reconstructions beside them."""
        return {"reconstructions": image_pairs(x, self(x))}


def _dense_layers_as_sequences(state_dict, prefix, *args) -> None:
    """arch=conv runs saved before the autoencoders shared `image_coders` with the VAE held the
    code's linear layers bare (`encoder.2.weight`); they now sit in an MLP
    (`encoder.2.0.weight`)."""
    for old, new in (("encoder.2.", "encoder.2.0."), ("decoder.0.", "decoder.0.0.")):
        for name in ("weight", "bias"):
            key = f"{prefix}{old}{name}"
            if key in state_dict:
                state_dict[f"{prefix}{new}{name}"] = state_dict.pop(key)


def autoencoder_arguments(values: dict, **changed) -> dict:
    """The `Autoencoder` arguments among a subclass's `locals()`, with `changed` ones replaced:
    subclasses spell out their whole signature (start-up checks read it) and pass the rest on."""
    names = inspect.signature(Autoencoder.__init__).parameters
    return {**{k: v for k, v in values.items() if k in names and k != "self"}, **changed}
