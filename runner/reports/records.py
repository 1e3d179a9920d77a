"""Run folders read back as rows: what each run set, how it ended, its metrics and history.

A run folder is what `runner.train` leaves: `.hydra/` (config, overrides), `metrics.json` once it
finished, `checkpoints/last.pt` with the per-epoch history, and `state.json` (written by the sweep
callback when the job ended: finished, failed or pruned). A sweep folder holds run folders (and,
for the Optuna sweeper, `trials.json`, which also lists trials that never got a folder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from runner.errors import RunnerError

# Optuna's trial states as the table names them.
TRIAL_STATES = {
    "COMPLETE": "finished",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "INTERRUPTED": "interrupted",
    "RUNNING": "unfinished",
    "WAITING": "unfinished",
}
# Keys that say where or how a run was bookkept, never what it learned with; the Optuna sweeper's
# search.storage, .study and .trial among them, but not search.sampler: in a race of samplers it
# says which search proposed the run, so it is compared like any swept key.
BOOKKEEPING = ("hydra", "paths", "search", "task_name")
COMPARED = ("search.sampler",)
GROUPS = ("model", "dataset", "optimizer", "scheduler", "regularization", "trainer", "logger")


@dataclass
class RunRecord:
    """One row of the comparison."""

    name: str  # the job number in a sweep, else the folder name
    folder: Path | None  # None for a trial that failed before it got a folder
    metric: str | None  # the run's optimized_metric and optimized_mode
    mode: str | None
    overrides: dict[str, str] = field(default_factory=dict)  # key -> value, as typed
    settings: dict[str, Any] = field(default_factory=dict)  # flat config plus group choices
    metrics: dict[str, float] = field(default_factory=dict)  # metrics.json's final metrics
    summary: dict[str, Any] = field(default_factory=dict)  # the whole metrics.json
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    state: str = "unfinished"
    error: str = ""
    wall_time_s: float | None = None
    number: int | None = None  # the Hydra job number, for ordering and Optuna's trials

    @property
    def value(self) -> float | None:
        """The optimised metric: the run's result, else the best its epochs reached."""
        if self.metric is None:
            return None
        value = self.metrics.get(self.metric)
        if value is None:
            seen = [e[self.metric] for e in self.history if _finite(e.get(self.metric))]
            if seen:
                value = min(seen) if self.mode == "min" else max(seen)
        return value if _finite(value) else None

    @property
    def best_epoch(self) -> float | None:
        """1-based; for cross-validation the mean over folds."""
        if "best_epoch" in self.summary:
            return self.summary["best_epoch"]
        folds = [f.get("best_epoch") for f in self.summary.get("fold_summaries", [])]
        if folds and all(f is not None for f in folds):
            return round(sum(folds) / len(folds), 2)
        seen = [(e[self.metric], i) for i, e in enumerate(self.history) if self.metric in e]
        if not seen:
            return None
        pick = min if self.mode == "min" else max
        return pick(seen)[1] + 1

    def final(self, name: str) -> float | None:
        """`name` at the last epoch trained."""
        return self.history[-1].get(name) if self.history else None


@dataclass
class Comparison:
    """The runs, what varies between them, and the metric they are ranked by."""

    records: list[RunRecord]
    varying: list[str]  # keys whose values differ between the runs, in the order found
    metric: str
    mode: str
    sources: list[Path]

    @property
    def best(self) -> RunRecord | None:
        ranked = [r for r in self.records if r.value is not None]
        return ranked[0] if ranked else None

    def values(self, record: RunRecord) -> dict[str, str]:
        """The run's value of every varying key, as text."""
        return {key: value_of(record, key) for key in self.varying}

    def label(self, record: RunRecord) -> str:
        """What sets a run apart, shortest first: `lr=0.01, dropout=0.2`."""
        short = short_names(self.varying)
        text = ", ".join(f"{short[k]}={v}" for k, v in self.values(record).items())
        return text or str(record.name)


def collect(
    folders: Iterable[Path], metric: str | None = None, mode: str | None = None
) -> Comparison:
    """Every run in `folders` (a sweep folder stands for its runs), ranked by the optimised
    metric. Raises RunnerError for a folder that is no run, for runs optimising different
    metrics, and when there is nothing to compare."""
    sources = [Path(f).expanduser() for f in folders]
    if not sources:
        raise RunnerError(
            "Nothing to compare: pass run or sweep folders, "
            "runs=[multirun/<date>/<time>] or runs=[outputs/<date>/<time>,outputs/<date>/<time>]."
        )
    records: list[RunRecord] = []
    for source in sources:
        records += read_folder(source)
    if not records:
        raise RunnerError(
            f"Nothing to compare: {', '.join(map(str, sources))} holds no runs yet (no folder "
            "with .hydra/ inside). Pass the sweep folder once its first run has started."
        )
    seen = {(r.metric, r.mode) for r in records if r.metric is not None}
    if metric is None:
        if len(seen) > 1:
            shown = "; ".join(
                f"{r.folder or r.name}: {r.mode} {r.metric}" for r in _first_of_each(records)
            )
            raise RunnerError(
                "These runs optimise different metrics, so no ranking fits them all ("
                + shown
                + "). Compare runs of one task: the same optimized_metric and optimized_mode."
            )
        metric, mode = next(iter(seen)) if seen else ("val/loss", "min")
    mode = mode or "min"
    for record in records:
        record.metric, record.mode = metric, mode
    records.sort(key=lambda r: _rank(r, mode))
    return Comparison(records, varying_keys(records), metric, mode, sources)


def read_folder(folder: Path) -> list[RunRecord]:
    """The runs of a sweep folder, or the one run a run folder is."""
    if not folder.is_dir():
        raise RunnerError(
            f"{folder} does not exist. Pass run folders (outputs/<date>/<time>) or sweep folders "
            "(multirun/<date>/<time>)."
        )
    if is_run(folder):
        return [read_run(folder)]
    runs = [p for p in folder.iterdir() if is_run(p)]
    trials = folder / "trials.json"
    if not runs and not (folder / "multirun.yaml").is_file() and not trials.is_file():
        raise RunnerError(
            f"{folder} is neither a run nor a sweep of this project: it has no .hydra/config.yaml "
            "and no run folders inside. Pass the folder runner.train printed as its run folder, "
            "or a sweep's multirun/<date>/<time>."
        )
    records = sorted(
        (read_run(p) for p in runs), key=lambda r: (r.number is None, r.number or 0, r.name)
    )
    if trials.is_file():
        records = with_trials(records, json.loads(trials.read_text()))
    return records


def is_run(folder: Path) -> bool:
    """A folder Hydra ran a job in, or one runner.train's Python API trained into."""
    return (folder / ".hydra" / "config.yaml").is_file() or (
        folder / "checkpoints" / "last.pt"
    ).is_file()


def read_run(folder: Path) -> RunRecord:
    """One run folder, whatever state it ended in."""
    hydra_dir = folder / ".hydra"
    config = _load(hydra_dir / "config.yaml")
    if config is None:  # no Hydra job: the config its checkpoint saved
        config = _checkpoint(folder).get("config")
    if not isinstance(config, dict) or "optimized_metric" not in config:
        raise RunnerError(
            f"{folder} is not a run of runner.train: its config (.hydra/config.yaml, or the one "
            "its checkpoint saved) names no optimized_metric."
        )
    hydra = (_load(hydra_dir / "hydra.yaml") or {}).get("hydra", {})
    overrides = {}
    for line in _load(hydra_dir / "overrides.yaml") or []:
        key, _, value = str(line).partition("=")
        overrides[key.lstrip("+~")] = value
    settings = flatten(config)
    settings.update((g, c) for g, c in (hydra.get("runtime", {}).get("choices") or {}).items())
    num = hydra.get("job", {}).get("num")
    multirun = hydra.get("mode") == "MULTIRUN" and isinstance(num, int)
    record = RunRecord(
        name=str(num) if multirun else folder.name,
        folder=folder.resolve(),
        metric=config.get("optimized_metric"),
        mode=config.get("optimized_mode"),
        overrides=overrides,
        settings=settings,
        number=num if multirun else None,
    )
    summary = _json(folder / "metrics.json")
    if summary is not None:
        record.summary = summary
        record.metrics = {k: v for k, v in summary.get("metrics", {}).items() if _number(v)}
        record.state = "finished"
        record.wall_time_s = summary.get("wall_time_s")
    folds = sorted(folder.glob("fold_*"), key=lambda p: p.name)
    if folds:  # cross-validation: the parent holds the means, each fold its own run
        fold_summaries = [_json(f / "metrics.json") or {} for f in folds]
        record.summary["fold_summaries"] = fold_summaries
        times = [s.get("wall_time_s") for s in fold_summaries]
        if record.wall_time_s is None and times and all(_number(t) for t in times):
            record.wall_time_s = round(sum(times), 3)
        record.history = mean_history([read_history(f) for f in folds])
    else:
        record.history = read_history(folder)
    ended = _json(folder / "state.json")
    if ended is not None:
        record.state = ended.get("state", record.state)
        record.error = ended.get("error", "")
        if record.wall_time_s is None:
            record.wall_time_s = ended.get("duration_s")
    return record


def read_history(folder: Path) -> list[dict[str, float]]:
    """The per-epoch metrics that checkpoints/last.pt holds ([] without one)."""
    history = _checkpoint(folder).get("history")
    return [dict(e) for e in history] if isinstance(history, list) else []


def _checkpoint(folder: Path) -> dict[str, Any]:
    """checkpoints/last.pt, memory-mapped (its history and config without reading the weights);
    {} when there is none or it cannot be read."""
    last = folder / "checkpoints" / "last.pt"
    if not last.is_file():
        return {}
    import torch

    try:
        state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return {}
    return state if isinstance(state, dict) else {}


def mean_history(histories: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Per epoch, the mean over folds of every metric all folds have (as far as all reached)."""
    histories = [h for h in histories if h]
    if not histories:
        return []
    epochs = min(len(h) for h in histories)
    mean = []
    for i in range(epochs):
        keys = [k for k in histories[0][i] if all(k in h[i] for h in histories)]
        mean.append({k: sum(h[i][k] for h in histories) / len(histories) for k in keys})
    return mean


def with_trials(records: list[RunRecord], trials: list[dict[str, Any]]) -> list[RunRecord]:
    """The Optuna sweeper's account of each trial: its state and error for the trial's folder,
    and a row of its own for a trial that failed before a folder was made.

    A trial finds its run by folder, else by job number (a sweep folder moved since): never by
    trial number alone, which repeats across the studies of a race of samplers."""
    by_folder = {str(r.folder): r for r in records if r.folder is not None}
    by_job = {r.number: r for r in records if r.number is not None}
    out = list(records)
    for trial in trials:
        job = trial.get("job", trial.get("number"))  # trials.json before job numbers: the same
        state = TRIAL_STATES.get(str(trial.get("state")), str(trial.get("state")).lower())
        folder = trial.get("folder")
        record = by_folder.get(str(Path(folder).resolve())) if folder else None
        record = record or by_job.get(job)
        if record is None:
            params = {k[7:]: v for k, v in trial.items() if k.startswith("params.")}
            settings = dict(params)
            if trial.get("sampler") is not None:
                settings["search.sampler"] = trial["sampler"]
            record = RunRecord(
                name=str(job),
                folder=None,
                metric=None,
                mode=None,
                overrides={k: _text(v) for k, v in params.items()},
                settings=settings,
                number=job,
                wall_time_s=trial.get("duration_s"),
            )
            out.append(record)
        record.state = state
        record.error = trial.get("error") or record.error
    return out


def varying_keys(records: list[RunRecord]) -> list[str]:
    """Keys whose values differ between the runs: what the command lines set first (in the order
    typed), then group choices and config keys that differ all the same (runs of different days);
    keys inside a group whose choice differs are left to that choice."""
    keys: list[str] = []
    for record in records:
        keys += [k for k in record.overrides if k not in keys and not _bookkeeping(k)]
    for record in records:
        keys += [k for k in record.settings if k not in keys and not _bookkeeping(k)]
    # A trial without a folder knows only its own parameters: it takes part where it knows.
    varying = [
        k
        for k in keys
        if len({value_of(r, k) for r in records if r.folder is not None or _knows(r, k)}) > 1
    ]
    chosen = {k for k in varying if k in GROUPS}
    typed = {k for r in records for k in r.overrides}
    return [k for k in varying if k in chosen or k.split(".")[0] not in chosen or k in typed]


def value_of(record: RunRecord, key: str) -> str:
    """The run's value of `key` as text: from its config (so 1e-3 and 0.001 are one value), else
    as typed on its command line."""
    if key in record.settings:
        return _text(record.settings[key])
    return record.overrides.get(key, "")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"optimizer.lr": 0.001, ...}: one entry per leaf; lists stay whole."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key by its last part where that is unambiguous: optimizer.lr -> lr."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def _knows(record: RunRecord, key: str) -> bool:
    return key in record.settings or key in record.overrides


def _bookkeeping(key: str) -> bool:
    if key in COMPARED:
        return False
    head = key.split(".")[0]
    return head in BOOKKEEPING or head.startswith("hydra/") or key in ("ckpt_path", "tags")


def _rank(record: RunRecord, mode: str) -> tuple:
    value = record.value
    if value is None:
        return (1, 0.0, record.number if record.number is not None else math.inf)
    return (0, value if mode == "min" else -value, 0)


def _first_of_each(records: list[RunRecord]) -> list[RunRecord]:
    seen, out = set(), []
    for r in records:
        if r.metric is not None and (r.metric, r.mode) not in seen:
            seen.add((r.metric, r.mode))
            out.append(r)
    return out


def _load(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:
        raise RunnerError(f"{path} cannot be read ({type(exc).__name__}: {exc}).") from None


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
