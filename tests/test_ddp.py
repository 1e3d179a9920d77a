"""Data-parallel training with torchrun: 2 CPU processes (gloo) train exactly like one process
with the same global batch, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from runner.errors import RunnerError
from runner.train import run

COMMON = (
    "model.hidden_dims=[32]",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "trainer.device=cpu",
    "logger.log_images=false",
)


def train(tmp_path, name, *launcher, batch, extra=()):
    out = tmp_path / name
    cmd = [
        *launcher,
        "-m",
        "runner.train",
        *COMMON,
        *extra,
        f"trainer.batch_size={batch}",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow  # two torchrun workers plus a reference run: ~15 s on 2 cores
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    ddp = train(tmp_path, "ddp", *torchrun, batch=16, extra=["trainer.strategy=ddp"])
    single = train(tmp_path, "single", sys.executable, batch=32)

    ddp_metrics = json.loads((ddp / "metrics.json").read_text())["metrics"]
    single_metrics = json.loads((single / "metrics.json").read_text())["metrics"]
    for name in ("val/loss", "test/loss"):
        assert ddp_metrics[name] == pytest.approx(single_metrics[name], rel=1e-5, abs=1e-7)
    ddp_weights = torch.load(ddp / "checkpoints" / "last.pt", weights_only=True)["model"]
    single_weights = torch.load(single / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-5, atol=1e-6)
    assert len(list(ddp.glob("events.out.tfevents.*"))) == 1  # rank 1 logged nothing


def test_ddp_without_torchrun_says_how_to_launch(config, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RunnerError, match="torchrun"):
        run(config("trainer.strategy=ddp"))
