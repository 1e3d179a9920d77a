"""Classifiers: cross-entropy and accuracy; `CNN` is the plain convolutional baseline, `MLP` the
plain fully connected one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from runner.models.base import Recipe, RunnerModel, Target
from runner.models.blocks import (
    Activation,
    Dropout,
    Init,
    Normalization,
    family_norm,
    init_weights,
    make_activation,
    mlp,
    norm_2d,
)


class Classifier(RunnerModel):
    """A family member that maps images to `num_classes` logits via `self.forward`.

    After testing it reports per-class accuracy and shows a confusion matrix and the misclassified
    test images with their true and predicted labels.
    """

    num_classes: int
    min_classes = 2
    # A classifier of digits has peaked after a few hundred steps; 2,000 are 6 epochs of MNIST.
    recipe = Recipe(steps=2000)
    targets = (
        Target("acc", "majority_acc", "always the training split's most common class", "max"),
    )

    def compute_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self(x).float()
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        return {"loss": loss, "acc": acc}

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """`features(x)` -> logits: the head (runner.models.capabilities.Classifier)."""
        return self.head(features)

    @torch.no_grad()
    def baselines(self, train, test, preprocess) -> dict[str, float]:
        """The accuracy of always answering the training split's most common class."""
        counts = sum(torch.bincount(y.cpu(), minlength=self.num_classes) for _, y in train)
        majority = int(counts.argmax())
        right = sum(int((y == majority).sum()) for _, y in test)
        return {"majority_acc": right / max(1, sum(len(y) for _, y in test))}

    @torch.no_grad()
    def on_test_end(self, loader, preprocess, logger) -> dict[str, float]:
        from runner.models.pictures import confusion_matrix_image

        # Whole-set metrics run once on rank 0 under DDP: nothing to gather from other ranks.
        # The confusion matrix is one bincount; torchmetrics' would cost every classifier run
        # its 3 s import (it pulls in torchvision's model zoo).
        n = self.num_classes
        confusion = torch.zeros(n * n, dtype=torch.long)
        wrong_images, wrong_true, wrong_pred = [], [], []
        for batch in loader:
            x, y = preprocess(batch, train=False)
            pred = self(x).argmax(dim=1)
            confusion += torch.bincount((y * n + pred).cpu(), minlength=n * n)
            miss = pred != y
            if miss.any() and sum(len(w) for w in wrong_images) < 32:
                wrong_images.append(x[miss].cpu())
                wrong_true.append(y[miss].cpu())
                wrong_pred.append(pred[miss].cpu())
        confusion = confusion.view(n, n)  # rows: true class, columns: predicted
        names = self.class_names or [str(i) for i in range(n)]
        accuracy = confusion.diag() / confusion.sum(1).clamp(min=1)
        if logger is not None:
            images = {"test/confusion_matrix": confusion_matrix_image(confusion, names)}
            if wrong_images:
                images["test/misclassified"] = self.misclassified_picture(
                    torch.cat(wrong_images)[:32],
                    [
                        f"{names[t]}>{names[p]}"
                        for t, p in zip(torch.cat(wrong_true), torch.cat(wrong_pred))
                    ][:32],
                )
            logger.images(images, 0)
        return {f"test/acc_class/{name}": float(a) for name, a in zip(names, accuracy)}

    def misclassified_picture(self, x: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """The misclassified test inputs with "true>predicted" captions, as one image."""
        from runner.models.pictures import labelled_grid

        return labelled_grid(x, captions)


class CNN(Classifier):
    """Blocks of (conv 3x3, norm, activation) x `convs_per_block` then 2x2 max-pool, global
    average pooling, dropout and a linear head. `features(x)` gives the penultimate embedding."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: PositiveInt,
        channels: Sequence[int] = (32, 64, 128),
        convs_per_block: PositiveInt = 2,
        hidden_dim: PositiveInt = 128,
        activation: Activation = "relu",
        init: Init = "kaiming",
        dropout: Dropout = 0.0,
        normalization: Normalization = "auto",
    ) -> None:
        super().__init__()
        normalization = family_norm(normalization, "batch")  # a classifier trains best with it
        c_in, h, w = (int(s) for s in in_shape)
        layers: list[nn.Module] = []
        for i, c_out in enumerate(channels):
            for _ in range(convs_per_block):
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=normalization == "none"))
                layers += norm_2d(normalization, c_out) + [make_activation(activation)]
                c_in = c_out
            if min(h, w) >= 2 and i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(
            nn.Linear(c_in, hidden_dim), make_activation(activation), nn.Dropout(dropout)
        )
        self.head = nn.Linear(hidden_dim, num_classes)
        self.num_classes = num_classes
        init_weights(self, init, activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x * 2 - 1))  # inputs arrive in [0, 1]; centre them

    def conv_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional block's maps [N, C, H, W], before pooling: where transfer
        runs can cut the network (model.cut=trunk or pooled)."""
        return self.body[:-2](x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(Classifier):
    """The flattened image through dense `hidden_dims` layers (linear, norm, activation, dropout
    each) and a linear head: the plain network of weight-initialisation studies. `features(x)`
    gives the last hidden layer's output."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: PositiveInt,
        hidden_dims: Sequence[PositiveInt] = (256, 256),
        activation: Activation = "relu",
        init: Init = "kaiming",
        dropout: Dropout = 0.0,
        normalization: Normalization = "auto",
    ) -> None:
        super().__init__()
        normalization = family_norm(normalization, "none")  # plain, unless asked
        width = math.prod(int(s) for s in in_shape)
        layers = mlp([width, *hidden_dims, num_classes], activation, dropout, normalization)
        self.body = layers[:-1]  # every hidden layer with its norm, activation and dropout
        self.head = layers[-1]
        self.num_classes = num_classes
        init_weights(self, init, activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1) * 2 - 1)  # inputs arrive in [0, 1]; centre them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
