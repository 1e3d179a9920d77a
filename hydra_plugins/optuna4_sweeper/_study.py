"""What a study is made of, from the sweeper's config: its storage, and the sampler and the pruner
built from their `_target_` configs, each checked before any trial runs."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution

from hydra_plugins.optuna4_sweeper._space import grid_of
from hydra_plugins.optuna4_sweeper.config import PRUNERS, SAMPLERS, SweeperError


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL (`sqlite:///...`, `postgresql://...`) or a journal file path."""
    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    # An open()-based lock works on every file system (symlink locks need POSIX symlinks).
    return JournalStorage(JournalFileBackend(spec, lock_obj=JournalFileOpenLock(spec)))


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    direction: str,
) -> optuna.Study:
    """The study `name`, created or continued with `sampler`."""
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, direction=direction, load_if_exists=True
    )
    if study.get_trials(deepcopy=False):
        # Continued: a seeded sampler would propose the earlier runs' trials again. Optuna gives
        # each worker of study.optimize(n_jobs=...) a fresh random stream the same way; a sampler
        # that keeps its place in the study (grid, QMC) keeps it.
        sampler.reseed_rng()
    return study


def make_sampler(
    conf: Any, space: Mapping[str, BaseDistribution], grid_points: int | None = None
) -> tuple[optuna.samplers.BaseSampler, int | None]:
    """The sampler of `hydra.sweeper.sampler` and, for a grid, how many points it has; a grid
    sampler without its own `search_space` gets the grid of the sweep's search space (with
    `grid_points` values of each continuous interval)."""
    kwargs = _target_config(conf, "sampler", SAMPLERS)
    cls = _class_of(kwargs, "sampler", optuna.samplers.BaseSampler, SAMPLERS)
    grid_size = None
    if issubclass(cls, optuna.samplers.GridSampler):
        kwargs.setdefault("search_space", grid_of(space, grid_points))
        grid_size = 1
        for values in kwargs["search_space"].values():
            grid_size *= len(values)
    return _build(kwargs, cls, "sampler"), grid_size


def race_sampler_configs(names: Sequence[str], conf: Any) -> dict[str, dict[str, Any]]:
    """The sampler config of each preset `hydra.sweeper.compare_samplers` names: the preset with
    the seed of `hydra.sweeper.sampler`, or that sampler itself where it is the preset's class (so
    its other settings, such as TPE's n_startup_trials, hold in the race too)."""
    names = list(names)
    unknown = [n for n in names if n not in SAMPLERS]
    twice = sorted({n for n in names if names.count(n) > 1})
    if unknown or twice or not names:
        problem = (
            f"names {', '.join(unknown)}, not a sampler preset"
            if unknown
            else f"names {', '.join(twice)} twice"
            if twice
            else "is empty"
        )
        raise SweeperError(
            f"hydra.sweeper.compare_samplers=[{','.join(names)}] {problem}: list the presets to "
            f"compare, each once, from {', '.join(SAMPLERS)} (e.g. "
            "hydra.sweeper.compare_samplers=[grid,random,tpe]), or set it to null for one study."
        )
    configured = _target_config(conf, "sampler", SAMPLERS)
    out = {}
    for name in names:
        preset = dict(SAMPLERS[name])
        if configured["_target_"] == preset["_target_"]:
            out[name] = dict(configured)
        else:
            out[name] = {**preset, "seed": configured.get("seed")}
    return out


def make_pruner(conf: Any) -> dict[str, Any]:
    """`hydra.sweeper.pruner` as a plain `_target_` dict, checked by building it once: each trial
    builds its own pruner from it, in its own process."""
    kwargs = _target_config(conf, "pruner", PRUNERS)
    _build(dict(kwargs), _class_of(kwargs, "pruner", optuna.pruners.BasePruner, PRUNERS), "pruner")
    return kwargs


def _target_config(conf: Any, kind: str, presets: Mapping[str, Any]) -> dict[str, Any]:
    plain = OmegaConf.to_container(conf, resolve=True) if OmegaConf.is_config(conf) else conf
    if not isinstance(plain, dict) or "_target_" not in plain:
        raise SweeperError(
            f"hydra.sweeper.{kind}={plain!r} is not a {kind} config: pick a preset with "
            f"hydra/sweeper/{kind}=<name> ({', '.join(presets)}), or give a config with "
            f"_target_: optuna.{kind}s.<class> and its arguments."
        )
    return dict(plain)


def _class_of(kwargs: dict[str, Any], kind: str, base: type, presets: Mapping[str, Any]) -> type:
    target = kwargs["_target_"]
    module = getattr(optuna, f"{kind}s")
    try:
        cls = get_class(target)
    except Exception:
        public = [f"optuna.{kind}s.{name}" for name in module.__all__]
        close = difflib.get_close_matches(target, public, n=1)
        hint = f" Did you mean {close[0]}?" if close else f" Optuna's {kind}s: {', '.join(public)}."
        raise SweeperError(
            f"hydra.sweeper.{kind}._target_={target!r} is not a class that can be imported.{hint}"
            f" Presets: hydra/sweeper/{kind}={', '.join(presets)}."
        ) from None
    if not issubclass(cls, base):
        raise SweeperError(
            f"hydra.sweeper.{kind}._target_={target!r} is not an Optuna {kind} (a subclass of "
            f"{base.__module__}.{base.__name__})."
        )
    return cls


def _build(kwargs: dict[str, Any], cls: type, kind: str) -> Any:
    try:
        return instantiate(kwargs)
    except Exception as exc:
        cause = exc.__cause__ or exc
        takes = [
            p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")
        ]
        hint = ""
        if "name" in kwargs and "name" not in takes:  # the sweeper's settings before presets
            hint = f" Short names are presets now: hydra/sweeper/{kind}={kwargs['name']}."
        why = " ".join(str(cause).split())  # one paragraph
        raise SweeperError(
            f"hydra.sweeper.{kind} could not build {kwargs['_target_']}: "
            f"{type(cause).__name__}: {why}. It takes: {', '.join(takes) or 'no arguments'}.{hint}"
        ) from None
