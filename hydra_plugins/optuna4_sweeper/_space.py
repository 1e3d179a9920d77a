"""Search spaces in Hydra's override syntax, turned into Optuna distributions (and a grid).

optimizer.lr: tag(log, interval(1e-4, 1e-2))   -> float, log scale
model.latent_dim: range(8, 33, step=8)         -> int 8, 16, 24, 32
regularization.dropout: interval(0, 0.5)       -> float
optimizer: choice(adam, sgd)                    -> categorical over a config group
trainer.batch_size: 64,128                      -> categorical
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hydra_plugins.optuna4_sweeper.config import SweeperError


def parse_space(
    params: Mapping[str, Any], arguments: Sequence[str], parser: OverridesParser
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(distributions by override key, fixed overrides) from the sweeper's `params` and the
    command line; a command-line sweep such as `optimizer=adam,sgd` joins the search space."""
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in parser.parse_overrides(lines):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution_of(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def distribution_of(override: Override) -> BaseDistribution:
    """choice/a,b -> categorical; range -> int (or stepped float); interval -> float or int."""
    value = override.value()
    key = override.get_key_element()
    log = "log" in getattr(value, "tags", set())
    if override.is_choice_sweep():
        return CategoricalDistribution([_element(v) for v in override.sweep_iterator()])
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if not values:
            raise SweeperError(f"The search range for {key} is empty.")
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(values[0], values[-1], log=log, step=1 if log else value.step)
        return FloatDistribution(
            values[0], values[-1], log=log, step=None if log else float(value.step)
        )
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise SweeperError(
        f"Cannot search over {override.input_line}: use choice(), range() or interval()."
    )


def _element(value: Any) -> Any:
    """Optuna's categorical choices are plain scalars; lists and dicts stay in override syntax."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return Override._get_value_element_as_str(value)


def to_override(key: str, value: Any) -> str:
    """`key=value` in Hydra's syntax for a sampled value."""
    text = (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )
    return f"{key}={text}"


def grid_of(
    space: Mapping[str, BaseDistribution], points: int | None = None
) -> dict[str, list[Any]]:
    """The grid sampler's value lists; a continuous interval gets `points` evenly spaced values
    from its low to its high end (log-spaced on a log scale), or none when `points` is None."""
    grid = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            grid[key] = [dist.low + i * dist.step for i in range(n + 1)]
        elif points is not None and isinstance(dist, FloatDistribution | IntDistribution):
            grid[key] = spaced(dist, points)
        else:
            raise SweeperError(
                f"The grid sampler needs a list of values for {key}: search it with choice(...) "
                "or range(...), set hydra.sweeper.grid_points=<n> for n values of each interval, "
                "or pick another hydra/sweeper/sampler."
            )
    return grid


def spaced(dist: FloatDistribution | IntDistribution, points: int) -> list[float | int]:
    """`points` values from dist.low to dist.high, evenly spaced (geometrically for log)."""
    low, high = dist.low, dist.high
    if dist.log:
        values = [low * (high / low) ** (i / (points - 1)) for i in range(points)]
    else:
        values = [low + (high - low) * i / (points - 1) for i in range(points)]
    if isinstance(dist, IntDistribution):
        return sorted({round(v) for v in values})
    return [float(f"{v:.6g}") for v in values]  # 0.000316228, not 0.00031622776601683794
