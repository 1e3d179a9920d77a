"""What the sweeper leaves in the sweep folder: trials.json, every trial as Optuna saw it (state,
value, parameters, error), and best.json, the best trial with its command line.

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
    """One flat row per Optuna FrozenTrial: number, state, value, params, timing, folder, error
    (for an interrupted trial: why, and which trial ran its parameters again)."""
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = []
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else None
        state, error = t.state.name, t.user_attrs.get("error", "")
        if t.user_attrs.get("interrupted"):
            state = "INTERRUPTED"
            reason = t.user_attrs["interrupted"]
            error = reason if isinstance(reason, str) else "the sweep stopped while this trial ran"
            if t.number in retried:
                error += f"; its parameters run again as trial {retried[t.number]}"
            duration = None  # it ended when the next sweep found it, not when it stopped
        rows.append(
            {
                "number": t.number,
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
            best_value=best.value,
            best_params=best.params,
            best_folder=best.user_attrs.get("folder", ""),
            best_command=reproduce_command(best.user_attrs.get("overrides", [])),
        )
    (sweep_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
