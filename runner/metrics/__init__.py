"""Sample-quality metrics in a domain classifier's feature space, and the latent projector."""

from runner.metrics.frechet import frechet_distance
from runner.metrics.projector import log_latent_projector
from runner.metrics.sample_quality import (
    FrechetReference,
    classifier_outputs,
    load_classifier,
    sample_quality,
)

__all__ = [
    "FrechetReference",
    "classifier_outputs",
    "frechet_distance",
    "load_classifier",
    "log_latent_projector",
    "sample_quality",
]
