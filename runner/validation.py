"""Start-up checks of a composed config, each a library's: OmegaConf has refused unknown keys,
wrong types and unknown choices while Hydra composed (`explain_hydra_error` words them); pydantic
checks the declared ranges of the schemas (runner/config.py), the keys that `+key=value` forced
past them, and every `_target_` node against its target's signature (`Literal` hints are its
choices, `Annotated[..., Field(...)]` its ranges). Mistakes are raised as RunnerError."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from hydra.errors import MissingConfigException, OverrideParseException
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError
from pydantic import ConfigDict, PositiveFloat, TypeAdapter, ValidationError

from runner.config import Choice, RegularizationConfig, RunConfig
from runner.errors import RunnerError

# The `_target_` groups; their keys are checked against the target's signature.
TARGET_GROUPS = ("model", "dataset", "optimizer", "scheduler")
# Hints for the targets of other libraries, whose own checks come late (torch accepts lr=0, and
# checks the rest only when the optimiser is built, after the data is loaded).
THIRD_PARTY_HINTS: dict[str, Any] = {"lr": PositiveFloat | None}  # None: the family's
ARBITRARY = ConfigDict(arbitrary_types_allowed=True)
T = TypeVar("T")


def validate(cfg: DictConfig, resolved: bool = False) -> None:
    """Check ranges, `+key`s and `_target_` nodes of a composed config; raise RunnerError.

    `resolved`: a run's saved config, whose interpolations are values now, so whether a
    regularization key reaches the model (checked when it trained) cannot be seen again."""
    values = OmegaConf.to_container(cfg, resolve=True)
    try:
        _run_schema().validate_python(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise RunnerError(_schema_message(error, values)) from None
    for group in TARGET_GROUPS:
        for path, node in _target_nodes(cfg.get(group), group):
            check_target(path, node)
    model = OmegaConf.select(cfg, "model._target_")
    check_family = getattr(get_object(model), "check_config", None) if model else None
    if check_family is not None:
        check_family(cfg)  # the family's rules across keys (RunnerModel.check_config)
    if not resolved:
        check_regularization(cfg)


@cache
def _run_schema() -> TypeAdapter:
    return TypeAdapter(RunConfig)


def check_options(cfg: DictConfig, schema: type[T]) -> T:
    """An entrypoint's own keys of a composed config (runner/entry_config.py) as `schema`, their
    declared ranges checked; raise RunnerError."""
    values = {f.name: cfg[f.name] for f in dataclasses.fields(schema)}
    try:
        return TypeAdapter(schema).validate_python(values)
    except ValidationError as exc:
        raise RunnerError(_schema_message(exc.errors()[0], values, schema)) from None


def _target_nodes(node: Any, path: str):
    """(path, node) of every node with a `_target_` under `node` (the scheduler's is nested)."""
    if not isinstance(node, DictConfig):
        return
    if node.get("_target_"):
        yield path, node
    for key in node:
        if not str(key).startswith("_"):
            yield from _target_nodes(node.get(key), f"{path}.{key}")


def _schema_message(error: dict, values: dict, schema: type = RunConfig) -> str:
    loc = [str(part) for part in error["loc"]]
    owner, hints = schema, typing.get_type_hints(schema, include_extras=True)
    for part in loc[:-1]:  # the dataclass that holds the offending key
        owner = _unwrap(hints[part])
        hints = typing.get_type_hints(owner, include_extras=True)
    key, value = ".".join(loc), _select(values, loc)
    if error["type"] == "unexpected_keyword_argument":
        return unknown_key_message(key, list(hints), ".".join(loc[:-1]))
    return _value_message(key, value, hints.get(loc[-1]), error)


def check_target(path: str, node: DictConfig) -> None:
    """Refuse keys the `_target_` does not take, and values its hints do not allow."""
    name = node._target_
    try:
        target = get_object(name)
    except Exception as exc:
        raise RunnerError(f"{path}._target_={name!r} cannot be imported ({exc}).") from None
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    own = getattr(target, "__module__", "").split(".")[0] == "runner"
    hints = _hints(target) if own else THIRD_PARTY_HINTS
    values = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_any:
                continue
            valid = [p for p in params if p not in ("self", "params", "optimizer")]
            raise RunnerError(unknown_key_message(f"{path}.{key}", valid, prefix=path))
        if key not in hints or (value is None and OmegaConf.is_interpolation(node, key)):
            continue  # an interpolation filled from the data once loaded (num_classes)
        try:
            TypeAdapter(hints[key], config=ARBITRARY).validate_python(value, strict=True)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise RunnerError(_value_message(f"{path}.{key}", value, hints[key], error)) from None


def _hints(target: Any) -> dict[str, Any]:
    func = target.__init__ if inspect.isclass(target) else target
    return typing.get_type_hints(func, include_extras=True)


def _value_message(key: str, value: Any, hint: Any, error: dict) -> str:
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key}={value!r} is out of range: expected {allowed_range(hint)}."
    if error["type"] == "literal_error":
        shown = ", ".join(repr(c) for c in _literal_choices(hint))
        return f"{key}={value!r} is not valid: expected one of {shown}."
    where = "".join(f"item {part}: " for part in error["loc"] if isinstance(part, int))
    reason = error["msg"].replace("Input should be", "expected", 1)
    return f"{key}={value!r} is not valid: {where}{reason}."


def allowed_range(hint: Any) -> str:
    """A numeric hint's declared range in words: 'a number in [0, 1)', 'an integer > 0, or null'."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else ()
    nullable = type(None) in options
    hint = next((o for o in options if o is not type(None)), hint)
    kind, bounds = hint, {}
    if typing.get_origin(hint) is Annotated:
        kind, *metadata = typing.get_args(hint)
        for item in metadata:
            for constraint in getattr(item, "metadata", [item]):  # pydantic's Field holds several
                for name in ("gt", "ge", "lt", "le"):
                    if getattr(constraint, name, None) is not None:
                        bounds[name] = getattr(constraint, name)
    words = "an integer" if kind is int else "a number"
    low = next(((n, bounds[n]) for n in ("gt", "ge") if n in bounds), None)
    high = next(((n, bounds[n]) for n in ("lt", "le") if n in bounds), None)
    if low and high:
        opening, closing = "(" if low[0] == "gt" else "[", ")" if high[0] == "lt" else "]"
        words += f" in {opening}{low[1]:g}, {high[1]:g}{closing}"
    for bound in (low, high) if not (low and high) else ():
        if bound:
            words += f" {SIGNS[bound[0]]} {bound[1]:g}"
    return words + (", or null" if nullable else "")


SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_UnionType = type(int | None)


def _literal_choices(hint: Any) -> tuple:
    for arg in (hint, *typing.get_args(hint)):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return ()


def _unwrap(hint: Any) -> Any:
    """The dataclass inside `Annotated[...]` or `X | None`."""
    for arg in (hint, *typing.get_args(hint)):
        if isinstance(arg, type) and hasattr(arg, "__dataclass_fields__"):
            return arg
    return hint


def _select(values: Any, loc: Sequence[str]) -> Any:
    for part in loc:
        values = values.get(part) if isinstance(values, dict) else None
    return values


def unknown_key_message(full_key: str, valid: Sequence[str], prefix: str) -> str:
    """'Unknown key a.b. Did you mean a.c? Valid keys under a: ...'"""
    leaf = full_key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, list(valid), n=1)
    hint = f" Did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else ""
    where = f"under {prefix}" if prefix else "at the top level"
    return f"Unknown key {full_key}.{hint} Valid keys {where}: {', '.join(sorted(valid))}."


def explain_hydra_error(exc: Exception) -> str:
    """Hydra's and OmegaConf's composition errors as one paragraph naming the key and what is
    allowed, from the exception's own fields."""
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        names = [o for o in exc.options or () if not o.endswith("_schema")]
        if names:
            return (
                f"Unknown choice {group}={choice}. Valid choices for {group}: {', '.join(names)}."
            )
        return f"Unknown choice {group}={choice}: no such config in conf/{group}/."
    if isinstance(exc, OverrideParseException):
        return (
            f"Could not parse the command-line overrides ({str(exc).splitlines()[0]}). "
            "Overrides look like key=value or group=option."
        )
    cause = exc.__cause__ or exc
    key, parent = getattr(cause, "full_key", None), getattr(cause, "parent_node", None)
    if key and isinstance(cause, ConfigAttributeError | ConfigKeyError):
        valid = [str(k) for k in parent or () if not str(k).startswith("_") and k != "hydra"]
        return unknown_key_message(key, valid, key.rpartition(".")[0])
    if key and isinstance(parent, DictConfig):
        owner = OmegaConf.get_type(parent)
        hint = typing.get_type_hints(owner).get(cause.key) if owner is not dict else None
        if isinstance(hint, type) and issubclass(hint, Choice):
            return (
                f"{key}={str(cause.value)!r} is not a valid choice. Choose one of: "
                + ", ".join(member.value for member in hint)
                + "."
            )
    if key:
        return f"Invalid value for {key}: {str(cause).splitlines()[0]}."
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# Regularization keys that act through a model's own layers, so a family's config must read them.
# The others act the same in every family: weight decay in the optimiser, clipping in the
# optimiser step, augmentation on the batch, early stopping in the loop.
MODEL_REGULARIZATION = ("dropout", "normalization")


def check_regularization(cfg: DictConfig) -> None:
    """A regularization key set away from its default must reach the model (or its optimiser);
    one that the family has no layer for, or whose value its config replaces, stops the run."""
    reg, model = cfg.get("regularization"), cfg.get("model")
    if not isinstance(reg, DictConfig) or not isinstance(model, DictConfig):
        return
    target = model.get("_target_")
    defaults = RegularizationConfig()
    refused = getattr(get_object(target), "unsupported_regularization", {}) if target else {}
    reads = repr(OmegaConf.to_container(model, resolve=False))  # its `${...}` references
    for key in MODEL_REGULARIZATION:
        value = reg.get(key)
        if value == getattr(defaults, key):
            continue
        value = str(value) if isinstance(value, Choice) else value
        if key in refused:
            raise RunnerError(
                f"regularization.{key}={value!r} does not apply to model {target}: {refused[key]}"
            )
        if target and f"regularization.{key}" not in reads:
            raise RunnerError(
                f"regularization.{key}={value!r} would not reach model {target}: no key of its "
                f"config reads ${{regularization.{key}}}. Set the model's own key instead (see "
                "--cfg job), or make it read the regularization key."
            )
    decay, optimizer = reg.get("weight_decay"), cfg.get("optimizer")
    if decay and isinstance(optimizer, DictConfig) and optimizer.get("weight_decay") != decay:
        raise RunnerError(
            f"regularization.weight_decay={decay} would not reach optimizer "
            f"({optimizer.get('_target_')}), whose weight_decay is "
            f"{optimizer.get('weight_decay')}. Set optimizer.weight_decay instead, or give its "
            "config weight_decay: ${regularization.weight_decay}."
        )
