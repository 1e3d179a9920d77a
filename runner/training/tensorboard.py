"""TensorBoard: scalars per epoch, image grids, and one HParams row per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary


class TensorBoardLogger:
    """Event files go straight into the run folder, so a sweep folder is one TensorBoard logdir.

    `purge_step` drops events a killed run wrote past its last checkpoint when it resumes.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def images(self, images: dict[str, torch.Tensor], step: int) -> None:
        for name, image in images.items():
            self.writer.add_image(name, image, step)

    def embedding(
        self, codes: torch.Tensor, labels: list[Any], thumbnails: torch.Tensor | None, tag: str
    ) -> None:
        self.writer.add_embedding(codes, metadata=labels, label_img=thumbnails, tag=tag)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """Write the HParams plugin's three summaries into this run, then the final metrics.

        Metric tags must not be per-epoch series (the tab shows a tag's latest value), so callers
        pass `test/*` and `val/<name>_best`.
        """
        clean = {
            k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in params.items()
        }
        experiment, session_start, session_end = hparams_summary(clean, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
