"""`python -m runner.predict ckpt_path=RUN input=FOLDER|FILE [top_k=3] [grid=true] ...`

Classify your own images with a finished classifier run (`cnn`, `transfer`): each image is read
as the run saw its data (resized to its shape, gray or colour, then the model's own
normalisation), and a new folder gets `predictions.csv` (file, predicted class, its probability,
the top-k classes with theirs) and, with `grid=true`, `predictions.png`: the images captioned
with their predictions. (`--help` lists the options, runner/entry_config.py's PredictOptions holds
them.)
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from runner.config import CONF_DIR
from runner.console import reported
from runner.data.files import image_files, read_images
from runner.data.loader import BatchPreprocessor
from runner.entry import prepare, start
from runner.entry_config import PredictOptions
from runner.errors import RunnerError
from runner.models.capabilities import Classifier
from runner.runs import Run
from runner.training.device import select_device

log = logging.getLogger("runner.predict")

GRID_IMAGES = 64


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
@reported
def predict(composed: DictConfig) -> float:
    """Hydra's task function; returns the mean probability of the predicted classes."""
    reused, out = prepare(composed, "predict")
    return write_predictions(reused.run, reused.config, out, reused.options)


def write_predictions(run: Run, cfg: DictConfig, out: Path, options: PredictOptions) -> float:
    """predictions.csv (and predictions.png) for the images at `options.input`; returns the
    mean probability of the predicted classes."""
    usable(run, cfg, options)
    out.mkdir(parents=True, exist_ok=True)
    model = run.model
    images, files = read_images(options.input, cfg.dataset.shape)
    device = select_device(cfg.trainer.device)
    model.to(device)
    probabilities = class_probabilities(model, images, device, cfg.trainer.batch_size)
    names = run.model.class_names or [str(i) for i in range(probabilities.shape[1])]
    top = probabilities.topk(min(options.top_k, len(names)), dim=1)
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        k = top.indices.shape[1]
        writer.writerow(["file", "predicted", "probability", *[f"top{i + 1}" for i in range(k)]])
        for file, p, i in zip(files, top.values.tolist(), top.indices.tolist()):
            ranked = [f"{names[c]}:{q:.4f}" for c, q in zip(i, p)]
            writer.writerow([str(file), names[i[0]], f"{p[0]:.6f}", *ranked])
    if options.grid:
        save_grid(
            images[:GRID_IMAGES],
            [
                f"{names[i[0]]} {p[0]:.2f}"
                for i, p in zip(top.indices.tolist(), top.values.tolist())
            ],
            out / "predictions.png",
        )
    print(f"{len(files)} predictions: {out / 'predictions.csv'}", flush=True)
    return float(top.values[:, 0].mean())


def usable(run: Run, cfg: DictConfig, options: PredictOptions) -> None:
    """A classifier, and images to classify."""
    if not isinstance(run.model, Classifier):
        raise RunnerError(
            f"{run.checkpoint} holds a {run.config.model._target_}, not a classifier: "
            "runner.predict takes cnn and transfer runs (runner.sample draws from vae, gan and "
            "autoencoder runs)."
        )
    if options.input is None:
        raise RunnerError("runner.predict needs input=<a folder of images or one image file>.")
    image_files(options.input)


@torch.no_grad()
def class_probabilities(
    model: Classifier, images: torch.Tensor, device: torch.device, batch_size: int
) -> torch.Tensor:
    """Softmax over the classes for uint8 images [N, C, H, W], in batches, on the CPU."""
    preprocess = BatchPreprocessor()
    out = []
    for start_at in range(0, len(images), batch_size):
        batch = images[start_at : start_at + batch_size].to(device)
        x, _ = preprocess((batch, None), train=False)
        out.append(model(x).float().softmax(dim=1).cpu())
    return torch.cat(out)


def save_grid(images: torch.Tensor, captions: list[str], path) -> None:
    from torchvision.utils import save_image

    from runner.models.pictures import labelled_grid

    save_image(labelled_grid(images.float() / 255, captions), path)


def main() -> None:
    """Console entry point (runner-predict)."""
    start(predict)


if __name__ == "__main__":
    main()
