"""Sample quality as the loop hands it to the families that sample: a family names its classifier
run (model.fd_classifier) and calls `model.scorer`; the loading, the features and the distances
are here (runner.metrics.sample_quality), not in the model's file."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


class SampleScorer:
    """runner.models.capabilities.SampleScorer on one device. Classifiers are loaded once per run
    folder; the real images' features for `fd` once (the GAN's validation set, every epoch)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._classifiers: dict[str, torch.nn.Module] = {}
        self._reference = None

    def classifier(self, path: str) -> torch.nn.Module:
        from runner.metrics.sample_quality import load_classifier

        if path not in self._classifiers:
            self._classifiers[path] = load_classifier(path, self.device)
        return self._classifiers[path]

    @torch.no_grad()
    def fd(
        self,
        classifier: str,
        sample: Callable[[int], torch.Tensor],
        n: int,
        real: Iterable,
        preprocess: Callable,
    ) -> float:
        from runner.metrics.sample_quality import FrechetReference, draw_samples, real_images

        if self._reference is None:
            self._reference = FrechetReference(
                self.classifier(classifier), real_images(real, preprocess)
            )
        with self._seeded():
            samples = draw_samples(sample, n)
        return self._reference.fd(samples)

    @torch.no_grad()
    def scores(
        self,
        classifier: str,
        sample: Callable[[int], torch.Tensor],
        n: int,
        real: Iterable,
        preprocess: Callable,
    ) -> dict[str, float]:
        from runner.metrics.sample_quality import draw_samples, real_images, sample_quality

        log.info("Scoring %d samples in the reference classifier's feature space.", n)
        model = self.classifier(classifier)
        images = real_images(real, preprocess)
        with self._seeded():  # the same sample set for every evaluation of one checkpoint
            samples = draw_samples(sample, n)
        scores = sample_quality(model, samples, images)
        log.info(
            "Sample quality (%d samples vs %d test images, classifier %s): %s",
            n,
            len(images),
            classifier,
            "  ".join(f"{k}={v:.4g}" for k, v in scores.items()),
        )
        return {f"test/{k}": v for k, v in scores.items()}

    @contextmanager
    def _seeded(self) -> Iterator[None]:
        """Seed 0 inside, the caller's random streams untouched outside."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(0)
            yield
