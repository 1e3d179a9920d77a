"""GAN: a DCGAN-style generator fed random noise against a discriminator that labels real images 1
and generated ones 0, trained in turns. The family owns its two optimisers and its step."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import MappingProxyType
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn
from torch.nn.utils import parametrizations
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from runner.errors import RunnerError, TrainingDiverged
from runner.models.base import (
    LossFunction,
    Recipe,
    RunnerModel,
    Target,
    Wrap,
    coverage_collapse,
)
from runner.models.blocks import (
    Dropout,
    Init,
    Normalization,
    Upsample,
    conv_decoder,
    conv_encoder,
    conv_sizes,
    init_weights,
    norm_1d,
)

log = logging.getLogger(__name__)

Loss = Literal["bce", "minimax", "hinge", "wgan_gp"]


class MinibatchStd(nn.Module):
    """Appends one feature map: the batch's standard deviation, averaged over features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = (x.float().var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        return torch.cat([x, spread.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])], dim=1)


def ema_with_warm_up(decay: float):
    """`AveragedModel`'s update for an exponential moving average whose decay ramps up as
    (1 + n) / (10 + n) to `decay`: early on the generator changes fast, and a full-strength
    average would cling to its random start for thousands of steps."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        n = float(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1.0 + n) / (10.0 + n)))(averaged, current, n_averaged)

    return update


def gan_norms(
    normalization: Normalization, loss: Loss, spectral_norm: bool
) -> tuple[Normalization, Normalization]:
    """(generator, discriminator) normalisation. `auto` is DCGAN's batch norm in both, except in
    a critic with a gradient penalty or spectral norm; any other value sets both networks."""
    if normalization == "auto":
        return "batch", "none" if loss == "wgan_gp" or spectral_norm else "batch"
    if normalization == "batch" and loss == "wgan_gp":
        raise RunnerError(
            "regularization.normalization=batch cannot apply to the GAN with model.loss=wgan_gp: "
            "batch norm in the critic mixes the samples of a batch and breaks the per-sample "
            "gradient penalty. Set regularization.normalization=layer or none (or auto: batch "
            "norm in the generator, none in the critic)."
        )
    return normalization, normalization


class GAN(RunnerModel):
    """Losses: `bce` (non-saturating generator loss), `minimax` (the original log(1 - D(G(z)))),
    `hinge`, and `wgan_gp` (critic with gradient penalty, `n_critic` critic steps per G step).

    Logs `d_loss`, `g_loss`, `d_real` and `d_fake` (mean D output on real and generated images:
    probabilities for bce/minimax, raw scores otherwise) and shows samples from fixed noise.

    The discriminator halves the image with each of its `channels`; the generator mirrors
    `generator_channels` (default: the same widths) back up to the image size. A discriminator
    deep enough to see a whole digit (four levels on 28x28) judges shapes, not strokes.

    `ema_decay` keeps an exponential moving average of the generator's weights, which draws the
    samples (shown, scored and tested): it smooths out the last steps' oscillation. `spectral_norm`
    constrains the discriminator's layers instead of batch-normalising them. `minibatch_std` shows
    the discriminator how varied its batch is (Karras et al., 2018), so that a generator drawing
    the same few digits is caught. Given `fd_classifier` (a `cnn` run folder), every validation
    pass adds `val/fd`, the Fréchet distance of `val_fd_samples` samples to the validation images:
    the metric to pick the best epoch by. Both networks get an optimiser from the `optimizer`
    group; `generator_lr` and `discriminator_lr` give each its own learning rate.
    """

    # Adam as in SAGAN/BigGAN for the hinge loss with spectral norm: lr 2e-4, betas (0, 0.9).
    recipe = Recipe(
        steps=2000, batch_size=64, optimizer=MappingProxyType({"lr": 2e-4, "betas": (0.0, 0.9)})
    )
    targets = (
        Target("fd", "fd_floor", "the Fréchet distance of real images to real ones", factor=10),
    )

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: PositiveInt = 64,
        channels: Sequence[int] = (64, 128, 256),
        generator_channels: Sequence[int] | None = None,
        loss: Loss = "bce",
        n_critic: PositiveInt = 1,
        label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0,
        gp_weight: NonNegativeFloat = 10.0,
        init: Init = "default",
        dropout: Dropout = 0.0,
        normalization: Normalization = "auto",
        upsample: Upsample = "transposed",
        ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None,
        spectral_norm: bool = False,
        minibatch_std: bool = False,
        collapse_patience: PositiveInt = 3,
        fd_classifier: str | None = None,
        fd_samples: Annotated[int, Field(ge=2)] = 10_000,
        val_fd_samples: Annotated[int, Field(ge=0)] = 2_000,
        generator_lr: PositiveFloat | None = None,
        discriminator_lr: PositiveFloat | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.latent_dim = latent_dim
        self.loss_type = loss
        self.n_critic = n_critic if loss == "wgan_gp" else 1
        self.label_smoothing = label_smoothing
        self.gp_weight = gp_weight
        self.collapse_patience = collapse_patience
        self.fd_classifier = fd_classifier
        self.fd_samples = fd_samples
        self.val_fd_samples = val_fd_samples
        self.learning_rates = {"g": generator_lr, "d": discriminator_lr}
        c, h, w = self.in_shape
        g_channels = list(generator_channels or channels)
        sizes = conv_sizes(h, w, len(g_channels))
        gh, gw = sizes[-1]
        g_norm, d_norm = gan_norms(normalization, loss, spectral_norm)
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, g_channels[-1] * gh * gw),
            *norm_1d(g_norm, g_channels[-1] * gh * gw),
            nn.ReLU(),
            nn.Unflatten(1, (g_channels[-1], gh, gw)),
            conv_decoder(c, g_channels[::-1], sizes[::-1], "relu", g_norm, upsample),
            nn.Tanh(),
        )
        fh, fw = conv_sizes(h, w, len(channels))[-1]
        extra = 1 if minibatch_std else 0
        # Dropout regularises the discriminator only: noise in the generator's layers would just
        # be more input noise, while a discriminator that memorises the real set stops teaching.
        self.discriminator = nn.Sequential(
            conv_encoder(c, channels, "leaky_relu", dropout, d_norm),
            *([MinibatchStd()] if minibatch_std else []),
            nn.Flatten(),
            nn.Linear((channels[-1] + extra) * fh * fw, 1),
        )
        init_weights(self, init, "leaky_relu")
        if spectral_norm:
            for m in self.discriminator.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    parametrizations.spectral_norm(m)
        self.generator_ema = (
            AveragedModel(
                self.generator, multi_avg_fn=ema_with_warm_up(ema_decay), use_buffers=True
            )
            if ema_decay
            else None
        )
        self.register_buffer(
            "fixed_noise", torch.randn(64, latent_dim, generator=torch.Generator().manual_seed(0))
        )
        # Epochs in a row with the discriminator loss pinned at ~0 (kept in checkpoints).
        self.register_buffer("pinned_epochs", torch.zeros((), dtype=torch.long))

    def distribute(self, wrap: Wrap) -> None:
        """Two DDP wrappers: the generator, and the discriminator's loss (two D passes and the
        gradient penalty in one synchronised forward). The generator's loss goes through the
        bare discriminator, so its backward all-reduces only the generator's gradients."""
        self.parallel = {
            "generator": wrap(self.generator),
            "d_loss": wrap(LossFunction(self.d_loss, self.discriminator)),
        }

    # -- generation ---------------------------------------------------------------------------
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (what D sees), from the generator being trained."""
        generator = self.parallel.get("generator") if self.training else None
        return (generator or self.generator)(z)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Images in [0, 1], from the averaged generator when there is one."""
        return self.draw(torch.randn(n, self.latent_dim, device=self.fixed_noise.device))

    prior = "normal"  # runner.sample draws noise from N(0, I)

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Noise -> images in [0, 1], from the averaged generator when there is one."""
        return self.draw(z)

    @torch.no_grad()
    def draw(self, z: torch.Tensor) -> torch.Tensor:
        generator = self.generator_ema if self.generator_ema is not None else self.generator
        return (generator(z) + 1) / 2

    # -- losses -------------------------------------------------------------------------------
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        l_real = self.discriminator(real).float().squeeze(1)
        l_fake = self.discriminator(fake).float().squeeze(1)
        if self.loss_type in ("bce", "minimax"):
            target = torch.full_like(l_real, 1.0 - self.label_smoothing)
            loss = F.binary_cross_entropy_with_logits(
                l_real, target
            ) + F.binary_cross_entropy_with_logits(l_fake, torch.zeros_like(l_fake))
            shown = (torch.sigmoid(l_real), torch.sigmoid(l_fake))
        elif self.loss_type == "hinge":
            loss = F.relu(1 - l_real).mean() + F.relu(1 + l_fake).mean()
            shown = (l_real, l_fake)
        else:
            loss = (
                l_fake.mean() - l_real.mean() + self.gp_weight * self.gradient_penalty(real, fake)
            )
            shown = (l_real, l_fake)
        return loss, {"d_real": shown[0].detach().mean(), "d_fake": shown[1].detach().mean()}

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        l_fake = self.discriminator(fake).float().squeeze(1)
        if self.loss_type == "bce":  # non-saturating: maximise log D(G(z))
            return F.binary_cross_entropy_with_logits(l_fake, torch.ones_like(l_fake))
        if self.loss_type == "minimax":  # minimise log(1 - D(G(z))) = -softplus(l)
            return -F.softplus(l_fake).mean()
        return -l_fake.mean()

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = self.discriminator(mixed).float().sum()
        (grad,) = torch.autograd.grad(scores, mixed, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    # -- what the loop calls ------------------------------------------------------------------
    def configure_optimizers(self, make_optimizer) -> dict[str, torch.optim.Optimizer]:
        """One optimiser per network, from the same configured partial; `generator_lr` and
        `discriminator_lr` replace its learning rate (two time-scales, TTUR)."""
        networks = {"g": self.generator, "d": self.discriminator}
        return {
            name: make_optimizer(
                net.parameters(),
                **({"lr": self.learning_rates[name]} if self.learning_rates[name] else {}),
            )
            for name, net in networks.items()
        }

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """val/fd exists only with a classifier to measure it in; one sample has no spread."""
        monitored = {cfg.optimized_metric, cfg.regularization.early_stopping.monitor}
        if "val/fd" in monitored and not cfg.model.get("fd_classifier"):
            raise RunnerError(
                "val/fd (the Fréchet distance of samples to the validation images) is monitored, "
                "but it is only measured with model.fd_classifier=<the run folder of a cnn "
                "trained on the same dataset, e.g. experiment=cnn_mnist>. Pass one, or monitor "
                "another metric (optimized_metric=val/g_loss)."
            )
        if cfg.model.get("val_fd_samples") == 1:
            raise RunnerError(
                "model.val_fd_samples=1 is out of range: expected 0 (off) or an integer >= 2 "
                "(a Fréchet distance needs the samples' spread)."
            )

    def training_step(self, batch, optimizers, step) -> dict[str, torch.Tensor]:
        real = batch[0] * 2 - 1
        n = real.shape[0]
        for i in range(self.n_critic):
            last = i == self.n_critic - 1
            # The last critic step's fakes also train the generator (as in the DCGAN reference
            # code): one generator forward pass per step instead of two.
            with step.autocast(), torch.set_grad_enabled(last):
                fake = self.generate(torch.randn(n, self.latent_dim, device=real.device))
            with step.autocast():
                d_loss, shown = self.parallel.get("d_loss", self.d_loss)(real, fake.detach())
            step(d_loss, optimizers["d"], "d")
        with step.autocast():
            g_loss = self.g_loss(fake)
        step(g_loss, optimizers["g"], "g")
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        return {
            "loss": g_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_loss": d_loss.detach(),
            **shown,
        }

    @torch.no_grad()
    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        real = x * 2 - 1
        fake = self.generate(torch.randn(x.shape[0], self.latent_dim, device=x.device))
        with torch.enable_grad():  # the gradient penalty needs autograd even in validation
            d_loss, shown = self.d_loss(real, fake)
        g_loss = self.g_loss(fake)
        return {"loss": g_loss, "g_loss": g_loss, "d_loss": d_loss.detach(), **shown}

    def on_train_epoch_end(self, metrics: dict[str, float]) -> None:
        """A discriminator that wins outright (loss ~0) gives the generator no gradient: say so.
        Decided on the epoch's mean over all ranks, so every rank stops together."""
        if self.loss_type not in ("bce", "minimax", "hinge") or "train/d_loss" not in metrics:
            return
        mean = metrics["train/d_loss"]
        self.pinned_epochs += 1 if mean < 1e-3 else -self.pinned_epochs
        if int(self.pinned_epochs) >= self.collapse_patience:
            raise TrainingDiverged(
                f"The discriminator loss has been ~0 ({mean:.2e}) for "
                f"{int(self.pinned_epochs)} epochs: it rejects every generated image and "
                "the generator learns nothing. "
                "Lower the discriminator's learning rate, set model.label_smoothing=0.1, or "
                "use model.loss=hinge or wgan_gp."
            )

    @torch.no_grad()
    def on_validation_end(self, loader, preprocess) -> dict[str, float]:
        """`val/fd` when a classifier is given, on the same noise every epoch (scored by the
        loop's `scorer`). It is also the GAN's `val/loss` (what picks the best checkpoint by
        default): the generator's loss says how well it fools this discriminator, not how good
        its samples are."""
        if not self.fd_classifier or not self.val_fd_samples or self.scorer is None:
            return {}
        fd = self.scorer.fd(
            self.fd_classifier, self.sample, self.val_fd_samples, loader, preprocess
        )
        return {"val/fd": fd, "val/loss": fd}

    def diagnose(self, metrics: dict[str, float]) -> list[str]:
        collapse = coverage_collapse(metrics, len(self.class_names or []))
        return super().diagnose(metrics) + ([collapse] if collapse else [])

    @torch.no_grad()
    def on_test_end(self, loader, preprocess, logger) -> dict[str, float]:
        """Sample quality against the test set when `fd_classifier` names a `cnn` run."""
        if not self.fd_classifier or self.scorer is None:
            return {}
        return self.scorer.scores(
            self.fd_classifier, self.sample, self.fd_samples, loader, preprocess
        )

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        import torchvision.utils  # pictures only: a run need not load torchvision's zoo

        samples = self.draw(self.fixed_noise)
        return {
            "samples": torchvision.utils.make_grid(
                samples.float().clamp(0, 1).cpu(), nrow=8, padding=1, pad_value=1.0
            )
        }
