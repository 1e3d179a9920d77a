"""What a sweep leaves in its folder: every trial as CSV and Markdown, and the best trial's
command line."""

from __future__ import annotations

import csv
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMAND = "python -m runner.train"


def reproduce_command(overrides: Sequence[str]) -> str:
    """The single-run command line that trains a trial again (its study bookkeeping left out)."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith("search.")]
    return " ".join([COMMAND, *(shlex.quote(o) for o in kept)])


def trial_rows(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """One flat row per Optuna FrozenTrial: number, state, value, params, timing, folder, error."""
    rows = []
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **{f"params.{k}": v for k, v in t.params.items()},
                "last_step": t.last_step,
                "duration_s": None if duration is None else round(duration, 2),
                "folder": t.user_attrs.get("folder", ""),
                "error": t.user_attrs.get("error", ""),
            }
        )
    return rows


def write_report(
    sweep_dir: Path, trials: Sequence[Any], best: Any | None, metric: str, direction: str
) -> dict:
    """Write trials.csv, trials.md and best.json in `sweep_dir`; return the best-trial summary."""
    rows = trial_rows(trials)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(sweep_dir / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: _plain(row.get(c)) for c in columns} for row in rows)
    summary = {"metric": metric, "direction": direction, "n_trials": len(rows)}
    summary["states"] = {
        s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})
    }
    if best is not None:
        summary.update(
            best_trial=best.number,
            best_value=best.value,
            best_params=best.params,
            best_folder=best.user_attrs.get("folder", ""),
            best_command=reproduce_command(best.user_attrs.get("overrides", [])),
        )
    (sweep_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = [f"# Optuna sweep: {direction} {metric}", ""]
    if best is not None:
        lines += [
            f"Best trial {best.number}: {metric} = {best.value:.6g}",
            "",
            "```",
            summary["best_command"],
            "```",
            "",
        ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    (sweep_dir / "trials.md").write_text("\n".join(lines) + "\n")
    return summary


def _plain(value: Any) -> Any:
    return "" if value is None else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def log_unfinished_trial(result: Any, trial: Any, metric: str, minimize: bool) -> None:
    """Give a pruned or failed trial its HParams row too (its job ended before writing one), with
    the best value it reported, so TensorBoard's HParams tab lists every trial of the sweep."""
    if result.cfg is None or result.hydra_cfg is None:
        return  # the job never got as far as composing its config
    cfg = result.cfg
    if not cfg.logger.tensorboard or not cfg.logger.log_hparams:
        return
    from runner.training.tensorboard import TensorBoardLogger, hparams_of

    params = hparams_of(cfg)
    choices = result.hydra_cfg.hydra.runtime.choices
    params.update({g: choices[g] for g in params if g in choices and choices[g] is not None})
    params["trial_state"] = trial.state.name
    values = list(trial.intermediate_values.values())
    metrics = {f"{metric}_best": (min(values) if minimize else max(values))} if values else {}
    logger = TensorBoardLogger(Path(result.hydra_cfg.hydra.runtime.output_dir))
    try:
        logger.hparams(params, metrics, trial.last_step or 0)
    finally:
        logger.close()
