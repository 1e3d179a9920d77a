"""What a set of runs looks like side by side: the comparison every sweep ends with (the Hydra
callback in `callback.py`) and `runner.compare` writes for any run or sweep folders.

`records.py` reads run folders, `table.py` writes summary.csv and summary.md, `curves.py` draws
curves.png; `write_report` does all three. Nothing here imports torch or matplotlib at import time.
"""

from __future__ import annotations

from pathlib import Path

from runner.reports.records import Comparison, collect


def write_report(
    folders: list[Path], out: Path, metric: str | None = None, mode: str | None = None
) -> Comparison:
    """Read the runs in `folders` (run or sweep folders), write summary.csv, summary.md and
    curves.png into `out`; return what was compared."""
    from runner.reports.curves import write_curves
    from runner.reports.table import write_tables

    comparison = collect(folders, metric, mode)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(comparison, out)
    write_curves(comparison, out / "curves.png")
    return comparison


def best_run_text(comparison: Comparison, out: Path) -> str:
    """A few lines for the console: the best run, what sets it apart, where everything is."""
    lines = [f"Comparison of {len(comparison.records)} runs: {out / 'summary.md'} (and .csv)"]
    best = comparison.best
    if best is not None:
        lines.append(
            f"Best run {best.name}: {comparison.metric}={best.value:.6g}"
            + (f"  ({comparison.label(best)})" if comparison.varying else "")
        )
        lines.append(f"Best run folder: {best.folder}")
    lines.append(f"Curves: {out / 'curves.png'}")
    return "\n".join(lines)
