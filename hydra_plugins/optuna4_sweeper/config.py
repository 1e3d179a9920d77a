"""The sweeper's config, registered as `hydra/sweeper=optuna4` (typed: unknown keys fail), and the
sampler and pruner presets, `hydra/sweeper/sampler=<name>` and `hydra/sweeper/pruner=<name>`.

A sampler or a pruner is any `_target_` config: a preset, a YAML file of the app's own
(conf/hydra/sweeper/sampler/<name>.yaml), or a preset with its `_target_` replaced.

`compare_samplers: [grid, random, tpe]` races sampler presets: one study per preset, run one
after the other over the same search space, `n_trials` (a grid capped at its size), seed
(`sampler.seed`) and pruner, named `<study_name>-<preset>` in the same storage (so a rerun with the
same hydra.sweep.dir resumes each). A preset whose `_target_` is the configured sampler's takes
that sampler's settings too (e.g. TPE's `n_startup_trials`). Each job gets
`search.sampler=<preset>`; job numbers run on across the studies, so run folders never collide,
and the sweep folder gets best_so_far.png: the best value so far per trial, one line per sampler.

No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before it
is in sys.modules, where dataclasses would look the string annotations up.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import MISSING

SAMPLERS: dict[str, dict[str, Any]] = {
    # n_startup_trials: random trials before TPE / CMA-ES take over.
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": None, "n_startup_trials": 10},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    # The sweeper passes the grid (search_space) from hydra.sweeper.params: choices and ranges.
    "grid": {"_target_": "optuna.samplers.GridSampler", "seed": None},
    # CMA-ES handles the numeric parameters; categorical ones are sampled independently.
    "cmaes": {
        "_target_": "optuna.samplers.CmaEsSampler",
        "seed": None,
        "n_startup_trials": 10,
        "warn_independent_sampling": False,
    },
}
PRUNERS: dict[str, dict[str, Any]] = {
    "none": {"_target_": "optuna.pruners.NopPruner"},
    # n_startup_trials: trials that finish before any is pruned; n_warmup_steps: epochs a trial
    # runs before it can be pruned.
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 5,
        "n_warmup_steps": 1,
    },
    # min_resource: epochs before the first rung; keep the best 1/reduction_factor per rung.
    "successive_halving": {
        "_target_": "optuna.pruners.SuccessiveHalvingPruner",
        "min_resource": 1,
        "reduction_factor": 3,
    },
}

# The app's config section where each job finds its trial: <section>.storage, .study, .trial.
TRIAL_SECTION = "search"


class SweeperError(HydraException):
    """A sweep the user configured wrongly: one paragraph that says what to change."""


@dataclass
class Optuna4SweeperConf:
    _target_: str = "hydra_plugins.optuna4_sweeper.sweeper.Optuna4Sweeper"
    # The sampler and pruner stay configs until the sweep builds them (the grid needs the space).
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    direction: str = "${optimized_mode}"  # min/max or minimize/maximize
    metric: str = "${oc.select:optimized_metric,value}"  # the name of the value in the reports
    study_name: str = "${task_name}"
    # null: a journal file <sweep dir>/optuna.journal; or an Optuna URL (sqlite:///..., postgresql://...).
    # Rerunning with the same hydra.sweep.dir continues the study.
    storage: str | None = None
    n_trials: int = 20  # total, counting trials of earlier runs of the same study
    n_jobs: int | None = None  # trials launched at once; null: the launcher's n_jobs, else 1
    max_failure_rate: float = 0.5  # stop the sweep when more trials than this fraction fail
    sampler: Any = MISSING  # {_target_: optuna.samplers.<Sampler>, ...}
    pruner: Any = MISSING  # {_target_: optuna.pruners.<Pruner>, ...}
    # key: search space in Hydra's syntax, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-2))
    params: dict[str, Any] = field(default_factory=dict)
    # The grid sampler's values of a continuous interval: this many, evenly spaced from low to
    # high (log-spaced for tag(log, ...)); null: the grid takes only choice(...) and range(...).
    # With it, a race sets a full grid beside random and TPE search of the same intervals.
    grid_points: int | None = None
    # null: one study with `sampler`. A list of sampler presets, e.g. [grid, random, tpe]: one
    # study each, one after the other, on the same space, n_trials, seed and pruner (see above).
    compare_samplers: list[str] | None = None


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna4", node=Optuna4SweeperConf, provider="optuna4")
for _name, _node in SAMPLERS.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="optuna4")
for _name, _node in PRUNERS.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="optuna4")
