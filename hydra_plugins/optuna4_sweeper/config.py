"""The sweeper's config, registered as `hydra/sweeper=optuna4` (typed: unknown keys fail).

No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before it
is in sys.modules, where dataclasses would look the string annotations up.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe, random, grid, cmaes
    seed: int | None = None
    n_startup_trials: int = 10  # random trials before TPE / CMA-ES take over


@dataclass
class PrunerConf:
    name: str = "median"  # none, median, successive_halving
    n_startup_trials: int = 5  # median: trials that finish before any is pruned
    n_warmup_steps: int = 1  # median: epochs a trial runs before it can be pruned
    min_resource: int = 1  # successive_halving: epochs before the first rung
    reduction_factor: int = 3  # successive_halving: keep the best 1/reduction_factor per rung


@dataclass
class Optuna4SweeperConf:
    _target_: str = "hydra_plugins.optuna4_sweeper.sweeper.Optuna4Sweeper"
    direction: str = "${optimized_mode}"  # min/max or minimize/maximize
    study_name: str = "${task_name}"
    # null: a journal file <sweep dir>/optuna.journal; or an Optuna URL (sqlite:///..., postgresql://...).
    # Rerunning with the same hydra.sweep.dir continues the study.
    storage: str | None = None
    n_trials: int = 20  # total, counting trials of earlier runs of the same study
    n_jobs: int | None = None  # trials launched at once; null: the launcher's n_jobs, else 1
    max_failure_rate: float = 0.5  # stop the sweep when more trials than this fraction fail
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # key: search space in Hydra's syntax, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-2))
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna4", node=Optuna4SweeperConf, provider="runner"
)
