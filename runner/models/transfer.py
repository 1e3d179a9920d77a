"""Transfer learning: a pretrained backbone with a new head, read out by a linear probe, frozen
(feature extraction) or trained at a lower learning rate (fine-tuning).

Backbones come from torchvision by name, or from the run folder of an earlier run of this project
(a `cnn`, or an autoencoder's or VAE's encoder), cut where `model.cut` says, so experiments chain
across datasets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from runner.errors import RunnerError
from runner.models import capabilities
from runner.models.blocks import Dropout
from runner.models.capabilities import LoadRun
from runner.models.classifier import Classifier
from runner.models.linear_probe import Solver, fit_probe

log = logging.getLogger(__name__)

Mode = Literal["feature_extraction", "fine_tuning", "linear_probe"]
Cut = Literal["auto", "trunk", "pooled", "hidden"]
HeadInit = Literal["auto", "random", "probe"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# model.cut=auto for a run's backbone, first available wins: what transferred best across the
# pairs of benchmarks/transfer.py (docs/benchmarks.md), for label-trained and label-free sources.
AUTO_CUTS = ("trunk", "hidden")


class TransferClassifier(Classifier):
    """`backbone` features -> new head sized to the dataset's classes.

    `pretrained`: `torchvision` (the named weights, downloaded once), `none` (random init), a
    weights file (a torchvision state dict), or a run folder (or checkpoint file) of this project,
    cut at `cut` (conf/model/transfer.yaml sets `auto`; None is where runs saved before
    `model.cut` existed cut, so that they rebuild: `hidden` of a run, `auto` of torchvision).
    Before the first epoch the backbone's batch-norm statistics are re-estimated on
    the training images (`adapt_bn`) and, for `linear_probe` or `head_init=probe`, the head is
    solved as a linear probe on the frozen features. A frozen backbone (feature extraction, linear
    probe, or fine-tuning before `unfreeze_after` epochs) gets no gradients and keeps its norm
    layers in eval mode; an unfrozen one ramps its learning rate up over `warmup_epochs`.

    `load_run` is not config: the application hands in the one function that turns a run folder
    into a model (runner.runs.load_run; runner.build.build_model and load_run itself pass it).
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
        num_classes: PositiveInt,
        backbone: str = "resnet18",
        pretrained: str = "torchvision",
        mode: Mode = "fine_tuning",
        cut: Cut | None = None,
        backbone_lr_scale: NonNegativeFloat = 1.0,
        unfreeze_after: NonNegativeInt | None = None,
        warmup_epochs: NonNegativeFloat = 1.0,
        head_init: HeadInit = "auto",
        adapt_bn: bool = False,
        probe_solver: Solver = "lbfgs",
        input_size: PositiveInt | None = 224,
        head_hidden: PositiveInt | None = None,
        head_dropout: Dropout = 0.0,
        load_run: LoadRun | None = None,
    ) -> None:
        super().__init__()
        if head_hidden and (mode == "linear_probe" or head_init == "probe"):
            setting = "mode=linear_probe" if mode == "linear_probe" else "head_init=probe"
            raise RunnerError(
                f"model.{setting} solves the head as one linear layer, but "
                f"model.head_hidden={head_hidden} asks for a hidden layer in it. Set "
                "model.head_hidden=null, or keep the hidden layer with "
                "model.mode=feature_extraction (or fine_tuning) and model.head_init=random."
            )
        self.in_shape = tuple(int(s) for s in in_shape)
        self.mode = mode
        self.backbone_lr_scale = backbone_lr_scale
        self.unfreeze_after = unfreeze_after
        self.warmup_epochs = warmup_epochs
        # auto: a frozen backbone's head starts as the linear probe (a better start than random);
        # a fine-tuned one's from random weights, which fine-tuned better on the benchmark.
        if head_init == "auto":
            head_init = "probe" if mode == "feature_extraction" and not head_hidden else "random"
        self.head_init = head_init
        self.adapt_bn = adapt_bn
        self.probe_solver = probe_solver
        if _is_run(pretrained):
            path = Path(pretrained).expanduser()
            self.backbone, self.adapt, features = _run_backbone(path, cut or "hidden", load_run)
        else:
            self.backbone, self.adapt, features = _torchvision_backbone(
                backbone, pretrained, input_size, cut or "auto"
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
        # Where the backbone's learning-rate ramp stands: set by the loop's epoch hooks.
        self.epoch, self.epoch_step, self.steps_per_epoch = 0, 0, None
        frozen = mode != "fine_tuning" or unfreeze_after is not None
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
        self.epoch, self.epoch_step = epoch, 0
        unfreeze = self.mode == "fine_tuning" and self.unfreeze_after is not None
        if unfreeze and self.backbone_frozen and epoch >= self.unfreeze_after:
            log.info("Epoch %d: unfreezing the backbone.", epoch + 1)
            self.set_backbone_frozen(False)

    def configure_optimizers(self, make_optimizer) -> dict[str, torch.optim.Optimizer]:
        """Head at the configured lr; in fine-tuning, the backbone at lr * backbone_lr_scale."""
        if self.mode != "fine_tuning":
            return {"model": make_optimizer(self.head.parameters())}
        optimizer = make_optimizer(
            [{"params": list(self.head.parameters())}, {"params": list(self.backbone.parameters())}]
        )
        # Schedulers built later read each group's lr as its starting point, so the ratio holds.
        optimizer.param_groups[1]["lr"] = optimizer.defaults["lr"] * self.backbone_lr_scale
        return {"model": optimizer}

    def backbone_lr_factor(self) -> float:
        """The warm-up's share of the backbone's learning rate now: 0 at the step it unfreezes,
        rising linearly to 1 over `warmup_epochs` (by step when the loop told the epoch length)."""
        if not self.warmup_epochs:
            return 1.0
        within = self.epoch_step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        done = self.epoch - (self.unfreeze_after or 0) + within
        return min(1.0, max(0.0, done / self.warmup_epochs))

    def training_step(self, batch, optimizers, step) -> dict[str, torch.Tensor]:
        if self.mode == "linear_probe":  # solved before the first epoch: the epochs measure it
            return self.validation_step(batch)
        factor = self.backbone_lr_factor() if self.mode == "fine_tuning" else 1.0
        groups = optimizers["model"].param_groups
        scheduled = groups[-1]["lr"]
        # Scaled for this step only: the scheduler goes on from (and chains on) its own value.
        groups[-1]["lr"] = scheduled * factor
        try:
            losses = super().training_step(batch, optimizers, step)
        finally:
            groups[-1]["lr"] = scheduled
        self.epoch_step += 1
        return losses

    # -- before the first epoch ---------------------------------------------------------------
    def on_fit_start(self, train, val, preprocess, steps_per_epoch: int) -> None:
        """Batch-norm statistics of the target (`adapt_bn`), then the linear probe as the head
        (`linear_probe`, `head_init=probe`)."""
        self.steps_per_epoch = steps_per_epoch
        device = self.head[-1].weight.device
        # Reading the data must not shift the training's random stream (a DataLoader's workers
        # draw their seeds from it): the same seed trains the same way with and without these.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if self.adapt_bn:
                self.reestimate_batch_norm(train, preprocess)
            if self.mode == "linear_probe" or self.head_init == "probe":
                self.fit_linear_probe(train, val, preprocess)

    @torch.no_grad()
    def reestimate_batch_norm(self, loader, preprocess) -> None:
        """The backbone's batch-norm statistics, recomputed as exact means over `loader`'s images
        (no augmentation); the weights stay as they are."""
        norms = [
            m
            for m in self.backbone.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        if not norms:
            log.info("model.adapt_bn: the backbone has no batch norm, nothing to re-estimate.")
            return
        kept = [(m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in norms]
        was_training = self.training
        self.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over all batches
            m.train()
        images = 0
        for batch in loader:
            x, _ = preprocess(batch, train=False)
            self.features(x)
            images += len(x)
        for m, (momentum, mean, var) in zip(norms, kept):
            m.momentum = momentum
            if not m.num_batches_tracked:  # a layer the cut never reaches: keep what it had
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        self.train(was_training)
        log.info("Re-estimated %d batch-norm layers on %d training images.", len(norms), images)

    @torch.no_grad()
    def fit_linear_probe(self, train, val, preprocess) -> None:
        """The head's linear layer := a linear probe on the frozen features of the training
        images, its penalty chosen on the validation images."""
        was_training = self.training
        self.eval()
        train_xy, val_xy = self._features_of(train, preprocess), self._features_of(val, preprocess)
        self.train(was_training)
        classes = train_xy[1].unique().numel()
        if classes < 2:
            raise RunnerError(
                f"A linear probe needs labelled images of at least 2 classes; the training split "
                f"has {classes}. Use a dataset with class labels (dataset.train_subset keeps "
                "every class), or a model that learns without labels (model=ae, vae)."
            )
        probe = fit_probe(train_xy, val_xy, self.num_classes, self.probe_solver)
        linear = self.head[-1]
        linear.weight.copy_(probe.weight.to(linear.weight.dtype))
        linear.bias.copy_(probe.bias.to(linear.bias.dtype))
        log.info(
            "Linear probe (%s, %d features): penalty %g chosen on val; train acc %.4f, "
            "val acc %.4f.",
            self.probe_solver,
            linear.in_features,
            probe.l2,
            probe.train_acc,
            probe.val_acc,
        )

    def _features_of(self, loader, preprocess) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = [], []
        for batch in loader:
            x, y = preprocess(batch, train=False)
            features.append(self.features(x).float())
            labels.append(y)
        return torch.cat(features), torch.cat(labels)

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


def _cut_torchvision(model: nn.Module, name: str, cut: Cut) -> int:
    """Cut a torchvision classifier in place; return the width of its features. `hidden` drops the
    last Linear layer (the classifier's dense hidden layers stay), `pooled` the whole classifier
    (what follows global pooling); `auto` is `hidden` where there is one, else `pooled`."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise RunnerError(f"{name} has no linear classifier layer to replace.")
    last_name, last = linears[-1]
    top = last_name.split(".")[0]  # the classifier: fc, classifier, heads, ...
    classifier = [m for n, m in linears if n.split(".")[0] == top]
    cuts = ("pooled", "hidden") if len(classifier) > 1 else ("pooled",)
    if cut == "auto":
        cut = cuts[-1]
    if cut not in cuts:
        raise RunnerError(
            f"model.cut={cut} is not a place to cut {name}: torchvision backbones can be cut at "
            f"{' or '.join(cuts)}"
            + ("" if "hidden" in cuts else f" ({name}'s classifier has no hidden layer)")
            + ". Set model.cut to one of those, or auto."
        )
    if cut == "pooled":
        setattr(model, top, nn.Flatten(1))
        return classifier[0].in_features
    parent = model.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else model
    setattr(parent, last_name.rpartition(".")[2], nn.Identity())
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
    name: str, pretrained: str, input_size: int | None, cut: Cut
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
    features = _cut_torchvision(model, name, cut)
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


def _run_backbone(
    path: Path, cut: Cut, load_run: LoadRun | None
) -> tuple[nn.Module, InputAdapter, int]:
    """The feature extractor of an earlier run (its folder or a checkpoint file), cut at `cut`: a
    CNN's or an encoder's convolutional maps (`trunk`, or `pooled` over space), or its dense layer
    after them (`hidden`: the cnn's hidden layer, an autoencoder's code, a VAE's posterior mean).
    New inputs are adapted to the run's shape."""
    if load_run is None:
        raise RunnerError(
            f"model.pretrained={path} is a run, and this TransferClassifier was built without "
            "load_run to read it: build it with runner.build.build_model(cfg), or pass "
            "load_run=runner.runs.load_run."
        )
    try:
        run = load_run(path, "best")
    except RunnerError as exc:
        raise RunnerError(f"model.pretrained={path}: {exc}") from None
    source, config, path = run.model, run.config, run.checkpoint
    model_cfg = config.model
    shape = tuple(int(s) for s in config["dataset"]["shape"])
    extractor = _FeatureExtractor(source)  # refuses a model without features first
    with torch.no_grad():
        maps = (
            source.conv_maps(torch.zeros(1, *shape))
            if isinstance(source, capabilities.ConvMaps)
            else None
        )
    cuts = ("trunk", "pooled", "hidden") if maps is not None else ("hidden",)
    if cut == "auto":
        cut = next(c for c in AUTO_CUTS if c in cuts)
    elif cut not in cuts:
        raise RunnerError(
            f"model.cut={cut}: the {model_cfg['_target_']} run at {path} has no convolutional "
            "maps to cut (an MLP, or a model that does not expose them); it can only be cut at "
            "hidden. Set model.cut=hidden (or auto), or transfer from a convolutional run "
            "(model=cnn, deep_ae, or vae with arch=conv)."
        )
    extractor.cut = cut
    extractor.eval()
    # The parts of the run the features never reach (a cnn's head, an autoencoder's decoder)
    # stay frozen: they cannot learn, and DDP needs a gradient for every trainable parameter.
    with torch.enable_grad():
        probe = extractor(torch.zeros(2, *shape))
        probe.sum().backward()
    features = probe.shape[1]
    extractor.unused = [p for p in extractor.parameters() if p.grad is None]
    extractor.zero_grad(set_to_none=True)
    log.info(
        "Backbone: %s from %s, cut at %s (%d features, inputs adapted to %s).",
        model_cfg["_target_"],
        path,
        cut,
        features,
        list(shape),
    )
    return extractor, InputAdapter(shape[0], shape[1:]), features


class _FeatureExtractor(nn.Module):
    """A trained model seen as a backbone. `hidden`: a Classifier's `features(x)`, else an
    Encoder's codes; `trunk` and `pooled`: its `conv_maps(x)`, flattened or averaged over space."""

    def __init__(self, model: nn.Module, cut: Cut = "hidden") -> None:
        super().__init__()
        if not isinstance(model, capabilities.Classifier | capabilities.Encoder):
            raise RunnerError(
                f"{type(model).__name__} runs cannot be used as backbones: the model has no "
                "features() and does not encode. Transfer from a cnn or an autoencoder run."
            )
        self.model = model
        self.cut = cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cut == "trunk":
            return self.model.conv_maps(x).flatten(1)
        if self.cut == "pooled":
            return self.model.conv_maps(x).mean(dim=(2, 3))
        if isinstance(self.model, capabilities.Classifier):
            return self.model.features(x).flatten(1)
        return self.model.encode_images(x).flatten(1)  # a VAE's: the posterior mean
