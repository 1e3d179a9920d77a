"""How good are a generative model's samples, judged by a classifier trained on the same data.

Inception-based FID needs downloaded weights, so the feature space is this project's own `cnn`
run: `fd` is the Fréchet distance between its penultimate features of samples and of test images,
`fd_floor` the same distance between two halves of the test set (what real data scores),
`class_coverage` how many classes the classifier finds among the samples and `confidence` its mean
top probability on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from runner.errors import RunnerError
from runner.metrics.frechet import frechet_distance
from runner.models.capabilities import Classifier

# A class counts as covered when it gets at least this share of a uniform split of the samples.
MIN_CLASS_SHARE = 0.2


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> Classifier:
    """The classifier of a finished run: its folder (checkpoints/best.pt is used) or a file."""
    from runner.runs import load_run

    if str(path) == "auto":
        raise RunnerError(
            "model.fd_classifier=auto is resolved by runner.train (it trains the reference "
            "classifier once); here pass the folder of a cnn run on the same dataset."
        )
    run = load_run(path, "best")
    if not isinstance(run.model, Classifier):
        raise RunnerError(
            f"{path} holds a {run.config.model._target_}, not a classifier with features(x): "
            "train one with `python -m runner.train model=cnn dataset=<the same dataset>` and "
            "pass its run folder."
        )
    return run.model.to(device)


@torch.no_grad()
def classifier_outputs(
    classifier: Classifier, images: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features [N, D] and class probabilities [N, K] for images in [0, 1]."""
    device = next(classifier.parameters()).device
    features, probs = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float()
        f = classifier.features(x).float()
        features.append(f.cpu())
        probs.append(classifier.classify(f).float().softmax(dim=1).cpu())
    return torch.cat(features), torch.cat(probs)


@torch.no_grad()
def sample_quality(
    classifier: Classifier, samples: torch.Tensor, real: torch.Tensor, batch_size: int = 500
) -> dict[str, float]:
    """fd, fd_floor, class_coverage and confidence of `samples` against `real` (both in [0, 1])."""
    if samples.shape[1:] != real.shape[1:]:
        raise RunnerError(
            f"Samples of shape {list(samples.shape[1:])} cannot be compared with real images of "
            f"shape {list(real.shape[1:])}: use a classifier trained on the same dataset."
        )
    fake_features, fake_probs = classifier_outputs(classifier, samples, batch_size)
    real_features, _ = classifier_outputs(classifier, real, batch_size)
    # The floor: two disjoint random halves of the real set, as far apart as real data gets.
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    half = len(real) // 2
    num_classes = fake_probs.shape[1]
    counts = torch.bincount(fake_probs.argmax(dim=1), minlength=num_classes)
    return {
        "fd": frechet_distance(real_features, fake_features),
        "fd_floor": frechet_distance(
            real_features[order[:half]], real_features[order[half : 2 * half]]
        ),
        "class_coverage": float(
            (counts >= MIN_CLASS_SHARE * len(samples) / num_classes).sum().item()
        ),
        "confidence": float(fake_probs.max(dim=1).values.mean()),
    }


@torch.no_grad()
def real_images(loader, preprocess) -> torch.Tensor:
    """Every image of a loader, preprocessed to [0, 1] floats, on the CPU."""
    return torch.cat([preprocess(batch, train=False)[0].cpu() for batch in loader])


@torch.no_grad()
def draw_samples(sample: Callable[[int], torch.Tensor], n: int, batch_size: int = 500):
    """`n` samples from `sample(k)` in batches, on the CPU, clamped to [0, 1]."""
    chunks = [
        sample(min(batch_size, n - s)).float().clamp(0, 1).cpu() for s in range(0, n, batch_size)
    ]
    return torch.cat(chunks)


class FrechetReference:
    """A real image set's classifier features, computed once; `fd(samples)` scores sample sets
    against them (the GAN's per-epoch `val/fd`)."""

    def __init__(self, classifier: Classifier, real: torch.Tensor) -> None:
        self.classifier = classifier
        self.real_features, _ = classifier_outputs(classifier, real)

    @torch.no_grad()
    def fd(self, samples: torch.Tensor) -> float:
        features, _ = classifier_outputs(self.classifier, samples)
        return frechet_distance(self.real_features, features)
