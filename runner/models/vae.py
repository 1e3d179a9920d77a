"""Variational autoencoder: the code is a Gaussian q(z|x) sampled by reparameterisation; the loss is
the negative ELBO in nats per image (reconstruction + beta * KL)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from runner.models import blocks
from runner.models.base import RunnerModel, coverage_collapse
from runner.models.code_metrics import score_codes

LOG_2PI = math.log(2 * math.pi)
log = logging.getLogger(__name__)
# Below this KL (nats per image) the code carries almost nothing: posterior collapse.
COLLAPSED_KL = 0.5


class VAE(RunnerModel):
    """Convolutional (or MLP) VAE with a Bernoulli or Gaussian decoder.

    `arch="conv"`: stride-2 convolutions (`channels`), then the dense `hidden_dims`, to the mean
    and log-variance of the code; the decoder mirrors the encoder. `arch="mlp"`: dense layers only.

    Bernoulli targets are dynamically binarised (a fresh Bernoulli(x) sample every training batch;
    validation and test use one fixed sample so their numbers are comparable). Logged in nats per
    image: `recon`, `kl`, `neg_elbo`, and `active_units` (latent dimensions whose posterior mean
    varies across the batch). Test adds `nll`, the importance-sampled negative log-likelihood
    (`nll_samples` importance samples per image, over the first `nll_images` test images or all of
    them; K=1000 costs a thousand decoder passes per image, minutes on a CPU). Given
    `fd_classifier` (a `cnn` run folder), samples are scored by the loop's `scorer` (`test/fd`,
    `test/fd_floor`, `test/class_coverage`, `test/confidence`).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: PositiveInt = 16,
        beta: NonNegativeFloat = 1.0,
        kl_warmup_epochs: NonNegativeInt = 0,
        free_bits: NonNegativeFloat = 0.0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        binarize: bool = True,
        # the networks (runner.models.blocks.image_coders, as the autoencoders')
        arch: Literal["conv", "mlp"] = "conv",
        channels: Sequence[int] = (32, 64),
        hidden_dims: Sequence[int] = (512, 256),
        activation: blocks.Activation = "relu",
        init: blocks.Init = "default",
        dropout: blocks.Dropout = 0.0,
        normalization: blocks.Normalization = "none",
        nll_samples: PositiveInt = 100,
        nll_images: PositiveInt | None = 1000,
        fd_classifier: str | None = None,
        fd_samples: Annotated[int, Field(ge=2)] = 10_000,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.latent_dim = latent_dim
        self.beta = beta
        self.kl_weight = beta if kl_warmup_epochs == 0 else 0.0  # KL warm-up starts at 0
        self.kl_warmup_epochs = kl_warmup_epochs
        self.free_bits = free_bits
        self.likelihood = likelihood
        self.arch = arch
        self.binarize = binarize and likelihood == "bernoulli"
        self.nll_samples = nll_samples
        self.nll_images = nll_images
        self.fd_classifier = fd_classifier
        self.fd_samples = fd_samples
        normalization = blocks.family_norm(normalization, "none")
        # Convolutions (arch=conv), then the `hidden_dims` dense layers (none: straight to the
        # posterior); the decoder mirrors them.
        self.encoder, self.decoder, flat = blocks.image_coders(
            self.in_shape,
            latent_dim,
            arch,
            channels,
            hidden_dims,
            activation,
            dropout,
            normalization,
            code=False,
        )
        self.posterior = nn.Linear(flat, 2 * latent_dim)  # mean and log-variance
        self.log_sigma = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" else None
        blocks.init_weights(self, init, activation)
        # Fixed prior noise: the same samples every epoch, so the grids show progress.
        self.register_buffer(
            "fixed_noise", torch.randn(64, latent_dim, generator=torch.Generator().manual_seed(0))
        )

    # -- the model ----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.posterior(self.encoder(x)).float().chunk(2, dim=1)
        return mean, log_var.clamp(-12, 8)

    def conv_maps(self, x: torch.Tensor) -> torch.Tensor | None:
        """arch=conv: the encoder's last convolutional maps [N, C, H, W], where transfer runs can
        cut it (model.cut=trunk or pooled); None for arch=mlp, which has none."""
        return self.encoder[0](x) if self.arch == "conv" else None

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image in [0, 1]."""
        logits = self.decode_logits(z)
        return torch.sigmoid(logits) if self.likelihood == "bernoulli" else logits.clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        device = self.fixed_noise.device
        return self.decode(torch.randn(n, self.latent_dim, device=device))

    prior = "normal"  # runner.sample draws codes from N(0, I)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the posterior means."""
        return self.encode(x)[0]

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> mean images in [0, 1]."""
        return self.decode(z)

    def log_likelihood(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image, in nats."""
        if self.likelihood == "bernoulli":
            return (
                -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
                .flatten(1)
                .sum(1)
            )
        log_sigma = self.log_sigma
        per_pixel = -0.5 * (((target - logits) / log_sigma.exp()) ** 2 + LOG_2PI) - log_sigma
        return per_pixel.flatten(1).sum(1)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        if not self.binarize:
            return x
        if self.training:
            return torch.bernoulli(x)
        generator = torch.Generator(x.device).manual_seed(1234)
        return (torch.rand(x.shape, generator=generator, device=x.device) < x).float()

    # -- what the loop calls ------------------------------------------------------------------
    def on_train_epoch_start(self, epoch: int) -> None:
        if self.kl_warmup_epochs:
            self.kl_weight = self.beta * min(1.0, (epoch + 1) / self.kl_warmup_epochs)

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = self.target(x)
        mean, log_var = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decode_logits(z)
        recon = -self.log_likelihood(logits, target)
        kl_per_unit = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)
        kl = kl_per_unit.sum(1)
        weight = self.kl_weight if self.training else self.beta
        penalised = kl.mean()
        if self.free_bits and self.training:
            # Free bits: no pressure on a unit whose batch-mean KL is below `free_bits` nats.
            penalised = kl_per_unit.mean(0).clamp(min=self.free_bits).sum()
        return {
            "loss": recon.mean() + weight * penalised,
            "recon": recon.detach().mean(),
            "kl": kl.detach().mean(),
            "neg_elbo": (recon + kl).detach().mean(),
            "active_units": (mean.detach().var(dim=0) > 0.01).float().sum(),
            "recon_mse": self.reconstruction_mse(x, logits.detach(), mean.detach()),
        }

    @torch.no_grad()
    def reconstruction_mse(
        self, x: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor
    ) -> torch.Tensor:
        """Per-pixel MSE against the clean image, as the autoencoders report it: of the decoded
        mean code in evaluation (one more decoder pass), of the sampled code's decoding (free) in
        training."""
        if self.training:
            decoded = (
                torch.sigmoid(logits) if self.likelihood == "bernoulli" else logits.clamp(0, 1)
            )
        else:
            decoded = self.decode(mean)
        return F.mse_loss(decoded, x.float())

    @torch.no_grad()
    def importance_sampled_nll(
        self, x: torch.Tensor, samples: int, chunk: int = 100
    ) -> torch.Tensor:
        """-log p(x) ~ -log mean_k p(x, z_k) / q(z_k | x), z_k ~ q(z | x); nats per image."""
        target = self.target(x)
        mean, log_var = self.encode(x)
        std = (0.5 * log_var).exp()
        log_weights = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = torch.randn(k, *mean.shape, device=x.device)
            z = mean + eps * std  # [k, B, D]
            logits = self.decode_logits(z.flatten(0, 1))
            log_px = self.log_likelihood(logits, target.repeat(k, 1, 1, 1)).view(k, -1)
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + LOG_2PI + log_var).sum(-1)
            log_weights.append(log_px + log_pz - log_qz)
        log_w = torch.cat(log_weights)
        return -(torch.logsumexp(log_w, dim=0) - math.log(samples))

    def diagnose(self, metrics: dict[str, float]) -> list[str]:
        lines = super().diagnose(metrics)
        kl = metrics.get("test/kl")
        if kl is not None and kl < COLLAPSED_KL:
            lines.append(
                f"Posterior collapse: test/kl={kl:.3g} nats per image "
                f"({metrics.get('test/active_units', 0):.0f} active units): the decoder ignores "
                "the code. Lower model.beta or raise model.kl_warmup_epochs."
            )
        collapse = coverage_collapse(metrics, len(self.class_names or []))
        return lines + ([collapse] if collapse else [])

    @torch.no_grad()
    def on_test_end(self, loader, preprocess, logger) -> dict[str, float]:
        metrics = {"test/nll": self.test_nll(loader, preprocess)}
        if self.fd_classifier and self.scorer is not None:
            metrics.update(
                self.scorer.scores(
                    self.fd_classifier, self.sample, self.fd_samples, loader, preprocess
                )
            )
        return metrics

    @torch.no_grad()
    def code_metrics(self, train, test, preprocess) -> dict[str, float]:
        """The probes on the posterior means and on PCA's codes, and the per-pixel MSE of the
        mean code's decoding of the test image under the fixed noise
        (runner.models.code_metrics); `recon_mse`, of the clean image, is the test pass's."""
        return score_codes(self.encode_images, self.decode_images, train, test, preprocess)

    @torch.no_grad()
    def test_nll(self, loader, preprocess) -> float:
        """Mean importance-sampled NLL (nats) over the first `nll_images` test images (or all)."""
        device = self.fixed_noise.device
        total, count = 0.0, 0
        log.info(
            "Importance-sampled NLL: %d samples for each of the first %s test images "
            "(model.nll_samples, model.nll_images).",
            self.nll_samples,
            self.nll_images or "all",
        )
        batches = len(loader) if self.nll_images is None else None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)  # the same estimate every time for one checkpoint
            for batch in self.progress(loader, desc="test nll", total=batches):
                x, _ = preprocess(batch, train=False)
                if self.nll_images is not None:
                    x = x[: self.nll_images - count]
                total += float(self.importance_sampled_nll(x, self.nll_samples).sum())
                count += len(x)
                if self.nll_images is not None and count >= self.nll_images:
                    break
        return total / max(count, 1)

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        from torchvision.utils import make_grid

        mean, _ = self.encode(x)
        alphas = torch.linspace(0, 1, 10, device=x.device).view(-1, 1)
        path = (1 - alphas) * mean[0] + alphas * mean[1]
        pictures = {
            "reconstructions": blocks.image_pairs(x, self.decode(mean)),
            "samples": make_grid(
                self.decode(self.fixed_noise).cpu(), nrow=8, padding=1, pad_value=1.0
            ),
            "interpolation": make_grid(self.decode(path).cpu(), nrow=10, padding=1, pad_value=1.0),
        }
        if self.latent_dim == 2:
            from runner.models.pictures import latent_scatter

            pictures["latent_space"] = latent_scatter(mean.cpu(), y.cpu())
        return pictures
