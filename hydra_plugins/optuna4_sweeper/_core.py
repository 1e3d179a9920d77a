"""The sweep itself: ask Optuna for a batch of trials, launch them through Hydra's launcher,
tell Optuna how each ended (complete, pruned, failed), and write the report.

Each job gets its study as three overrides, `search.storage`, `search.study` and `search.trial`
(the trial's number, which is also its job number and starts its folder name): the app reports to
that trial and reads its pruner from the study's user attribute `pruner`. Nothing else is shared.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import FrozenTrial, Trial, TrialState

from hydra_plugins.optuna4_sweeper._plots import write_study_plots
from hydra_plugins.optuna4_sweeper._report import write_report
from hydra_plugins.optuna4_sweeper._space import parse_space, to_override
from hydra_plugins.optuna4_sweeper._study import (
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
)
from hydra_plugins.optuna4_sweeper.config import TRIAL_SECTION, SweeperError

log = logging.getLogger(__name__)

DIRECTIONS = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
INTERRUPTED = "the sweep stopped while this trial ran (killed, or its machine went down)"


class OptunaSweep:
    def __init__(
        self,
        direction: str,
        metric: str,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int | None,
        max_failure_rate: float,
        sampler: DictConfig,
        pruner: DictConfig,
        params: DictConfig | None,
    ) -> None:
        if direction not in DIRECTIONS:
            raise SweeperError(
                f"hydra.sweeper.direction={direction!r} is not valid: use min or max."
            )
        self.direction = DIRECTIONS[direction]
        self.metric = metric
        self.study_name = study_name
        self.storage_spec = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.sampler_conf = sampler
        self.pruner_conf = pruner
        self.params = OmegaConf.to_container(params, resolve=True) if params is not None else {}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -----------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        sweep_dir = Path(self.config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space, fixed = parse_space(self.params, arguments, parser)
        if not space:
            raise SweeperError(
                "The Optuna sweeper has nothing to search: set hydra.sweeper.params, or sweep a "
                "key on the command line (optimizer.lr='interval(1e-4, 1e-2)')."
            )
        sampler, grid_size = make_sampler(self.sampler_conf, space)
        pruner = make_pruner(self.pruner_conf)
        storage_spec = self.storage_spec or str(sweep_dir / "optuna.journal")
        self.storage = open_storage(storage_spec)
        study = open_study(self.storage, self.study_name, sampler, self.direction)
        self.study_id = self.storage.get_study_id_from_name(self.study_name)
        study.set_user_attr("pruner", pruner)  # trials in other processes build the same pruner
        n_trials = self.n_trials if grid_size is None else min(self.n_trials, grid_size)
        requeued = self.requeue_interrupted(study)
        done = len(counted(study))
        log.info(
            "Optuna study %r in %s: %d trials done, %d to go%s.",
            self.study_name,
            storage_spec,
            done,
            max(n_trials - done, 0),
            f" ({requeued} interrupted trials queued again)" if requeued else "",
        )
        returns: list[JobReturn] = []
        try:
            while (remaining := n_trials - len(counted(study))) > 0:
                trials, batch = [], []
                for _ in range(min(self.batch_size(), remaining)):
                    trial = study.ask(space)
                    overrides = fixed + [to_override(k, trial.params[k]) for k in space]
                    trial.set_user_attr("overrides", overrides)
                    job = [
                        *overrides,
                        f"{TRIAL_SECTION}.storage={quoted(storage_spec)}",
                        f"{TRIAL_SECTION}.study={quoted(self.study_name)}",
                        f"{TRIAL_SECTION}.trial={trial.number}",
                    ]
                    try:  # a value the config rejects fails this trial, not the whole sweep
                        composed = self.hydra_context.config_loader.load_sweep_config(
                            self.config, job
                        )
                        trial.set_user_attr("folder", str(folder_of(composed, trial.number)))
                    except Exception as exc:
                        self.fail(study, trial, f"{type(exc).__name__}: {exc}")
                        continue
                    trials.append(trial)
                    batch.append(job)
                results = self.launch(batch, [t.number for t in trials])
                for trial, result in zip(trials, results):
                    self.tell(study, trial, result)
                returns += results
                failed = [t for t in counted(study) if t.state == TrialState.FAIL]
                if len(failed) > self.max_failure_rate * n_trials:
                    raise SweeperError(
                        f"{len(failed)} of {n_trials} trials failed, more than "
                        f"hydra.sweeper.max_failure_rate={self.max_failure_rate}; stopping."
                        f" The errors are in {sweep_dir / 'summary.md'}."
                    )
        finally:
            self.finish(study, sweep_dir)
        return returns

    def batch_size(self) -> int:
        """Trials launched at once: the sweeper's n_jobs, else the launcher's parallelism."""
        if self.n_jobs:
            return self.n_jobs
        launcher = self.config.hydra.launcher
        n = launcher.get("n_jobs") or launcher.get("array_parallelism") or 1
        return (os.cpu_count() or 1) if n < 0 else n

    def launch(self, batch: list[list[str]], numbers: list[int]) -> list[JobReturn]:
        """Launch so that trial number == job number == folder name, even after a resume."""
        results: list[JobReturn] = []
        start = 0
        for end in range(1, len(batch) + 1):
            if end == len(batch) or numbers[end] != numbers[end - 1] + 1:
                results += self.launcher.launch(batch[start:end], initial_job_idx=numbers[start])
                start = end
        return results

    def tell(self, study: optuna.Study, trial: Trial, result: JobReturn) -> None:
        if result.status == JobStatus.COMPLETED:
            value = result.return_value
            if isinstance(value, int | float) and math.isfinite(value):
                self._tell(study, trial.number, values=float(value))
                return
            error = f"the job returned {value!r}, not a finite number"
        else:
            # Hydra's .return_value would re-raise the job's exception and print "Error executing
            # job" for a pruned trial too; the trial's own log has the traceback.
            exc = result._return_value
            if isinstance(exc, optuna.TrialPruned) or type(exc).__name__ == "TrialPruned":
                self._tell(study, trial.number, state=TrialState.PRUNED)
                return
            error = f"{type(exc).__name__}: {exc}"
        self.fail(study, trial, error)

    def fail(self, study: optuna.Study, trial: Trial, error: str) -> None:
        log.warning("Trial %d failed: %s", trial.number, error)
        trial.set_user_attr("error", error)
        self._tell(study, trial.number, state=TrialState.FAIL)

    def _tell(self, study: optuna.Study, number: int, **outcome: Any) -> None:
        try:
            study.tell(number, **outcome)
        except (RuntimeError, KeyError):
            # Optuna stores the state in a `finally` after the sampler's after_trial, which fails
            # here for the grid sampler: it calls study.stop() once every point has run (that
            # works only inside study.optimize; the sweep stops at n_trials itself), and it looks
            # for a grid id that a requeued trial (fixed parameters) has none of.
            if not self.storage.get_trial(self._trial_id(number)).state.is_finished():
                raise

    def _trial_id(self, number: int) -> int:
        """The storage's id of a trial: the one handle for trials of an earlier sweep process."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def requeue_interrupted(self, study: optuna.Study) -> int:
        """Trials still RUNNING when a sweep starts were stopped with their sweep: record them as
        interrupted (state FAIL for Optuna, INTERRUPTED in the report, with the reason) and queue
        their parameters again, so a resumed sweep runs them."""
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for frozen in stale:
            self.storage.set_trial_user_attr(
                self._trial_id(frozen.number), "interrupted", INTERRUPTED
            )
            self._tell(study, frozen.number, state=TrialState.FAIL)
            if frozen.params:
                study.enqueue_trial(
                    frozen.params, user_attrs={"retry_of": frozen.number}, skip_if_exists=False
                )
        return len(stale)

    def finish(self, study: optuna.Study, sweep_dir: Path) -> None:
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = study.best_trial if complete else None
        summary = write_report(sweep_dir, trials, best, self.metric, self.direction)
        states = ", ".join(f"{n} {s.lower()}" for s, n in summary["states"].items())
        lines = [f"Optuna sweep finished: {len(trials)} trials ({states})."]
        if best is not None:
            lines.append(f"Reproduce the best trial: {summary['best_command']}")
        lines.append(f"Study: {sweep_dir / 'best.json'} and trials.json")
        pictures = write_study_plots(study, sweep_dir)
        if pictures:
            lines.append(f"Pictures: {', '.join(p.name for p in pictures)}")
        lines.append(f"TensorBoard: tensorboard --logdir {sweep_dir}")
        print("\n".join(lines), flush=True)


def folder_of(composed: DictConfig, number: int) -> Path:
    """The run folder Hydra's launcher will give job `number` of this composed trial config."""
    with open_dict(composed):
        composed.hydra.job.num = number
        composed.hydra.job.id = number
    return Path(str(composed.hydra.sweep.dir)).resolve() / str(composed.hydra.sweep.subdir)


def quoted(value: str) -> str:
    """A string as a quoted Hydra override value (paths may hold spaces, commas, brackets)."""
    # Hydra reads backslashes literally except those right before a quote (or the closing one).
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + value.replace("'", "\\'") + "'"


def counted(study: optuna.Study) -> list[FrozenTrial]:
    """Finished trials that count towards n_trials (interrupted ones are run again instead)."""
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [
        t
        for t in study.get_trials(deepcopy=False, states=finished)
        if not t.user_attrs.get("interrupted")
    ]
