"""Users' own image files, read as a run saw its images: resized to its shape, gray or colour,
uint8 [N, C, H, W] (the loop's preprocessing then scales them to [0, 1])."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from runner.errors import RunnerError


def image_transform(channels: int, height: int, width: int):
    """PIL image (RGB) -> uint8 tensor of the given shape; image-folder datasets use it too."""
    import torchvision.transforms.v2 as T

    steps = [T.Resize((height, width), antialias=True)]
    steps.append(T.Grayscale(1) if channels == 1 else T.RGB())
    return T.Compose([*steps, T.PILToTensor()])


def image_files(path: str | Path) -> list[Path]:
    """One image file, or the image files in a folder and its sub-folders, sorted."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RunnerError(f"input={path} does not exist: pass a folder of images or one image.")
    from torchvision.datasets.folder import IMG_EXTENSIONS  # what image folders accept

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise RunnerError(
            f"input={path} holds no images (looked for {', '.join(IMG_EXTENSIONS)} files)."
        )
    return files


def read_images(path: str | Path, shape: Sequence[int]) -> tuple[torch.Tensor, list[Path]]:
    """The images at `path` as uint8 [N, *shape], with their files; an unreadable one is named."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = (int(s) for s in shape)
    transform = image_transform(channels, height, width)
    files = image_files(path)
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(transform(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as exc:
            raise RunnerError(f"Cannot read the image {file}: {exc}. Fix or remove it.") from None
    return torch.stack(images), files
