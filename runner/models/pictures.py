"""Small images for TensorBoard drawn with PIL: a confusion matrix and a grid with captions."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


def confusion_matrix_image(matrix: torch.Tensor, names: list[str], cell: int = 28) -> torch.Tensor:
    """Rows are true classes, columns predictions; shade = share of the row, text = count."""
    n = len(names)
    font = ImageFont.load_default()
    margin = 8 + 7 * max(len(x) for x in names)
    image = Image.new("RGB", (margin + n * cell, margin + n * cell), "white")
    draw = ImageDraw.Draw(image)
    rows = matrix.float() / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    for i in range(n):
        draw.text((2, margin + i * cell + cell // 3), names[i], fill="black", font=font)
        draw.text((margin + i * cell + 2, 2), names[i][:4], fill="black", font=font)
        for j in range(n):
            shade = int(255 * (1 - rows[i, j].item()))
            box = (
                margin + j * cell,
                margin + i * cell,
                margin + (j + 1) * cell - 1,
                margin + (i + 1) * cell - 1,
            )
            draw.rectangle(box, fill=(shade, shade, 255))
            draw.text(
                (box[0] + 3, box[1] + cell // 3),
                str(int(matrix[i, j])),
                fill="black" if shade > 120 else "white",
                font=font,
            )
    return _to_tensor(image)


def labelled_grid(
    images: torch.Tensor, captions: list[str], columns: int = 8, scale: int = 3
) -> torch.Tensor:
    """Images [N, C, H, W] in [0, 1] in a grid, each with a caption line under it."""
    n, c, h, w = images.shape
    tile_w, tile_h = max(w * scale, 60), h * scale + 14
    rows = -(-n // columns)
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k in range(n):
        pixels = (images[k].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        tile = Image.fromarray(pixels[..., 0] if c == 1 else pixels).resize(
            (w * scale, h * scale), Image.NEAREST
        )
        x, y = (k % columns) * tile_w, (k // columns) * tile_h
        sheet.paste(tile.convert("RGB"), (x, y))
        draw.text((x + 1, y + h * scale + 1), captions[k], fill="black", font=font)
    return _to_tensor(sheet)


PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def latent_scatter(codes: torch.Tensor, labels: torch.Tensor, size: int = 256) -> torch.Tensor:
    """2-d latent codes as dots coloured by class (the label's digit is drawn beside each dot)."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    low, high = codes.min(dim=0).values, codes.max(dim=0).values
    points = (codes - low) / (high - low).clamp(min=1e-6) * (size - 20) + 10
    for (px, py), label in zip(points.tolist(), labels.tolist()):
        colour = PALETTE[label % len(PALETTE)]
        draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
        draw.text((px + 4, py - 6), str(label), fill=colour)
    return _to_tensor(image)


def series_panels(
    rows: list[torch.Tensor],
    captions: list[str],
    columns: int = 4,
    width: int = 160,
    height: int = 90,
) -> torch.Tensor:
    """Series [N, T, C] as line plots, one panel per series with a caption under it: the first
    tensor solid, later ones (reconstructions) dashed on the same axes. NaN steps are not drawn.
    Channels are coloured like PALETTE; panels share no scale (each fits its own range)."""
    n = len(rows[0])
    tile_h = height + 14
    sheet = Image.new("RGB", (columns * width, -(-n // columns) * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k in range(n):
        series = [r[k].float().cpu() for r in rows]
        values = torch.cat([s.flatten() for s in series])
        values = values[~torch.isnan(values)]
        low, high = (values.min().item(), values.max().item()) if len(values) else (0.0, 1.0)
        x0, y0 = (k % columns) * width, (k // columns) * tile_h
        draw.rectangle((x0 + 1, y0 + 1, x0 + width - 2, y0 + height - 1), outline=(200, 200, 200))
        for r, s in enumerate(series):
            steps = s.shape[0]
            for c in range(s.shape[1]):
                points = [
                    (
                        x0 + 3 + t * (width - 6) / max(steps - 1, 1),
                        y0 + height - 3 - (v - low) / max(high - low, 1e-6) * (height - 6),
                    )
                    for t, v in enumerate(s[:, c].tolist())
                    if v == v  # not NaN
                ]
                # Dashed: every other segment of the reconstruction is left out.
                for i, segment in enumerate(zip(points[:-1], points[1:])):
                    if r == 0 or i % 2 == 0:
                        draw.line(segment, fill=PALETTE[c % len(PALETTE)], width=1)
        draw.text((x0 + 2, y0 + height + 1), captions[k], fill="black", font=font)
    return _to_tensor(sheet)
