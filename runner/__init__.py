"""Hydra-configured PyTorch experiment runner for autoencoders, VAEs, GANs and transfer learning."""

__version__ = "0.1.0"
