"""The Hydra callback (conf/hydra/default.yaml, `hydra.callbacks.compare`) that ends every sweep in
a comparison, whatever the sweeper and launcher.

- At the start of a sweep, the run folders get names that say what differs between them
  (`3_optimizer.lr=0.0012,regularization.dropout=0.2`): the keys the command line holds constant
  join `hydra.job.config.override_dirname.exclude_keys`, so `${hydra.job.override_dirname}` in
  the sweep's subdir names only what is swept. Runs read the same list to lead their HParams
  columns with the swept keys (runner.training.tensorboard).
- At the end of every job (wherever the launcher ran it), `state.json` in its folder says how it
  ended: finished, failed (with the error) or pruned.
- At the end of the sweep, summary.csv, summary.md and curves.png in the sweep folder
  (runner.reports), and the best run on the console. Hydra calls no callback when the sweeper
  raises (a failed job stops the basic sweeper, too many failures the Optuna sweeper): the report
  is then written as the process exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

log = logging.getLogger(__name__)

EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"


class CompareRuns(Callback):
    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.metric: tuple[str | None, str | None] = (None, None)
        self.reported = False
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        name_folders_by_what_varies(config)
        self.sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir"))).resolve()
        self.metric = (config.get("optimized_metric"), config.get("optimized_mode"))
        atexit.register(self.report)  # a sweeper that raised skips on_multirun_end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.report()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if os.environ.get("RANK", "0") != "0":  # one process of a data-parallel run writes
            return
        try:
            out = Path(str(OmegaConf.select(config, "hydra.runtime.output_dir")))
            duration = None if self.started is None else round(time.time() - self.started, 3)
            write_state(out, job_return, duration)
        except Exception as exc:  # the job's own outcome matters more than this note of it
            log.warning("No state.json for this job: %s", exc)

    def report(self) -> None:
        """summary.csv, summary.md and curves.png in the sweep folder; the best run printed."""
        if self.reported or self.sweep_dir is None:
            return
        self.reported = True
        from runner.errors import RunnerError
        from runner.reports import best_run_text, write_report

        try:
            comparison = write_report([self.sweep_dir], self.sweep_dir, *self.metric)
            print(best_run_text(comparison, self.sweep_dir), flush=True)
        except RunnerError as exc:  # no run started (the sweep stopped before): nothing to say
            log.debug("No comparison of the sweep in %s: %s", self.sweep_dir, exc)
        except Exception as exc:  # a report must never turn a sweep into a crash
            log.warning("No comparison of the sweep in %s: %s", self.sweep_dir, exc)


def write_state(out: Path, job_return: Any, duration_s: float | None) -> None:
    """state.json: {"state": finished | failed | pruned, "error": ..., "duration_s": ...}."""
    from hydra.core.utils import JobStatus

    state, error = "finished", ""
    if job_return.status != JobStatus.COMPLETED:
        exc = job_return._return_value  # .return_value would raise it again
        pruned = type(exc).__name__ == "TrialPruned"
        state = "pruned" if pruned else "failed"
        first = str(exc).splitlines()[0] if str(exc) else ""
        error = first if pruned else f"{type(exc).__name__}: {first}"
    out.mkdir(parents=True, exist_ok=True)
    body = {"state": state, "error": error, "duration_s": duration_s}
    (out / "state.json").write_text(json.dumps(body, indent=2) + "\n")


def name_folders_by_what_varies(config: DictConfig) -> None:
    """Add the command line's constant keys to the override_dirname exclusions of every job.

    Jobs are composed again from `hydra.overrides.hydra` plus their own overrides, so the
    exclusions travel as one more Hydra override (visible in multirun.yaml and each job's
    .hydra/hydra.yaml)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [str(o) for o in config.hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(task)
    constant = [o.key_or_group for o in parsed if not o.is_sweep_override()]
    current = [str(k) for k in OmegaConf.select(config, EXCLUDE_KEYS) or []]
    keys = current + [k for k in dict.fromkeys(constant) if k not in current]
    if keys == current:
        return
    listed = ",".join("'" + k.replace("\\", "\\\\").replace("'", "\\'") + "'" for k in keys)
    with read_write(config.hydra):
        config.hydra.overrides.hydra.append(f"{EXCLUDE_KEYS}=[{listed}]")
        config.hydra.job.config.override_dirname.exclude_keys = keys
