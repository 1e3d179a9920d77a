"""summary.csv and summary.md: one row per run, best first; what differs between the runs leads,
then the metrics, how training went, and where the run is."""

from __future__ import annotations

import csv
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


def write_tables(comparison: Comparison, out: Path) -> None:
    table = rows(comparison)
    columns = list(table[0]) if table else ["run"]
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: "" if r.get(c) is None else r[c] for c in columns} for r in table)
    pictures = [name for name in STUDY_PICTURES if (out / name).is_file()]
    (out / "summary.md").write_text(markdown(comparison, table, columns, pictures))


def markdown(
    comparison: Comparison,
    table: list[dict[str, Any]],
    columns: list[str],
    pictures: list[str] | None = None,
) -> str:
    """summary.md: the best run, what differs, the table, curves.png and then `pictures` (file
    names beside summary.md)."""
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
    lines += ["", "![curves](curves.png)", ""]
    for name in pictures or []:
        lines += [f"![{Path(name).stem}]({name})", ""]
    return "\n".join(lines)


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
