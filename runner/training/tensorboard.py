"""TensorBoard: scalars per epoch, image grids, the Custom Scalars layout, and one HParams row
per run with the run's choices (`hparams_of`)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner.config import LoggerConfig

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class TensorBoardLogger:
    """Event files go straight into the run folder, so a sweep folder is one TensorBoard logdir.

    `settings` is the `logger` config group (which images, how often); `purge_step` drops events
    a killed run wrote past its last checkpoint when it resumes. The writer (and TensorBoard's
    import, ~0.15 s) starts at the first write, after the first epoch, not before the first step.
    """

    def __init__(
        self,
        log_dir: Path,
        settings: LoggerConfig | None = None,
        purge_step: int | None = None,
    ) -> None:
        self.settings = settings or LoggerConfig()
        self.log_dir = log_dir
        self.purge_step = purge_step

    @cached_property
    def writer(self) -> SummaryWriter:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.log_dir), purge_step=self.purge_step)

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def layout(self, names: Iterable[str]) -> None:
        """The Custom Scalars tab: one chart per metric with its train and val curves, then the
        per-part metrics (per-class accuracy) each on one chart in a section of their own."""
        self.writer.add_custom_scalars(custom_scalars_layout(names))

    def histograms(self, values: dict[str, torch.Tensor], step: int) -> None:
        for name, tensor in values.items():
            self.writer.add_histogram(name, tensor.detach().cpu(), step)

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
        from torch.utils.tensorboard.summary import hparams as hparams_summary

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
        if "writer" in self.__dict__:
            self.writer.flush()

    def close(self) -> None:
        if "writer" in self.__dict__:
            self.writer.close()


def custom_scalars_layout(names: Iterable[str]) -> dict[str, dict[str, list]]:
    """{section: {chart: ["Multiline", tags or regexes]}} for metric names `split/name[/part]`:
    `train/m` beside `val/m` (and `test/m`) on chart `m`, these per-epoch curves first; then
    the charts that hold one test value each; last every `split/name/<part>` (per class) on one
    chart."""
    charts: dict[str, list[str]] = {}
    parts: set[str] = set()
    for name in sorted(set(names)):
        split, _, rest = name.partition("/")
        if not rest:
            continue
        if "/" in rest:  # test/acc_class/<class>: one curve per part on one chart
            parts.add(f"{split}/{rest.split('/')[0]}")
        else:
            charts.setdefault(rest, []).append(name)
    order = {"train": 0, "val": 1, "test": 2}

    def chart(tags: list[str]) -> list:
        return ["Multiline", sorted(tags, key=lambda t: order.get(t.split("/")[0], 3))]

    single = {c for c, tags in charts.items() if all(t.startswith("test/") for t in tags)}
    layout = {"metrics: train and val": {c: chart(t) for c, t in charts.items() if c not in single}}
    if single:
        layout["test: one value per run"] = {c: chart(charts[c]) for c in sorted(single)}
    if parts:
        layout["per class"] = {chart: ["Multiline", [f"^{chart}/.*"]] for chart in sorted(parts)}
    return layout


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The run's choices and knobs, flat, for TensorBoard's HParams tab."""
    params: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        for group in ("model", "dataset", "optimizer", "scheduler", "experiment"):
            if choices.get(group) is not None:
                params[group] = choices[group]
    for section in ("model", "dataset", "optimizer", "scheduler", "regularization", "trainer"):
        node = OmegaConf.select(cfg, section)
        if isinstance(node, DictConfig):
            _flatten(OmegaConf.to_container(node, resolve=True, enum_to_str=True), section, params)
    return lead_with_overrides(params)


def lead_with_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """What this run's command line set comes first; the rest keeps its order. In a sweep the
    HParams table then leads with what differs between its runs: the swept keys (the run's
    overrides less those the whole sweep holds constant, which the sweep callback lists in
    override_dirname's exclude_keys, as for the run folders' names), then the model and the
    dataset."""
    if not HydraConfig.initialized():
        return params
    hydra = HydraConfig.get()
    keys = [o.split("=", 1)[0].lstrip("+~") for o in hydra.overrides.task]
    if hydra.mode == RunMode.MULTIRUN:
        constant = set(hydra.job.config.override_dirname.exclude_keys)
        keys = [k for k in keys if k not in constant] + ["model", "dataset"]
    first = [k for k in keys if k in params]
    return {**{k: params[k] for k in first}, **params}


_SKIP = {
    "_target_",
    "_partial_",
    "_recursive_",
    "_convert_",
    "root",
    "path",
    "cache_dir",
    "in_shape",
}


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in _SKIP:
                _flatten(value, f"{prefix}.{key}", out)
    else:
        out[prefix] = (
            "null"
            if node is None
            else node
            if isinstance(node, bool | int | float | str)
            else str(node)
        )
