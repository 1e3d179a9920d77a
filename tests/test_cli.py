"""The command line: a real run and a multirun in a subprocess, and clear errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK = [
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "logger.log_images=false",
    "model.hidden_dims=[32]",
]


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "runner.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_prints_the_tree_and_the_tensorboard_line_and_writes_its_folder(tmp_path):
    run_dir = tmp_path / "run"
    result = _cli(*QUICK, f"hydra.run.dir={run_dir}", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "├── model" in result.stdout and "_target_: runner.models.Autoencoder" in result.stdout
    assert f"TensorBoard: tensorboard --logdir {run_dir}" in result.stdout
    for name in (
        ".hydra/config.yaml",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "metrics.json",
    ):
        assert (run_dir / name).exists(), name
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert "test/loss" in json.loads((run_dir / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_multirun_sweeps_two_values_into_one_log_folder(tmp_path):
    sweep = tmp_path / "sweep"
    result = _cli("-m", *QUICK, "optimizer.lr=1e-3,1e-2", f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    runs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [p.name for p in runs] == ["0_optimizer.lr=0.001", "1_optimizer.lr=0.01"]
    lrs = [(p / ".hydra" / "overrides.yaml").read_text() for p in runs]
    assert "optimizer.lr=0.001" in lrs[0] and "optimizer.lr=0.01" in lrs[1]
    assert all(
        (p / "metrics.json").exists() and list(p.glob("events.out.tfevents.*")) for p in runs
    )
    assert f"tensorboard --logdir {sweep}" in result.stdout


def test_bad_override_exits_2_with_one_paragraph_and_no_traceback(tmp_path):
    result = _cli("model=vea", f"hydra.run.dir={tmp_path}", cwd=ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: Unknown choice model=vea. Valid choices for model:")
    assert result.stderr.count("\n") == 1  # the paragraph alone: nothing before or after it
    assert "deep_ae" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["model=vea"], "Unknown choice model=vea. Valid choices for model: "),
        (
            ["trainer.max_epoch=3"],
            "Unknown key trainer.max_epoch. Did you mean trainer.max_epochs?",
        ),
        (["model.latnt_dim=3"], "Unknown key model.latnt_dim. Did you mean model.latent_dim?"),
        (["trainer.max_epochs=abc"], "Invalid value for trainer.max_epochs"),
        (["optimizer.lr=-1"], "optimizer.lr=-1 is out of range: expected a number > 0, or null."),
        (["regularization.dropout=1.5"], "regularization.dropout=1.5 is out of range"),
        (["regularization.early_stopping.patience=-2"], "patience=-2 is out of range"),
        (
            ["dataset=image_folder", "dataset.path=/no/such/folder"],
            "dataset.path='/no/such/folder' is not a folder",
        ),
        (["ckpt_path=/no/such.pt"], "Checkpoint /no/such.pt does not exist"),
        (["trainer.precision=64"], "trainer.precision='64' is not a valid choice"),
        (["+trainer.max_epoch=3"], "Unknown key trainer.max_epoch. Did you mean trainer.max_epo"),
        (["+unknown_key=1"], "Unknown key unknown_key. Valid keys at the top level:"),
    ],
)
def test_bad_input_is_rejected_at_start_up(tmp_path, cli_error, args, needle):
    err = cli_error(tmp_path, *args)
    assert needle in err, err
