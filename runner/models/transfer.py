"""Transfer learning: a pretrained backbone with a new head, frozen (feature extraction) or
trained at a lower learning rate (fine-tuning).

Backbones come from torchvision by name, or from the run folder of an earlier run of this project
(a `cnn`, or an autoencoder's encoder), so experiments chain across datasets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import RunnerError
from runner.models.classifier import Classifier

log = logging.getLogger(__name__)

Mode = Literal["feature_extraction", "fine_tuning"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TransferClassifier(Classifier):
    """`backbone` features -> new head sized to the dataset's classes.

    `pretrained`: `torchvision` (the named weights, downloaded once), `none` (random init), a
    weights file (a torchvision state dict), or a run folder (or checkpoint file) of this project.
    A frozen backbone (feature extraction, or fine-tuning before `unfreeze_after` epochs) gets no
    gradients and keeps its norm layers in eval mode.
    """

    unsupported_regularization = {
        "normalization": "a pretrained backbone keeps the normalization layers it was trained "
        "with, and the new head has none. Leave regularization.normalization=auto, or pick a "
        "backbone built with the normalization you want (model.backbone=..., or a cnn run trained "
        "with regularization.normalization=... as model.pretrained)."
    }

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        backbone: str = "resnet18",
        pretrained: str = "torchvision",
        mode: Mode = "fine_tuning",
        backbone_lr_scale: float = 0.1,
        unfreeze_after: int | None = None,
        input_size: int | None = 224,
        head_hidden: int | None = None,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.mode = mode
        self.backbone_lr_scale = backbone_lr_scale
        self.unfreeze_after = unfreeze_after
        if _is_run(pretrained):
            self.backbone, self.adapt, features = _run_backbone(Path(pretrained).expanduser())
        else:
            self.backbone, self.adapt, features = _torchvision_backbone(
                backbone, pretrained, input_size
            )
        if head_hidden:
            self.head = nn.Sequential(
                nn.Dropout(head_dropout),
                nn.Linear(features, head_hidden),
                nn.ReLU(),
                nn.Dropout(head_dropout),
                nn.Linear(head_hidden, num_classes),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(features, num_classes))
        self.num_classes = num_classes
        frozen = mode == "feature_extraction" or unfreeze_after is not None
        self.set_backbone_frozen(frozen)

    # -- freezing ---------------------------------------------------------------------------
    def set_backbone_frozen(self, frozen: bool) -> None:
        self.backbone_frozen = frozen
        unused = {id(p) for p in getattr(self.backbone, "unused", [])}
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen and id(p) not in unused)
        self.train(self.training)
        if self.parallel:  # DDP fixes its parameter set when it wraps: wrap again
            self.distribute(self._wrap)

    def train(self, mode: bool = True) -> TransferClassifier:
        """A frozen backbone stays in eval mode: its batch-norm statistics must not drift."""
        super().train(mode)
        if getattr(self, "backbone_frozen", False):
            self.backbone.eval()
        return self

    def on_train_epoch_start(self, epoch: int) -> None:
        unfreeze = self.mode == "fine_tuning" and self.unfreeze_after is not None
        if unfreeze and self.backbone_frozen and epoch >= self.unfreeze_after:
            log.info("Epoch %d: unfreezing the backbone.", epoch + 1)
            self.set_backbone_frozen(False)

    def configure_optimizers(self, make_optimizer) -> dict[str, torch.optim.Optimizer]:
        """Head at the configured lr; in fine-tuning, the backbone at lr * backbone_lr_scale."""
        if self.mode == "feature_extraction":
            return {"model": make_optimizer(self.head.parameters())}
        optimizer = make_optimizer(
            [{"params": list(self.head.parameters())}, {"params": list(self.backbone.parameters())}]
        )
        # Schedulers built later read each group's lr as its starting point, so the ratio holds.
        optimizer.param_groups[1]["lr"] = optimizer.defaults["lr"] * self.backbone_lr_scale
        return {"model": optimizer}

    # -- forward ----------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.adapt(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InputAdapter(nn.Module):
    """[0, 1] images -> what a backbone expects: its channel count, its size, its normalisation."""

    def __init__(
        self,
        channels: int,
        size: tuple[int, int] | None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) if mean else None)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) if std else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(
                x, size=self.size, mode="bilinear", align_corners=False, antialias=True
            )
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x


def _strip_last_linear(model: nn.Module) -> int:
    """Replace the classifier's last Linear layer with Identity; return its input width."""
    name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            name, last = module_name, module
    if last is None:
        raise RunnerError(f"{type(model).__name__} has no linear classifier layer to replace.")
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return last.in_features


def _is_run(pretrained: str) -> bool:
    """A run folder of this project, or one of its checkpoint files (they carry their config)."""
    if pretrained in ("torchvision", "none"):
        return False
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return True
    if not path.is_file():
        raise RunnerError(
            f"model.pretrained={pretrained!r} does not exist. Use 'torchvision' (the named "
            "weights), 'none' (random init), a weights file, or the folder of an earlier run."
        )
    state = _load_file(path)
    return isinstance(state, dict) and "model" in state and "config" in state


def _load_file(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunnerError(
            f"model.pretrained={path} cannot be read as a weights file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
        ) from None


def _torchvision_backbone(
    name: str, pretrained: str, input_size: int | None
) -> tuple[nn.Module, InputAdapter, int]:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise RunnerError(
            f"model.backbone={name!r} is not a torchvision classifier. Try resnet18, resnet50, "
            "mobilenet_v3_small, efficientnet_b0 (all: torchvision.models.list_models())."
        )
    model = tvm.get_model(name, weights=None)
    weights = tvm.get_model_weights(name).DEFAULT
    if pretrained == "torchvision":
        model.load_state_dict(_download_weights(name, weights))
    elif pretrained != "none":
        path = Path(pretrained).expanduser()
        try:
            model.load_state_dict(_load_file(path))
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise RunnerError(
                f"model.pretrained={path} is not a {name} state dict "
                f"({str(exc).splitlines()[0]}). Save one with torch.save(model.state_dict(), "
                "path), or set model.backbone to the architecture the file was saved from."
            ) from None
    features = _strip_last_linear(model)
    preset = weights.transforms()
    mean = getattr(preset, "mean", IMAGENET_MEAN)
    std = getattr(preset, "std", IMAGENET_STD)
    size = (input_size, input_size) if input_size else None
    return model, InputAdapter(3, size, mean, std), features


def _download_weights(name: str, weights) -> dict:
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:
        hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub"
        file = weights.url.rsplit("/", 1)[-1]
        raise RunnerError(
            f"Could not download the torchvision weights for {name} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Offline, fetch {weights.url} on "
            f"another machine and put it at {hub / 'checkpoints' / file}, or use "
            "model.pretrained=none or a weights file."
        ) from None


def _run_backbone(path: Path) -> tuple[nn.Module, InputAdapter, int]:
    """The feature extractor of an earlier run (its folder or a checkpoint file): a CNN's
    `features`, an autoencoder's or VAE's encoder. New inputs are adapted to the run's shape."""
    from runner.runs import load_run

    try:
        run = load_run(path, "best")
    except RunnerError as exc:
        raise RunnerError(f"model.pretrained={path}: {exc}") from None
    source, config, path = run.model, run.config, run.checkpoint
    model_cfg = config.model
    extractor = _FeatureExtractor(source)
    shape = tuple(int(s) for s in config["dataset"]["shape"])
    extractor.eval()
    probe = extractor(torch.zeros(2, *shape))
    features = probe.shape[1]
    # The parts of the run the features never reach (a cnn's head, an autoencoder's decoder)
    # stay frozen: they cannot learn, and DDP needs a gradient for every trainable parameter.
    probe.sum().backward()
    extractor.unused = [p for p in extractor.parameters() if p.grad is None]
    extractor.zero_grad(set_to_none=True)
    log.info(
        "Backbone: %s from %s (%d features, inputs adapted to %s).",
        model_cfg["_target_"],
        path,
        features,
        list(shape),
    )
    return extractor, InputAdapter(shape[0], shape[1:]), features


class _FeatureExtractor(nn.Module):
    """A trained model seen as a backbone: `features(x)`, else `encode(x)`, else `encoder(x)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not any(hasattr(model, m) for m in ("features", "encode", "encoder")):
            raise RunnerError(
                f"{type(model).__name__} runs cannot be used as backbones: the model has no "
                "features(), encode() or encoder. Transfer from a cnn or an autoencoder run."
            )
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "features"):
            out = self.model.features(x)
        elif hasattr(self.model, "encode"):
            out = self.model.encode(x)
        else:
            out = self.model.encoder(x)
        if isinstance(out, tuple | list):  # a VAE's encode gives (mean, log-variance): the mean
            out = out[0]
        return out.flatten(1)
