"""Sequence models: a recurrent (RNN, LSTM, GRU) or Transformer encoder, as a classifier
(`seq_classifier`) and as a recurrent autoencoder (`seq_ae`).

Batches arrive as series [B, T, C] (NaN after the end of shorter series) or as images
[B, C, H, W], which are read row by row: H steps of C * W features (sequential MNIST). Lengths
come from the NaN mask; padding is zeroed and then kept out of every computation (packed
sequences for the recurrent layers, a key-padding mask for attention, masked pooling), so the
amount of padding never changes a prediction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from runner.data.sequence_augment import series_lengths
from runner.errors import RunnerError
from runner.models.base import RunnerModel, Target, inputs_of
from runner.models.blocks import Dropout, Init, Normalization, family_norm
from runner.models.classifier import Classifier
from runner.models.pca import PCA, fit_pca, reconstruction_mse

log = logging.getLogger(__name__)

EncoderKind = Literal["rnn", "lstm", "gru", "transformer"]
RecurrentKind = Literal["rnn", "lstm", "gru"]
Pooling = Literal["last", "mean"]
ConvLayout = Literal["stem", "parallel", "both"]
SeriesNoise = Literal["none", "gaussian", "masking"]
LinearPath = Literal["auto", "pca", "learned"]
Kernel = PositiveInt | Sequence[PositiveInt]  # one size for every convolution, or one each
# model.linear=pca sums the second moments of the flattened series: D x D numbers for D values;
# `auto` takes PCA up to this size.
PCA_MAX_VALUES = 8192
_RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def sequence_shape(in_shape: Sequence[int], family: str) -> tuple[int, int]:
    """(steps, features) of the data: series (T, C) as they are, images (C, H, W) row by row."""
    shape = tuple(int(s) for s in in_shape)
    if len(shape) == 2:
        steps, features = shape
    elif len(shape) == 3:
        steps, features = shape[1], shape[0] * shape[2]
    else:
        steps = features = 0
    if steps < 2 or features < 1:
        raise RunnerError(
            f"model={family} reads its input as a sequence, but the dataset's shape "
            f"{list(shape)} is neither series (steps, channels) nor images (channels, height, "
            "width) with at least two rows. Use dataset=timeseries, or an image dataset."
        )
    return steps, features


def as_sequence(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch as (sequence [B, T, F] with zeros for padding and gaps, lengths [B])."""
    if x.dim() == 4:  # images in [0, 1]: one row per step, centred like the CNN's inputs
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(b, h, c * w) * 2 - 1
        return seq, torch.full((b,), h, dtype=torch.long, device=x.device)
    return torch.nan_to_num(x, nan=0.0), series_lengths(x).clamp(min=1)


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T] True on the steps inside each series."""
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of h [B, T, D] over the steps where mask [B, T] is True."""
    weights = mask.unsqueeze(2).to(h.dtype)
    return (h * weights).sum(1) / weights.sum(1).clamp(min=1)


def _norm(kind: Normalization, width: int) -> nn.Module:
    # Layer norm over the features of one step, never over time: padding must not leak in.
    # `auto` (regularization.normalization's default) is none here, as before it existed.
    layers = {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
    kind = family_norm(kind, "none")
    return nn.Identity() if kind == "none" else layers[kind](width)


class ConvStem(nn.Module):
    """1-d convolutions over time ('same' padding) with norm and ReLU, as in LSTM-FCN; outputs
    past each series' end are zeroed after every layer so padding never reaches valid steps."""

    def __init__(
        self,
        features: int,
        channels: Sequence[int],
        kernel: int | Sequence[int],
        normalization: Normalization,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        kernels = [kernel] * len(channels) if isinstance(kernel, int) else list(kernel)
        if len(kernels) != len(channels):
            raise RunnerError(
                f"model.conv_kernel={list(kernels)} names {len(kernels)} kernel sizes for "
                f"{len(channels)} convolutions (model.conv_channels={list(channels)}): give one "
                "size for all, or one per convolution."
            )
        for width, size in zip(channels, kernels):
            self.convs.append(nn.Conv1d(features, width, size, padding="same"))
            self.norms.append(_norm(normalization, width))
            features = width
        self.out_features = features

    def forward(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(seq.dtype)  # [B, 1, T]
        h = seq.transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h * keep)
            h = norm(h) if isinstance(norm, nn.BatchNorm1d) else norm(h.transpose(1, 2)).mT
            h = F.relu(h) * keep
        return h.transpose(1, 2)


def strided_max(
    h: torch.Tensor, lengths: torch.Tensor, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over windows of `stride` steps of each series [B, T, D] (a window that crosses a
    series' end takes the max of its valid steps), with the new lengths; zero past each end."""
    valid = step_mask(lengths, h.shape[1]).unsqueeze(2)
    filled = h.masked_fill(~valid, float("-inf")).transpose(1, 2)
    pooled = F.max_pool1d(filled, stride, ceil_mode=True).transpose(1, 2)
    lengths = torch.div(lengths + stride - 1, stride, rounding_mode="floor")
    keep = step_mask(lengths, pooled.shape[1]).unsqueeze(2)
    return pooled.masked_fill(~keep, 0.0), lengths


def positional_encoding(steps: int, width: int, device: torch.device) -> torch.Tensor:
    """The sinusoidal encoding of Vaswani et al. (2017): [T, width]."""
    position = torch.arange(steps, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / width)
    )
    table = torch.zeros(steps, width, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


class SequenceEncoder(nn.Module):
    """[B, T, F] + lengths -> one vector per series (`out_features` wide).

    An optional convolutional stem, then stacked recurrent layers (packed: they stop at each
    series' end) or a Transformer encoder (padding masked out of attention), then the output
    at the last valid step (`pooling=last`; for a bidirectional RNN the final states of both
    directions) or the mean over valid steps.

    `conv_layout` places the convolutions: `stem` feeds them to the encoder; `parallel` lets
    them and the encoder read the series side by side, as in LSTM-FCN (Karim et al., 2018),
    and `both` feeds them to the encoder and also hands them on. In the last two the
    convolutions' mean over time (global average pooling, as in FCN) is concatenated with the
    encoder's vector. `encoder_stride` > 1 max-pools what the encoder reads over that many steps
    (each series' own, past its end nothing), so long series cost the sequential layers fewer
    steps while the convolutions' mean still sees every step.
    """

    def __init__(
        self,
        features: int,
        encoder: EncoderKind = "lstm",
        hidden_size: PositiveInt = 128,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        pooling: Pooling = "last",
        d_model: PositiveInt = 64,
        nhead: PositiveInt = 4,
        conv_channels: Sequence[PositiveInt] = (),
        conv_kernel: Kernel = 5,
        dropout: Dropout = 0.0,
        normalization: Normalization = "none",
        conv_layout: ConvLayout = "stem",
        encoder_stride: PositiveInt = 1,
    ) -> None:
        super().__init__()
        self.kind = encoder
        self.pooling = pooling
        self.stride = encoder_stride
        self.stem = ConvStem(features, conv_channels, conv_kernel, normalization)
        self.layout = conv_layout if conv_channels else "stem"
        if self.layout != "parallel":
            features = self.stem.out_features
        if encoder == "transformer":
            if d_model % nhead:
                raise RunnerError(
                    f"model.d_model={d_model} is not divisible by model.nhead={nhead}: each "
                    "attention head gets d_model / nhead features. Pick e.g. "
                    f"model.nhead={math.gcd(d_model, nhead)} or model.d_model="
                    f"{nhead * max(1, round(d_model / nhead))}."
                )
            self.project = nn.Linear(features, d_model)
            layer = nn.TransformerEncoderLayer(
                d_model,
                nhead,
                dim_feedforward=hidden_size,
                dropout=dropout,
                batch_first=True,
                norm_first=True,
            )
            self.layers = nn.TransformerEncoder(
                layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
            )
            width = d_model
        else:
            self.layers = _RECURRENT[encoder](
                features,
                hidden_size,
                num_layers,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if num_layers > 1 else 0.0,
            )
            width = hidden_size * (2 if bidirectional else 1)
        self.encoder_features = width
        self.out_features = width + (self.stem.out_features if self.layout != "stem" else 0)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = step_mask(lengths, seq.shape[1])
        conv = self.stem(seq, mask)
        h, steps, step_lengths = seq if self.layout == "parallel" else conv, mask, lengths
        if self.stride > 1:
            h, step_lengths = strided_max(h, lengths, self.stride)
            steps = step_mask(step_lengths, h.shape[1])
        if self.pooling == "last" and self.kind != "transformer":
            pooled = self._final_states(h, step_lengths)
        else:
            out = self._steps(h, step_lengths, steps)
            if self.pooling == "mean":
                pooled = masked_mean(out, steps)
            else:
                pooled = out[torch.arange(len(out), device=out.device), step_lengths - 1]
        if self.layout == "stem":
            return pooled
        return torch.cat([masked_mean(conv, mask), pooled], 1)

    def _steps(self, h: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-step outputs [B, T, D] (zeros past each end for the recurrent layers)."""
        if self.kind == "transformer":
            h = self.project(h) + positional_encoding(h.shape[1], self.encoder_features, h.device)
            return self.layers(h, src_key_padding_mask=~mask)
        out, _ = self._recurrent(h, lengths)
        return pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])[0]

    def _recurrent(self, h: torch.Tensor, lengths: torch.Tensor):
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return self.layers(packed)

    def _final_states(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The top layer's final hidden state of each direction (the backward direction ends
        at step 0, having read the whole series)."""
        _, state = self._recurrent(h, lengths)
        final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        directions = 2 if self.layers.bidirectional else 1
        return final[-directions:].transpose(0, 1).flatten(1)


def init_sequence_weights(module: nn.Module, scheme: Init) -> None:
    """`default` keeps PyTorch's init; `xavier`/`kaiming` re-draw linear and conv weights, and
    recurrent layers get Xavier input weights, orthogonal recurrent weights and zero biases
    (with the LSTM's forget-gate bias at 1, Jozefowicz et al., 2015)."""
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv1d):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            for name, p in m.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(p)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(p)
                else:
                    nn.init.zeros_(p)
                    if isinstance(m, nn.LSTM):
                        p.data[m.hidden_size : 2 * m.hidden_size] = 1.0


def load_encoder(encoder: nn.Module, pretrained: str) -> None:
    """Copy the `encoder.*` weights of an earlier seq_classifier or seq_ae run (its folder or a
    checkpoint file) wherever names and shapes match; fail if nothing matches."""
    from runner.training.checkpoint import load_checkpoint

    path = Path(pretrained).expanduser()
    if path.is_dir() and (path / "checkpoints" / "best.pt").exists():
        path = path / "checkpoints" / "best.pt"
    source = {
        k.removeprefix("encoder."): v
        for k, v in load_checkpoint(path)["model"].items()
        if k.startswith("encoder.")
    }
    own = encoder.state_dict()
    matching = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise RunnerError(
            f"model.pretrained={pretrained}: none of its encoder weights fit this model. "
            "Transfer needs a seq_classifier or seq_ae run with the same encoder kind, sizes "
            "and number of input features."
        )
    encoder.load_state_dict(matching, strict=False)
    log.info(
        "Encoder: %d of %d tensors from %s (%d did not fit).",
        len(matching),
        len(own),
        path,
        len(source) - len(matching),
    )


class SeqClassifier(Classifier):
    """Sequence encoder -> norm, dropout and a linear head. `features(x)` gives the pooled
    encoding (what `runner.metrics.sample_quality` and transfer read)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        encoder: EncoderKind = "lstm",
        hidden_size: PositiveInt = 128,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        pooling: Pooling = "last",
        d_model: PositiveInt = 64,
        nhead: PositiveInt = 4,
        conv_channels: Sequence[PositiveInt] = (),
        conv_kernel: Kernel = 5,
        conv_layout: ConvLayout = "stem",
        encoder_stride: PositiveInt = 1,
        dropout: Dropout = 0.0,
        normalization: Normalization = "none",
        init: Init = "default",
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        _, features = sequence_shape(in_shape, "seq_classifier")
        self.encoder = SequenceEncoder(
            features,
            encoder,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            pooling=pooling,
            d_model=d_model,
            nhead=nhead,
            conv_channels=conv_channels,
            conv_kernel=conv_kernel,
            dropout=dropout,
            normalization=normalization,
            conv_layout=conv_layout,
            encoder_stride=encoder_stride,
        )
        width = self.encoder.out_features
        self.head = nn.Sequential(
            _norm(normalization, width), nn.Dropout(dropout), nn.Linear(width, num_classes)
        )
        self.num_classes = num_classes
        init_sequence_weights(self, init)
        if pretrained:
            load_encoder(self.encoder, pretrained)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(*as_sequence(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def misclassified_picture(self, x: torch.Tensor, captions: list[str]) -> torch.Tensor:
        if x.dim() == 4:
            return super().misclassified_picture(x, captions)
        from runner.models.pictures import series_panels

        return series_panels([x], captions)


def corrupt_series(x: torch.Tensor, noise_type: SeriesNoise, level: float) -> torch.Tensor:
    """Gaussian noise of std `level`, or each observed value zeroed with probability `level`;
    NaN padding stays NaN."""
    if noise_type == "gaussian":
        return x + level * torch.randn_like(x)
    if noise_type == "masking":
        return x.masked_fill((torch.rand_like(x) < level) & ~torch.isnan(x), 0.0)
    return x


class SeqAutoencoder(RunnerModel):
    """Recurrent encoder -> `latent_dim` code -> recurrent decoder -> the series again.

    The decoder starts from the code (its initial state) and reads the code and the position in
    the series at every step. Linear maps between the whole series and the code run beside the
    encoder and the decoder, so the model contains what PCA can do and the recurrent parts learn
    what is left. With `linear=pca` (`auto`: for series of up to 8,192 values) the linear maps
    are PCA of the training series, fitted before the first epoch and fixed, and the recurrent
    parts' output layers start from zero: the model reconstructs as PCA does plus what the
    recurrent parts learn, and the best checkpoint (lowest validation loss) keeps them only
    where they help on held-out series. `linear=learned` trains the maps by gradient descent
    with the rest.
    The loss is the MSE over observed steps. With `noise_type` set it is a denoising
    autoencoder: corrupted input, clean target.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: PositiveInt = 16,
        encoder: RecurrentKind = "gru",
        hidden_size: PositiveInt = 64,
        num_layers: PositiveInt = 1,
        bidirectional: bool = True,
        conv_channels: Sequence[PositiveInt] = (),
        conv_kernel: Kernel = 5,
        noise_type: SeriesNoise = "none",
        noise_level: Annotated[float, Field(ge=0, le=1)] = 0.0,  # std, or probability
        linear: LinearPath = "auto",
        dropout: Dropout = 0.0,
        normalization: Normalization = "none",
        init: Init = "default",
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.steps, self.features = sequence_shape(in_shape, "seq_ae")
        values = self.steps * self.features
        if linear == "pca" and values > PCA_MAX_VALUES:
            raise RunnerError(
                f"model.linear=pca fits PCA to series of {self.steps} x {self.features} = "
                f"{values} values, which needs a {values} x {values} matrix; above "
                f"{PCA_MAX_VALUES} values pass model.linear=learned (or auto)."
            )
        if linear == "auto":
            linear = "pca" if values <= PCA_MAX_VALUES else "learned"
        self.linear = linear
        self.latent_dim = latent_dim
        self.noise_type = noise_type
        self.noise_level = noise_level
        self.encoder = SequenceEncoder(
            self.features,
            encoder,
            hidden_size,
            num_layers,
            bidirectional,
            "last",
            conv_channels=conv_channels,
            conv_kernel=conv_kernel,
            dropout=dropout,
            normalization=normalization,
        )
        # regularization.dropout and .normalization act on the encoding in every configuration
        # (inside the encoder they reach only stacked layers or a conv stem).
        self.code_norm = _norm(normalization, self.encoder.out_features)
        self.code_dropout = nn.Dropout(dropout)
        self.to_code = nn.Linear(self.encoder.out_features, latent_dim)
        self.linear_encoder = nn.Linear(self.steps * self.features, latent_dim)
        self.to_state = nn.Linear(latent_dim, hidden_size * num_layers)
        self.decoder = nn.GRU(
            latent_dim + 2, hidden_size, num_layers, batch_first=True, dropout=0.0
        )
        self.to_output = nn.Linear(hidden_size, self.features)
        self.linear_decoder = nn.Linear(latent_dim, self.steps * self.features)
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        init_sequence_weights(self, init)

    def _flat(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, T, F] -> [B, steps * F]; padding is zero here, so the linear path sees each
        series the same however padded."""
        return F.pad(seq, (0, 0, 0, max(self.steps - seq.shape[1], 0)))[:, : self.steps].flatten(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        seq, lengths = as_sequence(x)
        encoding = self.code_dropout(self.code_norm(self.encoder(seq, lengths)))
        return self.to_code(encoding) + self.linear_encoder(self._flat(seq))

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Series -> codes (an Encoder: what the embedding projector shows)."""
        return self.encode(x)

    def on_fit_start(self, train, val, preprocess, steps_per_epoch: int) -> None:
        if self.linear == "pca":
            # Reading the data must not shift the training's random stream.
            with torch.random.fork_rng(devices=[]):
                self.fit_pca(train, preprocess)

    def _flat_series(self, loader, preprocess):
        for x in inputs_of(loader, preprocess):
            yield self._flat(as_sequence(x)[0])

    @torch.no_grad()
    def fit_pca(self, loader, preprocess) -> None:
        """The linear maps := PCA of `loader`'s series (the top `latent_dim` components), fixed
        from then on; the recurrent parts' output layers restart from zero, so training starts
        from PCA's reconstruction exactly and learns only what is left."""
        pca = fit_pca(self._flat_series(loader, preprocess), self.latent_dim)
        pca.copy_into(self.linear_encoder, self.linear_decoder)
        for layer in (self.to_code, self.to_output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        log.info("seq_ae: linear path fitted as PCA of the training series.")

    targets = (Target("recon_mse", "pca_mse", "PCA with as many components as the code"),)

    @torch.no_grad()
    def baselines(self, train, test, preprocess) -> dict[str, float]:
        """PCA with `latent_dim` components of the training series, and their mean series,
        scored on the test series (padded steps count as zeros for both)."""
        pca = fit_pca(self._flat_series(train, preprocess), self.latent_dim)
        pairs = [(rows, rows) for rows in self._flat_series(test, preprocess)]
        return {
            "pca_mse": reconstruction_mse(pca, pairs),
            "mean_series_mse": reconstruction_mse(PCA(pca.mean, pca.components[:, :0]), pairs),
        }

    def decode(self, z: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Codes [B, latent_dim] -> sequences [B, steps, features]."""
        steps = steps or self.steps
        t = torch.linspace(0, 1, steps, device=z.device)
        clock = torch.stack([torch.sin(math.pi * t), torch.cos(math.pi * t)], 1)
        inputs = torch.cat(
            [z.unsqueeze(1).expand(-1, steps, -1), clock.expand(len(z), -1, -1)], dim=2
        )
        state = torch.tanh(self.to_state(z)).view(len(z), self.num_layers, self.hidden_size)
        out, _ = self.decoder(inputs, state.transpose(0, 1).contiguous())
        linear = self.linear_decoder(z).view(len(z), self.steps, self.features)[:, :steps]
        return self.to_output(out) + linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction as a sequence [B, T, F] (images: rows as steps, in [-1, 1])."""
        return self.decode(self.encode(x), as_sequence(x)[0].shape[1])

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target, lengths = as_sequence(x)
        noisy = corrupt_series(x, self.noise_type, self.noise_level)
        mask = step_mask(lengths, target.shape[1]).unsqueeze(2)
        mse = self._masked_mse(self(noisy), target, mask)
        losses = {"loss": mse, "recon_mse": mse.detach()}
        if self.noise_type != "none":
            losses["noisy_mse"] = self._masked_mse(as_sequence(noisy)[0], target, mask).detach()
        return losses

    @staticmethod
    def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.expand_as(target).to(pred.dtype)
        return ((pred.float() - target) ** 2 * weights).sum() / weights.sum().clamp(min=1)

    @torch.no_grad()
    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each input series (solid) with its reconstruction (dashed) in one panel."""
        from runner.models.pictures import series_panels

        target, lengths = as_sequence(x)
        recon = self(x)
        keep = step_mask(lengths, target.shape[1]).unsqueeze(2)
        nan = torch.tensor(float("nan"), device=x.device)
        names = self.class_names or []
        captions = [names[i] if i < len(names) else str(i) for i in y.tolist()]
        return {
            "reconstructions": series_panels(
                [torch.where(keep, target, nan), torch.where(keep, recon, nan)], captions
            )
        }
