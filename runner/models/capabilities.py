"""What a model family can do beyond training, written down once: the entrypoints and the loop ask
`isinstance(model, Sampler)`, never `hasattr`.

A family has a capability when it has the members below (structural typing: no base class to
inherit). Which families have which, today:

- `Encoder`: vae, the autoencoders (ae, deep_ae, sparse_ae, denoising_ae), seq_ae
- `Decoder`: vae, gan, the image autoencoders
- `Sampler`: vae, gan
- `Classifier`: cnn, mlp, transfer, seq_classifier
- `ConvMaps`: cnn, the image autoencoders and the vae (None unless arch=conv)

The application hands a family what it needs of the application (scoring samples, loading an
earlier run) as the callables typed here, so that a model file imports only torch and its blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

# Protocols list methods and plain attributes only: `isinstance` finds an nn.Module's submodules
# through `__getattr__`, which Python 3.12's protocol checks no longer call.


@runtime_checkable
class Encoder(Protocol):
    """Inputs -> codes: what runner.sample reconstructs through, the embedding projector shows and
    transfer can cut at (`model.cut=hidden`)."""

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the model sees them ([0, 1] images) -> codes [N, latent_dim] (a VAE's
        posterior means)."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Codes -> images: what runner.sample draws and interpolates with."""

    latent_dim: int
    # Where runner.sample draws codes from: `normal` N(0, I); `codes` a Gaussian fitted to the
    # test images' codes (a family without a prior of its own, which must be an Encoder too).
    prior: Literal["normal", "codes"]

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [N, latent_dim] -> images in [0, 1]."""
        ...


@runtime_checkable
class Sampler(Protocol):
    """Draws new images from its prior: what sample scoring (FD, coverage) measures."""

    def sample(self, n: int) -> torch.Tensor:
        """`n` images in [0, 1], on the model's device."""
        ...


@runtime_checkable
class Classifier(Protocol):
    """Inputs -> `num_classes` logits through penultimate features: what runner.predict runs, what
    sample scoring measures in and what transfer cuts at (`model.cut=hidden`)."""

    num_classes: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> the penultimate embedding [N, D]."""
        ...

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """`features(x)` -> logits [N, num_classes]."""
        ...


@runtime_checkable
class ConvMaps(Protocol):
    """Has convolutional maps where transfer can cut it (`model.cut=trunk` or `pooled`)."""

    def conv_maps(self, x: torch.Tensor) -> torch.Tensor | None:
        """The last convolutional maps [N, C, H, W]; None when this instance has none (an MLP)."""
        ...


# -- what the application hands in ------------------------------------------------------------


class SampleScorer(Protocol):
    """Scores samples in the feature space of a classifier run (runner.training.scoring holds
    the one the loop hands to `RunnerModel.scorer`). `classifier` is a run folder or checkpoint
    (model.fd_classifier); `real` a loader of the real images and `preprocess` its batch
    preprocessing."""

    def fd(
        self,
        classifier: str,
        sample: Callable[[int], torch.Tensor],
        n: int,
        real: Iterable,
        preprocess: Callable,
    ) -> float:
        """The Fréchet distance of `n` samples (the same noise every call) to `real`; the real
        images' features are computed once."""
        ...

    def scores(
        self,
        classifier: str,
        sample: Callable[[int], torch.Tensor],
        n: int,
        real: Iterable,
        preprocess: Callable,
    ) -> dict[str, float]:
        """`test/fd`, `test/fd_floor`, `test/class_coverage`, `test/confidence`."""
        ...


class SourceRun(Protocol):
    """An earlier run as `LoadRun` returns it (runner.runs.Run)."""

    model: nn.Module  # on the CPU, in eval mode, with the checkpoint's weights
    config: Any  # the run's resolved config (an OmegaConf DictConfig)
    checkpoint: Path


# Turns a run folder or checkpoint file into the run (runner.runs.load_run, best checkpoint): what
# a family that reuses runs (transfer's model.pretrained=<run folder>) is handed as `load_run`.
LoadRun = Callable[[Path], SourceRun]
