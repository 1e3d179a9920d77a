"""`python -m runner.sample ckpt_path=RUN [n=64] [seed=0] [input=FOLDER] [steps=10] ...`

(`--help` lists the options, runner/entry_config.py's SampleOptions holds them.)

Draw from a finished generative run (`vae`, `beta_vae`, `gan`, and the autoencoders): a new folder
gets `samples.png` (a grid of `n`) and `samples/<k>.png` (one file per sample), and
`interpolation.png` (rows walking in `steps` steps from one code to another). Runs with an encoder
(VAE, autoencoders) also get `reconstructions.png` and `reconstructions/<name>.png`, each input
beside its reconstruction, of the images in `input=FOLDER` or else of the first `n` test images.
The same `seed` gives the same pictures. Codes come from each family's prior: N(0, I) for the VAE
and the GAN; for an autoencoder, which has none, a Gaussian fitted to its test images' codes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from runner.build import build_data
from runner.config import CONF_DIR
from runner.console import reported
from runner.data.files import image_files, read_images
from runner.data.loader import BatchPreprocessor, make_loader
from runner.entry import prepare, start
from runner.entry_config import SampleOptions
from runner.errors import RunnerError
from runner.models.capabilities import Decoder, Encoder
from runner.runs import Run
from runner.training.device import select_device

log = logging.getLogger("runner.sample")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sample")
@reported
def sample(composed: DictConfig) -> float:
    """Hydra's task function; returns the number of images written."""
    reused, out = prepare(composed, "sample")
    written = draw_pictures(reused.run, reused.config, out, reused.options)
    print(f"{written} images in {out}", flush=True)
    return float(written)


def draw_pictures(run: Run, cfg: DictConfig, out: Path, options: SampleOptions) -> int:
    """Samples, interpolations and reconstructions of `run` into `out`; the number of files."""
    usable(run, cfg, options)
    out.mkdir(parents=True, exist_ok=True)
    model = run.model
    device = select_device(cfg.trainer.device)
    model.to(device)
    n, steps = options.n, options.steps
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    test_images = None
    encodes = isinstance(model, Encoder)
    if model.prior == "codes" or (options.input is None and encodes):
        test_images = first_test_images(cfg, device, max(n, 1000))
    draw = code_sampler(model, test_images, device)
    written = 0
    with torch.no_grad():
        samples = decode(model, draw(n, generator), device)
        written += save(samples, out / "samples.png", out / "samples", nrow=8)
        rows = min(8, n)
        start_codes, end_codes = draw(rows, generator), draw(rows, generator)
        alphas = torch.linspace(0, 1, steps).view(1, steps, 1)
        path = (1 - alphas) * start_codes[:, None] + alphas * end_codes[:, None]
        walk = decode(model, path.flatten(0, 1), device)
        written += save(walk, out / "interpolation.png", nrow=steps)
        if encodes:
            written += reconstruct(model, cfg, test_images, out, n, options.input, device)
    return written


def usable(run: Run, cfg: DictConfig, options: SampleOptions) -> None:
    """Only families that decode codes into images can sample; `input=` must hold images."""
    if not isinstance(run.model, Decoder):
        raise RunnerError(
            f"{run.checkpoint} holds a {run.config.model._target_}, which cannot draw images: "
            "runner.sample takes vae, gan and autoencoder runs (runner.predict classifies with "
            "cnn and transfer runs)."
        )
    if options.input is not None:
        image_files(options.input)


def first_test_images(cfg: DictConfig, device: torch.device, count: int) -> torch.Tensor:
    """Up to `count` test images of the run's data, in [0, 1]."""
    data = build_data(cfg)
    preprocess = BatchPreprocessor()
    images, total = [], 0
    batch_size = cfg.trainer.eval_batch_size or cfg.trainer.batch_size
    for batch in make_loader(
        data.test, batch_size, device, cfg.trainer.loader, num_workers=cfg.trainer.num_workers
    ):
        x, _ = preprocess(batch, train=False)
        images.append(x)
        total += len(x)
        if total >= count:
            break
    return torch.cat(images)[:count]


def code_sampler(model, test_images: torch.Tensor | None, device: torch.device):
    """`draw(k, generator)` -> k codes from the family's prior (on the CPU, seeded)."""
    if model.prior == "normal":
        return lambda k, g: torch.randn(k, model.latent_dim, generator=g)
    with torch.no_grad():
        codes = model.encode_images(test_images.to(device)).float().cpu()
    mean = codes.mean(dim=0)
    # A small ridge keeps the covariance positive definite when some code units never vary.
    cov = torch.cov(codes.T) + 1e-5 * torch.eye(codes.shape[1])
    factor = torch.linalg.cholesky(cov)
    return lambda k, g: mean + torch.randn(k, codes.shape[1], generator=g) @ factor.T


def decode(model, codes: torch.Tensor, device: torch.device, batch: int = 500) -> torch.Tensor:
    parts = [
        model.decode_images(codes[i : i + batch].to(device)) for i in range(0, len(codes), batch)
    ]
    return torch.cat(parts).float().clamp(0, 1).cpu()


def save(images: torch.Tensor, grid: Path, folder: Path | None = None, nrow: int = 8) -> int:
    """A grid PNG, and with `folder` one PNG per image; returns the number of files written."""
    from torchvision.utils import save_image

    save_image(images, grid, nrow=nrow, padding=1, pad_value=1.0)
    if folder is None:
        return 1
    folder.mkdir(exist_ok=True)
    for k, image in enumerate(images):
        save_image(image, folder / f"{k:04d}.png")
    return 1 + len(images)


def reconstruct(model, cfg, test_images, out: Path, n: int, input, device: torch.device) -> int:
    """Inputs beside their reconstructions: the user's images, or the first n test images."""
    from torchvision.utils import save_image

    from runner.models.blocks import image_pairs

    if input is not None:
        raw, files = read_images(input, cfg.dataset.shape)
        inputs, names = raw.float() / 255, [f.stem for f in files]
    else:
        inputs = test_images[:n].cpu()
        names = [f"test_{k:04d}" for k in range(len(inputs))]
    outputs = decode(model, model.encode_images(inputs.to(device)), device)
    save_image(image_pairs(inputs, outputs), out / "reconstructions.png")
    folder = out / "reconstructions"
    folder.mkdir(exist_ok=True)
    for name, x, y in zip(names, inputs, outputs):
        save_image(torch.cat([x, y], dim=-1), folder / f"{name}.png")
    return 1 + len(names)


def main() -> None:
    """Console entry point (runner-sample)."""
    start(sample)


if __name__ == "__main__":
    main()
