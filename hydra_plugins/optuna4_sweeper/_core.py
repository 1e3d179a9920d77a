"""The sweep itself: ask Optuna for a batch of trials, launch them through Hydra's launcher,
tell Optuna how each ended (complete, pruned, failed), and write the report.

Each job gets its study as three overrides, `search.storage`, `search.study` and `search.trial`
(the trial's number, which is also its job number and starts its folder name): the app reports to
that trial and reads its pruner from the study's user attribute `pruner`. Nothing else is shared.

With `compare_samplers` the sweep runs one study per sampler preset, one after the other, and
each job also gets `search.sampler=<preset>`. Trial numbers then repeat across the studies, so
job numbers run on from study to study (each trial keeps its job number in its user attribute
`job`) and the run folders stay apart.
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

from hydra_plugins.optuna4_sweeper._plots import write_best_so_far, write_study_plots
from hydra_plugins.optuna4_sweeper._report import race_lines, write_report
from hydra_plugins.optuna4_sweeper._space import parse_space, to_override
from hydra_plugins.optuna4_sweeper._study import (
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    race_sampler_configs,
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
        compare_samplers: list[str] | None = None,
        grid_points: int | None = None,
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
        self.compare_samplers = list(compare_samplers) if compare_samplers is not None else None
        if grid_points is not None and grid_points < 2:
            raise SweeperError(
                f"hydra.sweeper.grid_points={grid_points}: a grid needs at least 2 points per "
                "interval (or null: the grid sampler then takes only choice(...) and range(...))."
            )
        self.grid_points = grid_points

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
        # Every sampler is built (and checked) before the first trial of the first study runs.
        if self.compare_samplers is None:
            samplers = {None: make_sampler(self.sampler_conf, space, self.grid_points)}
        else:
            confs = race_sampler_configs(self.compare_samplers, self.sampler_conf)
            samplers = {
                name: make_sampler(conf, space, self.grid_points) for name, conf in confs.items()
            }
        pruner = make_pruner(self.pruner_conf)
        self.storage_spec = self.storage_spec or str(sweep_dir / "optuna.journal")
        self.storage = open_storage(self.storage_spec)
        studies: dict[str | None, optuna.Study] = {}
        returns: list[JobReturn] = []
        try:
            for preset, (sampler, grid_size) in samplers.items():
                name = self.study_name if preset is None else f"{self.study_name}-{preset}"
                study = open_study(self.storage, name, sampler, self.direction)
                study.set_user_attr("pruner", pruner)  # trials in other processes build it too
                studies[preset] = study
                n_trials = self.n_trials if grid_size is None else min(self.n_trials, grid_size)
                returns += self.run_study(study, preset, n_trials, space, fixed, sweep_dir)
        finally:
            if studies:
                self.finish(studies, sweep_dir)
        return returns

    def run_study(
        self,
        study: optuna.Study,
        preset: str | None,
        n_trials: int,
        space: dict[str, Any],
        fixed: list[str],
        sweep_dir: Path,
    ) -> list[JobReturn]:
        """Ask, launch and tell until the study has `n_trials` counted trials. `preset`: the
        sampler preset this study races with (None outside a race)."""
        requeued = self.requeue_interrupted(study)
        done = len(counted(study))
        where = f"Optuna study {study.study_name!r} in {self.storage_spec}"
        if preset is not None:
            race = self.compare_samplers or []
            where = f"Sampler {preset} ({race.index(preset) + 1} of {len(race)}): {where}"
        log.info(
            "%s: %d trials done, %d to go%s.",
            where,
            done,
            max(n_trials - done, 0),
            f" ({requeued} interrupted trials queued again)" if requeued else "",
        )
        study_keys = [
            f"{TRIAL_SECTION}.storage={quoted(self.storage_spec)}",
            f"{TRIAL_SECTION}.study={quoted(study.study_name)}",
        ]
        sampler_key = [] if preset is None else [f"{TRIAL_SECTION}.sampler={preset}"]
        returns: list[JobReturn] = []
        while (remaining := n_trials - len(counted(study))) > 0:
            trials, batch, jobs = [], [], []
            for _ in range(min(self.batch_size(), remaining)):
                trial = study.ask(space)
                if preset is not None:
                    trial.set_user_attr("sampler", preset)  # trials.json's `sampler`
                number = self.job_number(trial, preset)
                sampled = [to_override(k, trial.params[k]) for k in space]
                trial.set_user_attr("overrides", fixed + sampled)
                job = [
                    *fixed,
                    *sampler_key,  # before the sampled keys: the table's first column
                    *sampled,
                    *study_keys,
                    f"{TRIAL_SECTION}.trial={trial.number}",
                ]
                try:  # a value the config rejects fails this trial, not the whole sweep
                    composed = self.hydra_context.config_loader.load_sweep_config(self.config, job)
                    trial.set_user_attr("folder", str(folder_of(composed, number)))
                except Exception as exc:
                    self.fail(study, trial, f"{type(exc).__name__}: {exc}")
                    continue
                trials.append(trial)
                batch.append(job)
                jobs.append(number)
            results = self.launch(batch, jobs)
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
        return returns

    def job_number(self, trial: Trial, preset: str | None) -> int:
        """The trial's job number (its folder's first part), kept as its user attribute `job`: its
        trial number in one study; in a race, one past the highest job of every study so far."""
        if preset is None:
            number = trial.number
        else:
            jobs = [-1]
            for frozen in self.storage.get_all_studies():
                name = frozen.study_name  # this sweep's studies, raced or not
                if name == self.study_name or name.startswith(f"{self.study_name}-"):
                    study_id = self.storage.get_study_id_from_name(name)
                    trials = self.storage.get_all_trials(study_id, deepcopy=False)
                    jobs += [t.user_attrs["job"] for t in trials if "job" in t.user_attrs]
            number = max(jobs) + 1
        trial.set_user_attr("job", number)
        return number

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
        log.warning("Trial %d of %s failed: %s", trial.number, study.study_name, error)
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
            if not self.storage.get_trial(self._trial_id(study, number)).state.is_finished():
                raise

    def _trial_id(self, study: optuna.Study, number: int) -> int:
        """The storage's id of a trial: the one handle for trials of an earlier sweep process."""
        study_id = self.storage.get_study_id_from_name(study.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def requeue_interrupted(self, study: optuna.Study) -> int:
        """Trials still RUNNING when a sweep starts were stopped with their sweep: record them as
        interrupted (state FAIL for Optuna, INTERRUPTED in the report, with the reason) and queue
        their parameters again, so a resumed sweep runs them."""
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for frozen in stale:
            self.storage.set_trial_user_attr(
                self._trial_id(study, frozen.number), "interrupted", INTERRUPTED
            )
            self._tell(study, frozen.number, state=TrialState.FAIL)
            if frozen.params:
                study.enqueue_trial(
                    frozen.params, user_attrs={"retry_of": frozen.number}, skip_if_exists=False
                )
        return len(stale)

    def finish(self, studies: dict[str | None, optuna.Study], sweep_dir: Path) -> None:
        """trials.json, best.json and the pictures of every study; what they hold, printed."""
        trials = [t for study in studies.values() for t in study.get_trials(deepcopy=False)]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pick = min if self.direction == "minimize" else max
        best = pick(complete, key=lambda t: t.value) if complete else None  # the first of ties
        summary = write_report(sweep_dir, trials, best, self.metric, self.direction)
        states = ", ".join(f"{n} {s.lower()}" for s, n in summary["states"].items())
        race = self.compare_samplers is not None
        counts = f"{len(trials)} trials ({states})"
        if race:
            counts = f"{len(studies)} studies ({', '.join(map(str, studies))}), {counts}"
        lines = [f"Optuna sweep finished: {counts}."]
        if race and best is not None:
            lines += race_lines(summary, f"{self.study_name}-{summary['best_sampler']}")
        if best is not None:
            lines.append(f"Reproduce the best trial: {summary['best_command']}")
        lines.append(f"Study: {sweep_dir / 'best.json'} and trials.json")
        if race:
            pictures = write_best_so_far(studies, sweep_dir, self.metric)
        else:
            pictures = write_study_plots(studies[None], sweep_dir)
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
