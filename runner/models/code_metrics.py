"""What an image autoencoder's codes are worth, measured once on the finished model (its
`code_metrics`, which the loop runs beside the baselines): how well a linear classifier reads the
class from them, beside the same probe on PCA's codes of the same size, and how the model
reconstructs clean and noisy test images."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch

from runner.models.linear_probe import fit_probe
from runner.models.noise import FixedNoise
from runner.models.pca import fit_pca

# The probes learn from the codes of the first PROBE_IMAGES training images in the loader's order:
# a cap that keeps MNIST's probes to about a second, where its 60,000 would cost several times that
# for a number that barely moves.
PROBE_IMAGES = 10_000
# This share of them, drawn with PROBE_SEED, chooses the probe's L2 strength.
PROBE_VAL_FRACTION = 0.2
PROBE_SEED = 0

Coder = Callable[[torch.Tensor], torch.Tensor]
Labelled = tuple[torch.Tensor, torch.Tensor]  # features [N, D] and labels [N], on the CPU


@torch.no_grad()
def score_codes(
    encode: Coder,
    decode: Coder,
    train: Iterable,
    test: Iterable,
    preprocess: Callable,
    recon: bool = False,
) -> dict[str, float]:
    """`probe_acc`: a linear probe fitted on the training split's codes, scored on the test
    split's; `pca_probe_acc`: the same on PCA codes of the same size, fitted on the same images;
    `denoise_mse` and `noisy_mse`: per-pixel MSE against the clean test image of the
    reconstruction of it under FIXED_NOISE, and of the noisy image itself; with `recon`, also
    `recon_mse`, of its reconstruction (a family whose test pass does not report that one).

    `encode`: images in [0, 1] -> codes [N, D]; `decode`: codes -> images in [0, 1]."""
    images, train_codes, train_labels = _first_images(encode, train, preprocess)
    pca = fit_pca([images], train_codes.shape[1])
    train_pca = pca.encode(images.flatten(1))
    del images
    noise = FixedNoise()
    errors = dict.fromkeys(("recon_mse",) * recon + ("denoise_mse", "noisy_mse"), 0.0)
    values = 0
    test_codes, test_pca, test_labels = [], [], []
    for batch in test:
        x, y = preprocess(batch, train=False)
        codes = encode(x)
        noisy = noise(x)
        if recon:
            errors["recon_mse"] += _squared_error(decode(codes), x)
        errors["denoise_mse"] += _squared_error(decode(encode(noisy)), x)
        errors["noisy_mse"] += _squared_error(noisy, x)
        values += x.numel()
        test_codes.append(codes.float().cpu())
        test_pca.append(pca.encode(x.flatten(1).float().cpu()))
        test_labels.append(y.long().cpu())
    labels = torch.cat(test_labels)
    classes = int(torch.cat([train_labels, labels]).max()) + 1
    return {
        "probe_acc": probe_accuracy(
            (train_codes, train_labels), (torch.cat(test_codes), labels), classes
        ),
        "pca_probe_acc": probe_accuracy(
            (train_pca, train_labels), (torch.cat(test_pca), labels), classes
        ),
        **{name: total / max(values, 1) for name, total in errors.items()},
    }


def probe_accuracy(train: Labelled, test: Labelled, classes: int) -> float:
    """Test accuracy of `fit_probe` on `train`, less a seeded PROBE_VAL_FRACTION that picks its
    L2 strength."""
    codes, labels = train
    order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(PROBE_SEED))
    held = order[: max(1, round(len(codes) * PROBE_VAL_FRACTION))]
    fit = order[len(held) :]
    with _one_thread():
        probe = fit_probe((codes[fit], labels[fit]), (codes[held], labels[held]), classes)
    predicted = (test[0] @ probe.weight.T + probe.bias).argmax(1)
    return predicted.eq(test[1]).float().mean().item()


def _first_images(
    encode: Coder, loader: Iterable, preprocess: Callable
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first PROBE_IMAGES images of `loader`, their codes and their labels, on the CPU."""
    images, codes, labels = [], [], []
    count = 0
    for batch in loader:
        x, y = preprocess(batch, train=False)
        x, y = x[: PROBE_IMAGES - count], y[: PROBE_IMAGES - count]
        images.append(x.float().cpu())
        codes.append(encode(x).float().cpu())
        labels.append(y.long().cpu())
        count += len(x)
        if count >= PROBE_IMAGES:
            break
    return torch.cat(images), torch.cat(codes), torch.cat(labels)


def _squared_error(output: torch.Tensor, target: torch.Tensor) -> float:
    return float((output.float() - target.float()).pow(2).sum())


@contextmanager
def _one_thread() -> Iterator[None]:
    """L-BFGS on a few thousand codes is thousands of small operations: a second thread gains
    nothing and, on a busy machine, makes each one wait for it (0.4 s became 25 s on digits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
