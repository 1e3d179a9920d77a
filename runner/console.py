"""How the entrypoints meet a user at the console: a mistake is one paragraph on stderr, with
nothing printed before it, and exit code 2 (`HYDRA_FULL_ERROR=1` shows the traceback instead)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from runner import distributed
from runner.errors import RunnerError

# While handle_user_errors runs an app for a user who did not ask for tracebacks.
_explain = {"on": False}


def user_error_message(exc: BaseException) -> str | None:
    """The paragraph for a mistake the user can fix (or a peer rank's failure); None for a bug."""
    from runner.validation import explain_hydra_error

    if isinstance(exc, RunnerError):
        return str(exc)
    if isinstance(exc, HydraException | OmegaConfBaseException):
        return explain_hydra_error(exc)
    if distributed.is_peer_failure(exc):
        first = str(exc).splitlines()[0] if str(exc) else ""
        return (
            "another process of this data-parallel run stopped, so this one cannot go on "
            f"({type(exc).__name__}: {first}). Its own error message above says why."
        )
    return None


def _exit_with(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def handle_user_errors(app: Callable[[], object]) -> None:
    """Run a Hydra app; a user's mistake becomes one paragraph on stderr and exit code 2."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of exiting 1
    _explain["on"] = previous != "1"
    try:
        app()
    except Exception as exc:
        message = user_error_message(exc) if previous != "1" else None
        if message is None:
            raise
        _exit_with(message)
    finally:
        _explain["on"] = False
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def reported(task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A Hydra task function whose user errors, in a single run from the console, end the process
    here, before Hydra writes its own "Error executing job" line. In a sweep they propagate, so
    the sweeper records the failed trial and goes on."""

    @functools.wraps(task)
    def wrapper(cfg: Any) -> Any:
        try:
            return task(cfg)
        except Exception as exc:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN:
                exit_on_user_error(exc)
            raise

    return wrapper


def exit_on_user_error(exc: Exception) -> None:
    """In a single run from the console, a user's mistake ends the process here: its paragraph on
    stderr and exit code 2. Returns for a bug (and under `HYDRA_FULL_ERROR=1`)."""
    message = user_error_message(exc) if _explain["on"] else None
    if message is not None:
        distributed.cleanup()
        _exit_with(message)
