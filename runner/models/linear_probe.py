"""A linear probe: logistic regression (L-BFGS) or ridge regression (closed form) on frozen
features, its L2 strength chosen on the validation split. Transfer runs use it as a read-out of how
good a backbone's features are (`model.mode=linear_probe`) and as the starting head of fine-tuning
(`model.head_init=probe`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Solver = Literal["lbfgs", "closed_form"]
# Penalties tried, strongest first (each fit starts from the last one's solution): the weight of
# the summed squared weights of standardised features against the mean loss per image.
L2_GRID = tuple(10.0**k for k in range(1, -6, -1))


@dataclass
class Probe:
    weight: torch.Tensor  # [classes, features], for the raw (not standardised) features
    bias: torch.Tensor  # [classes]
    l2: float  # the penalty chosen on the validation split
    val_acc: float
    train_acc: float


def fit_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    solver: Solver = "lbfgs",
) -> Probe:
    """Fit one linear classifier per penalty in L2_GRID on `train` (features [N, D], labels [N])
    and keep the one with the best accuracy on `val` (ties: the stronger penalty)."""
    x, y = train
    mean = x.mean(0)
    scale = x.std(0, unbiased=False).clamp_min(1e-6)  # dead ReLU units: constant zero
    xs, vs = (x - mean) / scale, (val[0] - mean) / scale
    best: tuple[float, float, torch.Tensor, torch.Tensor] | None = None
    w = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device)
    b = torch.zeros(num_classes, dtype=x.dtype, device=x.device)
    for l2 in L2_GRID:
        if solver == "lbfgs":
            w, b = _logistic(xs, y, l2, w, b)
        else:
            w, b = _ridge(xs, y, vs, val[1], num_classes, l2)
        acc = _accuracy(vs, val[1], w, b)
        if best is None or acc > best[0]:
            best = (acc, l2, w.clone(), b.clone())
    acc, l2, w, b = best
    # Fold the standardisation in: w (x - m) / s + b = (w / s) x + (b - (w / s) m).
    weight = w / scale
    bias = b - weight @ mean
    return Probe(weight, bias, l2, acc, _accuracy(x, y, weight, bias))


def _accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return (x @ w.T + b).argmax(1).eq(y).float().mean().item()


def _logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression: mean cross-entropy + l2 * sum(w^2), full-batch L-BFGS."""
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=200, tolerance_grad=1e-6, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _ridge(
    x: torch.Tensor,
    y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    k: int,
    l2: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares onto one-hot targets, solved in closed form (in the N x N form when there are
    more features than images), then one temperature fitted on `val` so that the scores are
    usable logits (their cross-entropy is the run's loss)."""
    n, d = x.shape
    target = F.one_hot(y, k).to(x.dtype)
    centre = target.mean(0)
    t = (target - centre).double()
    xd = x.double()
    penalty = l2 * n  # mean squared error + l2 * sum(w^2), as in the logistic fit
    if d <= n:
        w = torch.linalg.solve(xd.T @ xd + penalty * torch.eye(d, dtype=xd.dtype), xd.T @ t)
    else:
        w = xd.T @ torch.linalg.solve(xd @ xd.T + penalty * torch.eye(n, dtype=xd.dtype), t)
    w = w.T.to(x.dtype)
    b = centre.clone()
    scores = val_x @ w.T + b
    temperatures = torch.logspace(-1, 3, 41, dtype=x.dtype)
    losses = [F.cross_entropy(scores * tmp, val_y).item() for tmp in temperatures]
    tmp = temperatures[min(range(len(losses)), key=losses.__getitem__)]
    return w * tmp, b * tmp
