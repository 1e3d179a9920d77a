"""Building blocks sized from the data shape: MLPs, conv encoders/decoders, the image coders of
the autoencoders and the VAE, weight init."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

Activation = Literal["relu", "leaky_relu", "gelu", "elu", "silu", "tanh"]
Init = Literal["default", "xavier", "kaiming"]
# auto: the family's own choice (batch norm for the cnn and the GAN, none for autoencoders)
Normalization = Literal["auto", "none", "batch", "layer"]
Upsample = Literal["transposed", "resize"]
Dropout = Annotated[float, Field(ge=0, lt=1)]  # the probability of zeroing an activation

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def make_activation(name: Activation) -> nn.Module:
    return _ACTIVATIONS[name]()


def family_norm(kind: Normalization, default: Normalization) -> Normalization:
    """`regularization.normalization` as a family applies it: `auto` becomes its `default`."""
    return default if kind == "auto" else kind


def norm_1d(kind: Normalization, width: int) -> list[nn.Module]:
    return {"none": [], "batch": [nn.BatchNorm1d(width)], "layer": [nn.LayerNorm(width)]}[kind]


def norm_2d(kind: Normalization, channels: int) -> list[nn.Module]:
    # GroupNorm with one group normalises over (C, H, W): layer norm for feature maps.
    return {"none": [], "batch": [nn.BatchNorm2d(channels)], "layer": [nn.GroupNorm(1, channels)]}[
        kind
    ]


def mlp(
    dims: Sequence[int],
    act: Activation = "relu",
    dropout: float = 0.0,
    normalization: Normalization = "none",
) -> nn.Sequential:
    """Linear layers through `dims`; norm, activation and dropout between (not after) them."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers += norm_1d(normalization, d_out) + [make_activation(act)]
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def conv_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(H, W) after each stride-2, kernel-3, padding-1 convolution, input size first."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


def conv_encoder(
    in_channels: int,
    channels: Sequence[int],
    act: Activation = "relu",
    dropout: float = 0.0,
    normalization: Normalization = "none",
) -> nn.Sequential:
    """Stride-2 3x3 convolutions, halving the image at each level."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
        layers += norm_2d(normalization, c_out) + [make_activation(act)]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        c_in = c_out
    return nn.Sequential(*layers)


def conv_decoder(
    out_channels: int,
    channels: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    act: Activation = "relu",
    normalization: Normalization = "none",
    upsample: Upsample = "transposed",
) -> nn.Sequential:
    """Mirror of `conv_encoder`: back through `sizes` (small to large) by stride-2 transposed
    convolutions, or by `resize`: nearest-neighbour upsampling then a 3x3 convolution, which
    avoids the checkerboard pattern of uneven kernel overlap (Odena et al., 2016) at four times
    the arithmetic.

    Returns logits with `out_channels` channels at `sizes[-1]`.
    """
    layers: list[nn.Module] = []
    widths = list(channels) + [out_channels]
    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
        if upsample == "resize":
            layers += [nn.Upsample(size=sizes[i + 1]), nn.Conv2d(c_in, c_out, 3, padding=1)]
        else:
            # output_padding that lands on the encoder's exact size (0 or 1 per axis)
            extra = tuple(big - (2 * small - 1) for small, big in zip(sizes[i], sizes[i + 1]))
            layers.append(
                nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=extra)
            )
        if i < len(widths) - 2:
            layers += norm_2d(normalization, c_out) + [make_activation(act)]
    return nn.Sequential(*layers)


def image_coders(
    in_shape: Sequence[int],
    latent_dim: int,
    arch: Literal["mlp", "conv"],
    channels: Sequence[int],
    hidden_dims: Sequence[int],
    activation: Activation,
    dropout: float,
    normalization: Normalization,
    *,
    code: bool,
) -> tuple[nn.Sequential, nn.Sequential, int]:
    """An image encoder and the decoder that mirrors it: the autoencoders' and the VAE's.

    `arch="mlp"` flattens the image into dense `hidden_dims`; `arch="conv"` runs stride-2
    convolutions (`channels`, sized from the image), flattens their maps, then the dense
    `hidden_dims`. With `code` the encoder ends in a linear layer to `latent_dim` (an
    autoencoder's code); without, in an activation, for the family's own head (the VAE's
    posterior). The decoder goes from a `latent_dim` code back through the same widths to image
    logits. Returns (encoder, decoder, the width of the encoder's output).
    """
    c, h, w = (int(s) for s in in_shape)
    if arch == "mlp":
        trunk: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
    else:
        sizes = conv_sizes(h, w, len(channels))
        fh, fw = sizes[-1]
        trunk = [conv_encoder(c, channels, activation, dropout, normalization), nn.Flatten()]
        width = channels[-1] * fh * fw
    dense = [width, *hidden_dims, *([latent_dim] if code else [])]
    head: list[nn.Module] = []
    if len(dense) > 1 or arch == "mlp":
        head = [mlp(dense, activation, dropout, normalization)]
        head += [] if code else [make_activation(activation)]
    encoder = nn.Sequential(*trunk, *head)
    back = mlp([latent_dim, *hidden_dims[::-1], width], activation, dropout, normalization)
    if arch == "mlp":
        decoder = nn.Sequential(back, nn.Unflatten(1, (c, h, w)))
    else:
        decoder = nn.Sequential(
            back,
            make_activation(activation),
            nn.Unflatten(1, (channels[-1], fh, fw)),
            conv_decoder(c, list(channels)[::-1], sizes[::-1], activation, normalization),
        )
    return encoder, decoder, dense[-1]


def init_weights(module: nn.Module, scheme: Init, act: Activation = "relu") -> None:
    """`default` keeps PyTorch's init; `xavier` and `kaiming` re-draw conv and linear weights."""
    if scheme == "default":
        return
    nonlinearity = "leaky_relu" if act == "leaky_relu" else "relu"
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def image_pairs(*rows: torch.Tensor, columns: int = 8) -> torch.Tensor:
    """Grid with the i-th images of each tensor side by side (input | output | ...)."""
    from torchvision.utils import make_grid

    stacked = torch.stack(rows, dim=1).flatten(0, 1)  # [B * len(rows), C, H, W], interleaved
    return make_grid(
        stacked.float().clamp(0, 1).cpu(), nrow=columns * len(rows), padding=1, pad_value=1.0
    )
