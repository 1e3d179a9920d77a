"""summary.csv and summary.md: one row per run, best first; what differs between the runs leads,
then the metrics, how training went, and where the run is."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from runner.reports.records import Comparison, RunRecord

GAP = "loss gap (val-train)"
# Pictures the Optuna sweeper leaves in its sweep folder (the files are all the two share):
# linked under curves.png where they exist.
STUDY_PICTURES = ("best_so_far.png", "optimization_history.png", "param_importances.png")


def metric_columns(comparison: Comparison) -> list[str]:
    """The optimised metric, the other validation metrics (at the best epoch), the test metrics
    (of the best checkpoint), cross-validation's mean and spread; per-class parts are left to
    metrics.json."""
    metric = comparison.metric
    names: list[str] = []
    for record in comparison.records:
        names += [n for n in record.metrics if n not in names]
    wanted = [
        n
        for n in names
        if (n.count("/") == 1 or n.startswith("cv/")) and n != f"{metric}_best" and n != metric
    ]
    order = {"val": 0, "test": 1, "cv": 2}
    wanted.sort(key=lambda n: order.get(n.split("/")[0], 3))
    return [metric, *wanted]


def rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The table as dicts, column by column in display order."""
    metric = comparison.metric
    columns = metric_columns(comparison)
    out = []
    for record in comparison.records:
        row: dict[str, Any] = {"run": record.name, **comparison.values(record)}
        row[metric] = record.value
        row.update({c: record.metrics.get(c) for c in columns[1:]})
        row[f"final {metric}"] = record.final(metric)
        row["best_epoch"] = record.best_epoch
        row["epochs"] = record.summary.get("epochs_trained", len(record.history) or None)
        row[GAP] = loss_gap(record)
        row["wall_time_s"] = record.wall_time_s
        row["state"] = record.state
        row["error"] = record.error
        row["folder"] = str(record.folder) if record.folder else ""
        out.append(row)
    if not any(r["error"] for r in out):
        for r in out:
            del r["error"]
    return out


def loss_gap(record: RunRecord) -> float | None:
    """val/loss - train/loss at the last epoch: how far the model fits its training data better
    than data it has not seen (large and growing: overfitting)."""
    train, val = record.final("train/loss"), record.final("val/loss")
    return None if train is None or val is None else val - train


def seed_keys(comparison: Comparison) -> list[str]:
    """The varying keys that only draw a seed (trainer.seed, dataset.split_seed, cv.seed)."""
    return [k for k in comparison.varying if k.rsplit(".", 1)[-1].endswith("seed")]


def over_seeds(comparison: Comparison) -> list[dict[str, Any]]:
    """Runs that differ only in their seeds, as one row each: how many finished, then the mean and
    the standard deviation (ddof=0) over them of every metric column. [] when no seed varies or
    no setting was run with two seeds."""
    seeds = seed_keys(comparison)
    if not seeds:
        return []
    others = [k for k in comparison.varying if k not in seeds]
    columns = metric_columns(comparison)
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in comparison.records:
        if record.state == "finished":
            key = tuple(comparison.values(record)[k] for k in others)
            groups.setdefault(key, []).append(record)
    if all(len(runs) < 2 for runs in groups.values()):
        return []
    out = []
    for key, runs in groups.items():
        row: dict[str, Any] = dict(zip(others, key))
        row["runs"] = len(runs)
        for column in [*columns, *estimate_error(comparison)]:
            values = [_value(comparison, r, column) for r in runs]
            values = [v for v in values if v is not None]
            row[f"{column} mean"] = statistics.fmean(values) if values else None
            row[f"{column} std"] = statistics.pstdev(values) if values else None
        out.append(row)
    return out


def estimate_error(comparison: Comparison) -> list[str]:
    """`val/acc - test/acc` when the ranked metric is a validation score with a test twin: how far
    the estimate a run was chosen by lies from the score on unseen data."""
    split, _, name = comparison.metric.partition("/")
    twin = f"test/{name}"
    has_twin = any(twin in r.metrics for r in comparison.records)
    return [f"{comparison.metric} - {twin}"] if split == "val" and has_twin else []


def _value(comparison: Comparison, record: RunRecord, column: str) -> float | None:
    if column == comparison.metric:
        return record.value
    if " - " in column:
        first, second = column.split(" - ")
        a, b = _value(comparison, record, first), record.metrics.get(second)
        return None if a is None or b is None else a - b
    return record.metrics.get(column)


def write_tables(comparison: Comparison, out: Path) -> None:
    table = rows(comparison)
    columns = list(table[0]) if table else ["run"]
    _write_csv(out / "summary.csv", table, columns)
    grouped = over_seeds(comparison)
    if grouped:
        _write_csv(out / "summary_over_seeds.csv", grouped, list(grouped[0]))
    pictures = [name for name in STUDY_PICTURES if (out / name).is_file()]
    (out / "summary.md").write_text(markdown(comparison, table, columns, grouped, pictures))


def _write_csv(path: Path, table: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: "" if r.get(c) is None else r[c] for c in columns} for r in table)


def markdown(
    comparison: Comparison,
    table: list[dict[str, Any]],
    columns: list[str],
    grouped: list[dict[str, Any]] = (),
    pictures: list[str] | None = None,
) -> str:
    """summary.md: the best run, what differs, the table, the over-seeds table, curves.png and
    then `pictures` (file names beside summary.md)."""
    n = len(comparison.records)
    states = {}
    for record in comparison.records:
        states[record.state] = states.get(record.state, 0) + 1
    counted = ", ".join(f"{k} {s}" for s, k in states.items())
    lines = [f"# {n} runs by {comparison.metric} ({comparison.mode}), best first", ""]
    lines.append(f"From {', '.join(str(s) for s in comparison.sources)}: {counted}.")
    best = comparison.best
    if best is not None:
        lines += [
            "",
            f"Best: run {best.name}"
            + (f" ({comparison.label(best)})" if comparison.varying else "")
            + f", {comparison.metric} = {best.value:.6g}, in {best.folder}",
        ]
    if comparison.varying:
        lines += ["", "What differs between the runs: " + ", ".join(comparison.varying) + "."]
    lines += ["", "| " + " | ".join(_header(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if _numeric(table, c) else "---" for c in columns) + "|")
    lines += ["| " + " | ".join(_cell(r.get(c), c) for c in columns) + " |" for r in table]
    if grouped:
        lines += ["", *seeds_markdown(comparison, grouped)]
    lines += ["", "![curves](curves.png)", ""]
    for name in pictures or []:
        lines += [f"![{Path(name).stem}]({name})", ""]
    return "\n".join(lines)


def seeds_markdown(comparison: Comparison, grouped: list[dict[str, Any]]) -> list[str]:
    """The over-seeds table: mean ± std of each metric (summary_over_seeds.csv has them apart)."""
    seeds = ", ".join(seed_keys(comparison))
    settings = [c for c in grouped[0] if c != "runs" and not c.endswith((" mean", " std"))]
    metrics = [c[: -len(" mean")] for c in grouped[0] if c.endswith(" mean")]
    lines = [f"## Over seeds ({seeds}): mean ± std of the finished runs", ""]
    lines.append("| " + " | ".join([*settings, "runs", *metrics]) + " |")
    lines.append("|" + "|".join(["---"] * len(settings) + ["---:"] * (len(metrics) + 1)) + "|")
    for row in grouped:
        cells = [_cell(row[c], c) for c in settings] + [str(row["runs"])]
        for m in metrics:
            mean, spread = row[f"{m} mean"], row[f"{m} std"]
            cells.append("" if mean is None else f"{mean:.4g} ± {spread:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(column: str) -> str:
    return column.replace("|", "\\|")


def _numeric(table: list[dict[str, Any]], column: str) -> bool:
    values = [r.get(column) for r in table if r.get(column) not in (None, "")]
    return bool(values) and all(isinstance(v, int | float) for v in values)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column == "folder" and value:
        return f"`{Path(value).name}`"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")
