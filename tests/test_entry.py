"""The entrypoints that reuse a run (`runner.eval`, `sample`, `predict`, `evaluate_samples`): their
own options are Hydra config, so `--help` lists them and a mistake in them reads as one for
`runner.train` does: one paragraph on stderr, exit code 2, no traceback, no folder written."""

from __future__ import annotations

import importlib
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

from runner.entry_config import OPTIONS


@pytest.fixture
def entry_cli(monkeypatch, capsys):
    """`entry_cli(name, *args)` runs `python -m runner.<name> args` in-process; (exit code,
    stdout, stderr)."""

    def _run(name: str, *args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", [f"runner.{name}", *args])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        GlobalHydra.instance().clear()
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            importlib.import_module(f"runner.{name}").main()
        GlobalHydra.instance().clear()
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return _run


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("sample", ["'n': 64", "seed: 0", "steps: 10", "input: null", "checkpoint: best"]),
        ("eval", ["checkpoint: best", "split: test"]),
        ("predict", ["input: null", "top_k: 3", "grid: true", "checkpoint: best"]),
        ("evaluate_samples", ["classifier: null", "samples: 10000", "checkpoint: best"]),
    ],
)
def test_help_lists_the_entrypoints_own_options_with_their_defaults(entry_cli, name, shown):
    code, out, _ = entry_cli(name, "--help")
    assert code == 0 and out.startswith(f"python -m runner.{name} ckpt_path=<run folder>")
    config = out.split("== Config ==", 1)[1].splitlines()
    assert all(line in config for line in shown), out[-600:]
    assert "trainer:" in config  # the run's keys, which the command can override


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("sample", ["n=0"], "n=0 is out of range: expected an integer > 0."),
        ("sample", ["nn=3"], "Unknown key nn. Did you mean n? Valid keys at the top level: "),
        ("sample", ["steps=1"], "steps=1 is out of range: expected an integer >= 2."),
        ("sample", ["seed=one"], "Invalid value for seed"),
        ("eval", ["split=training"], "split='training' is not a valid choice. Choose one of: "),
        ("eval", ["checkpoint=newest"], "checkpoint='newest' is not a valid choice."),
        ("predict", ["top_k=0"], "top_k=0 is out of range: expected an integer > 0."),
        ("predict", ["topk=2"], "Unknown key topk. Did you mean top_k?"),
        ("evaluate_samples", ["samples=-5"], "samples=-5 is out of range"),
        ("evaluate_samples", ["clasifier=x"], "Unknown key clasifier. Did you mean classifier?"),
        ("predict", [], "runner.predict needs input=<a folder of images or one image file>."),
        ("evaluate_samples", [], "runner.evaluate_samples needs classifier=<the folder of a"),
    ],
)
def test_a_mistake_in_an_option_is_one_paragraph_and_exit_code_2(
    entry_cli, cnn_run, tmp_path, name, args, message
):
    run = tmp_path / "out"
    code, out, err = entry_cli(name, f"ckpt_path={cnn_run}", *args, f"hydra.run.dir={run}")
    assert code == 2 and err.startswith(f"error: {message}"), err
    assert err.count("\n") == 1 and "Traceback" not in err and out == "", err
    assert not run.exists()  # refused before Hydra made the job's folder


def test_every_entrypoint_has_a_schema_and_a_config():
    from runner.config import CONF_DIR

    for name in OPTIONS:
        assert (CONF_DIR / f"{name}.yaml").is_file()
        assert callable(importlib.import_module(f"runner.{name}").usable)
