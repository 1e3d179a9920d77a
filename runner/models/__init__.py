"""Model families, one file each; every class is a `_target_` in conf/model/."""

from runner.models.autoencoder import Autoencoder
from runner.models.base import RunnerModel
from runner.models.classifier import CNN, MLP, Classifier
from runner.models.denoising_ae import DenoisingAutoencoder
from runner.models.gan import GAN
from runner.models.sequence import SeqAutoencoder, SeqClassifier
from runner.models.sparse_ae import SparseAutoencoder
from runner.models.transfer import TransferClassifier
from runner.models.vae import VAE

__all__ = [
    "CNN",
    "Classifier",
    "Autoencoder",
    "DenoisingAutoencoder",
    "GAN",
    "MLP",
    "RunnerModel",
    "SeqAutoencoder",
    "SeqClassifier",
    "SparseAutoencoder",
    "TransferClassifier",
    "VAE",
]
