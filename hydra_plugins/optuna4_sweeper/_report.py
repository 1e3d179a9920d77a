"""What the sweeper leaves in the sweep folder: trials.json, every trial as Optuna saw it (state,
value, parameters, error; its job number and, in a race of samplers, its sampler), and best.json,
the best trial with its command line (in a race: which sampler found it, and each sampler's best).

The sweep's table (summary.csv, summary.md) and curves are not written here: the app's sweep
callback writes them for every sweeper from the run folders, and reads trials.json for what only
the study knows (pruned, interrupted, trials that failed before they got a folder). The two share
files, not code: this plugin imports nothing of the app.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra_plugins.optuna4_sweeper.config import TRIAL_SECTION


def app_command() -> str:
    """How this app was started: `python -m <module>`, `python <script>` or a console script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name != "__main__":
        return f"python -m {spec.name.removesuffix('.__main__')}"
    script = Path(sys.argv[0])
    return f"python {shlex.quote(sys.argv[0])}" if script.suffix == ".py" else script.name


def reproduce_command(overrides: Sequence[str], command: str | None = None) -> str:
    """The single-run command line that runs a trial again (its study bookkeeping left out)."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(f"{TRIAL_SECTION}.")]
    return " ".join([command or app_command(), *(shlex.quote(o) for o in kept)])


def trial_rows(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """One flat row per Optuna FrozenTrial: number (in its study), job (its run folder's number),
    sampler (the preset of its study in a race, else None), state, value, params, timing, folder,
    error (for an interrupted trial: why, and which trial ran its parameters again)."""
    retried = {  # by study: trial numbers repeat across the studies of a race
        (t.user_attrs.get("sampler"), t.user_attrs["retry_of"]): t
        for t in trials
        if "retry_of" in t.user_attrs
    }
    rows = []
    for t in trials:
        sampler = t.user_attrs.get("sampler")
        duration = t.duration.total_seconds() if t.duration is not None else None
        state, error = t.state.name, t.user_attrs.get("error", "")
        if t.user_attrs.get("interrupted"):
            state = "INTERRUPTED"
            reason = t.user_attrs["interrupted"]
            error = reason if isinstance(reason, str) else "the sweep stopped while this trial ran"
            again = retried.get((sampler, t.number))
            if again is not None:
                error += f"; its parameters run again as trial {again.number}"
                if job_of(again) != again.number:
                    error += f" (job {job_of(again)})"
            duration = None  # it ended when the next sweep found it, not when it stopped
        rows.append(
            {
                "number": t.number,
                "job": job_of(t),
                "sampler": sampler,
                "state": state,
                "value": t.value,
                **{f"params.{k}": v for k, v in t.params.items()},
                "last_step": t.last_step,
                "duration_s": None if duration is None else round(duration, 2),
                "folder": t.user_attrs.get("folder", ""),
                "error": error,
            }
        )
    return rows


def job_of(trial: Any) -> int:
    """The trial's job number: its trial number, except in a race of samplers."""
    return trial.user_attrs.get("job", trial.number)


def write_report(
    sweep_dir: Path, trials: Sequence[Any], best: Any | None, metric: str, direction: str
) -> dict:
    """Write trials.json and best.json in `sweep_dir`; return the best-trial summary."""
    rows = trial_rows(trials)
    (sweep_dir / "trials.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    summary = {"metric": metric, "direction": direction, "n_trials": len(rows)}
    summary["states"] = {
        s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})
    }
    if best is not None:
        summary.update(
            best_trial=best.number,
            best_job=job_of(best),
            best_value=best.value,
            best_params=best.params,
            best_folder=best.user_attrs.get("folder", ""),
            best_command=reproduce_command(best.user_attrs.get("overrides", [])),
        )
    samplers = list(dict.fromkeys(r["sampler"] for r in rows if r["sampler"] is not None))
    if samplers:  # a race: which sampler found the best trial, and how far each came
        summary["best_sampler"] = best.user_attrs.get("sampler") if best is not None else None
        summary["samplers"] = {name: sampler_best(rows, name, direction) for name in samplers}
    (sweep_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def sampler_best(rows: list[dict[str, Any]], sampler: str, direction: str) -> dict[str, Any]:
    """How many trials `sampler` ran, and its best completed one (value, job, folder)."""
    own = [r for r in rows if r["sampler"] == sampler]
    complete = [r for r in own if r["state"] == "COMPLETE"]
    pick = min if direction == "minimize" else max
    best = pick(complete, key=lambda r: r["value"]) if complete else {}
    return {
        "n_trials": len(own),
        "best_value": best.get("value"),
        "best_job": best.get("job"),
        "best_folder": best.get("folder"),
    }


def race_lines(summary: dict[str, Any], best_study: str) -> list[str]:
    """The best value each sampler found, and which sampler found the best trial overall."""
    metric = summary["metric"]
    each = [
        f"{name} {s['best_value']:.6g} (job {s['best_job']})"
        if s["best_value"] is not None
        else f"{name} none completed"
        for name, s in summary["samplers"].items()
    ]
    best = f"{metric}={summary['best_value']:.6g}"
    return [
        f"Best {metric} per sampler: {', '.join(each)}.",
        f"Best trial overall: job {summary['best_job']} (trial {summary['best_trial']} of study "
        f"{best_study!r}), found by {summary['best_sampler']}: {best}.",
    ]
