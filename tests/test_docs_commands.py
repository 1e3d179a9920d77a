"""Every command the README and docs/ show composes: a renamed key or preset breaks the build,
not the reader. Commands are composed and validated in-process, without training; a sweep is
composed at its first value, and paths that need files stand as they are (composition does not
open them). A transcript (`$ command`, then `error: ...`) must fail with the message shown."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from runner.config import compose_run_config
from runner.entry import RUN_KEYS, compose_entry_config
from runner.entry_config import OPTIONS
from runner.errors import RunnerError
from runner.validation import check_options, explain_hydra_error, validate

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_BLOCK = re.compile(r"```[a-z]*\n(.*?)```", re.S)
PLACEHOLDER = re.compile(r"<[^<>]*>")
STAND_IN = "/stand/in"
INLINE = re.compile(r"`((?:python -m runner\.|runner-train|torchrun )[^`]+)`")
# Flags of Hydra's own command line that take no part in composing.
HYDRA_FLAGS = {"-m", "--multirun", "--help", "--hydra-help", "--info"}
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p"}


def doc_lines(text: str) -> list[str]:
    """Lines of the code blocks (continuations joined), then the inline commands."""
    blocks = CODE_BLOCK.findall(text)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").split("\n")]
    return lines + INLINE.findall(text)


def documented_commands() -> list[tuple[str, list[str], str | None]]:
    """(where, tokens from the module name on, the error a transcript shows) for every runner
    command in the docs."""
    found = []
    for doc in DOCS:
        lines = doc_lines(doc.read_text())
        for n, line in enumerate(lines):
            following = lines[n + 1] if n + 1 < len(lines) else ""
            error = following.removeprefix("error: ") if line.startswith("$ ") else None
            # A placeholder such as <run folder> stands for a path: compose with a stand-in.
            text = PLACEHOLDER.sub(STAND_IN, os.path.expandvars(line.removeprefix("$ ")))
            tokens = shlex.split(text, comments=True)
            for i, token in enumerate(tokens):
                module = token if token == "runner-train" else None
                if token == "-m" and i + 1 < len(tokens) and tokens[i + 1].startswith("runner."):
                    module, i = tokens[i + 1], i + 1
                if module:
                    where = f"{doc.relative_to(ROOT)}: {line.strip()[:90]}"
                    found.append((where, [module, *tokens[i + 1 :]], error))
                    break
    return found


COMMANDS = documented_commands()


def first_values(overrides: list[str]) -> list[str]:
    """Sweeps (`a=1,2`, `choice(...)`, `range(...)`, `interval(...)`) at their first value."""
    out = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            out.append(override.input_line)
        elif hasattr(override.value(), "start") and not hasattr(override.value(), "step"):
            out.append(f"{override.get_key_element()}={override.value().start}")  # interval
        else:
            first = next(iter(override.sweep_string_iterator()))
            out.append(f"{override.get_key_element()}={first}")
    return out


def compose_compare(overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import runner.compare  # noqa: F401  (its schema and resolver)
    from runner.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            compose("compare", overrides)
    finally:
        GlobalHydra.instance().clear()


def test_the_docs_show_commands_of_every_kind():
    modules = {tokens[0] for _, tokens, _ in COMMANDS}
    assert {"runner.train", "runner-train", "runner.evaluate_samples", "runner.compare"} <= modules
    assert sum(error is not None for _, _, error in COMMANDS) >= 3  # the bad-input transcripts
    assert len(COMMANDS) > 30


@pytest.mark.parametrize(("where", "tokens", "error"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_composes(where, tokens, error, tmp_path):
    module, *args = tokens
    if module == "runner.compare":  # its own config, conf/compare.yaml
        compose_compare([a for a in args if a not in HYDRA_FLAGS])
        return
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif arg not in HYDRA_FLAGS and arg not in ("...", STAND_IN):
            overrides.append(arg)
    entrypoint = module.removeprefix("runner.")
    if entrypoint in OPTIONS:  # its own options, then the keys that override a run's config

        def check(overrides: list[str]) -> None:
            check_options(compose_entry_config(entrypoint, overrides), OPTIONS[entrypoint])
            run_keys = [o for o in overrides if o.split("=")[0].split(".")[0] in RUN_KEYS]
            validate(compose_run_config(tmp_path, run_keys))
    else:

        def check(overrides: list[str]) -> None:
            validate(compose_run_config(tmp_path, overrides))

    if error is None:
        check(first_values(overrides))
        return
    shown = error.split("...")[0].strip()  # the docs may shorten a long list with "..."
    with pytest.raises(Exception) as raised:
        check(overrides)
    exc = raised.value
    message = str(exc) if isinstance(exc, RunnerError) else explain_hydra_error(exc)
    assert message.startswith(shown), f"{where}: the docs show {shown!r}; the runner: {message!r}"
