"""Data-parallel training on PyTorch's DistributedDataParallel: 2 CPU processes over gloo.

Ranks must end bit-identical and agree on every metric and decision; 2 processes at batch B must
train like 1 process at batch 2B; a failure on one rank must end all of them with exit code 2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DistributedSampler

from runner import distributed
from runner.data.datasets import TensorSplit
from runner.data.loader import DeviceLoader, HostLoader, Shard
from runner.errors import RunnerError
from runner.train import run

TESTS = Path(__file__).resolve().parent
QUIET = ("trainer.progress_bar=false", "logger.log_images=false")
CPU = ("trainer.device=cpu",)
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def torchrun(out: Path, *overrides: str, device=CPU) -> subprocess.CompletedProcess:
    """Two ranks of `tests/ddp_worker.py` into run folder `out`; each writes rank<r>.json."""
    cmd = [*TORCHRUN, str(TESTS / "ddp_worker.py"), str(out), *QUIET, *device, *overrides]
    return subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, timeout=240)


def trained(out: Path, *overrides: str, device=CPU) -> tuple[dict, list[dict]]:
    """Train with two ranks; (metrics.json, [what each rank ended with])."""
    proc = torchrun(out, *overrides, device=device)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return json.loads((out / "metrics.json").read_text()), ranks


def assert_ranks_agree(summary: dict, ranks: list[dict]) -> None:
    digests = summary["state_sha256_by_rank"]
    assert len(digests) == 2 and digests[0] == digests[1], "weights and buffers differ by rank"
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # every val/test number, exactly
    assert ranks[0]["initial_seed"] != ranks[1]["initial_seed"]  # own random stream per rank


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(out: Path, *overrides: str) -> list[subprocess.Popen]:
    """Two `python -m runner.train` processes joined by hand (as torchrun would), so that each
    one's own exit code can be checked."""
    port = free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        cmd = [sys.executable, "-m", "runner.train", *QUIET, *CPU, *overrides]
        if not any(o.startswith("hydra.run.dir=") for o in overrides):
            cmd.append(f"hydra.run.dir={out}")
        procs.append(
            subprocess.Popen(
                cmd, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    return procs


def finish(procs: list[subprocess.Popen], limit: float) -> list[tuple[int, str]]:
    """(exit code, stderr) of every process; fails if any is still running after `limit` s."""
    deadline = time.monotonic() + limit
    ended = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"a rank was still running {limit} s after the start: it hangs")
        ended.append((proc.returncode, err.decode()))
    return ended


# -- every rank ends the same ------------------------------------------------------------------
@pytest.mark.slow
def test_cnn_with_batchnorm_dropout_augmentation_plateau_and_early_stopping(tmp_path):
    """The run that used to hang (issue: ranks disagreed on val/loss, then on the test pass)."""
    summary, ranks = trained(
        tmp_path / "cnn",
        "model=cnn",
        "model.channels=[8,16]",
        "regularization.dropout=0.3",
        "regularization.augmentation.rotation=10",
        "scheduler=plateau",
        "scheduler.scheduler.patience=0",
        "regularization.early_stopping.patience=1",
        "trainer.max_epochs=30",
        "trainer.batch_size=32",
    )
    assert_ranks_agree(summary, ranks)
    assert summary["stopped_early"] and summary["epochs_trained"] < 30
    assert summary["processes"] == 2
    assert ranks[0]["metrics"]["test/acc"] > 0.8  # it learned, and the test pass finished
    assert "test/acc_class/9" in ranks[1]["metrics"]  # rank 0's whole-set metrics reach rank 1
    assert len(list((tmp_path / "cnn").glob("events.out.tfevents.*"))) == 1  # rank 0 writes


@pytest.mark.slow  # two 2-process GAN runs: ~25 s on 2 cores
@pytest.mark.parametrize("loss", ["hinge", "wgan_gp"])
def test_gan_ranks_stay_identical(tmp_path, loss):
    summary, ranks = trained(
        tmp_path / loss,
        "model=gan",
        f"model.loss={loss}",
        "model.channels=[8,16]",
        "model.latent_dim=8",
        "model.ema_decay=0.9",
        "optimizer=gan_adam",
        "optimized_metric=val/g_loss",
        "trainer.max_epochs=2",
        "trainer.batch_size=32",
    )
    assert_ranks_agree(summary, ranks)


# -- 2 ranks at batch B train like 1 process at batch 2B -----------------------------------------
def single(out: Path, *overrides: str, device=CPU) -> dict:
    cmd = [sys.executable, "-m", "runner.train", *QUIET, *device, *overrides]
    cmd.append(f"hydra.run.dir={out}")
    proc = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "loader",
    ["device", pytest.param("dataloader", marks=pytest.mark.slow)],  # workers: ~25 s
)
def test_two_ranks_at_batch_b_match_one_process_at_batch_2b(tmp_path, loader):
    """MLP autoencoder (no batch norm, no randomness): DDP averages the two half-batches'
    gradients, which is the full batch's gradient, so results agree to float round-off."""
    common = ("model.hidden_dims=[32]", "trainer.max_epochs=2", f"trainer.loader={loader}")
    common += ("trainer.num_workers=0",)
    ddp, _ = trained(tmp_path / "ddp", *common, "trainer.batch_size=16")
    one = single(tmp_path / "one", *common, "trainer.batch_size=32")
    assert ddp["train_steps"] == one["train_steps"]
    for name in ("val/loss", "test/loss"):
        assert ddp["metrics"][name] == pytest.approx(one["metrics"][name], rel=1e-5)
    ddp_weights = torch.load(tmp_path / "ddp/checkpoints/last.pt", weights_only=True)["model"]
    one_weights = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)["model"]
    assert ddp_weights.keys() == one_weights.keys()  # no "module." prefixes from the wrapper
    for key, value in one_weights.items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_rank_0_records_layer_stats_and_every_rank_reports_them(tmp_path):
    summary, ranks = trained(
        tmp_path / "mlp",
        "model=mlp",
        "model.hidden_dims=[16,16]",
        "logger.layer_stats=true",
        "trainer.max_epochs=2",
        "trainer.batch_size=32",
    )
    assert_ranks_agree(summary, ranks)  # recording changed nothing on either rank
    assert "init/gradient_std_last" in ranks[1]["metrics"]
    events = EventAccumulator(str(tmp_path / "mlp"), size_guidance={"scalars": 0})
    events.Reload()
    steps = summary["train_steps"] // 2  # per epoch, on each rank
    values = events.Scalars("layers/gradient_std/body.0")
    assert [v.step for v in values] == [1, steps + 1]
    assert values[0].value == summary["metrics"]["init/gradient_std_first"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs 2 CUDA GPUs")
def test_sync_batchnorm_cnn_matches_one_process_at_batch_2b_on_gpus(tmp_path):
    """With SyncBatchNorm, batch statistics cover the global batch: like one process at 2B
    (up to GPU non-determinism and TF32, hence the tolerance)."""
    common = ("model=cnn", "model.channels=[8,16]", "trainer.max_epochs=2", "trainer.precision=32")
    gpu = ("trainer.device=cuda",)
    sync = ("trainer.sync_batchnorm=true", "trainer.batch_size=16")
    ddp, _ = trained(tmp_path / "ddp", *common, *sync, device=gpu)
    one = single(tmp_path / "one", *common, "trainer.batch_size=32", device=gpu)
    assert ddp["metrics"]["test/loss"] == pytest.approx(one["metrics"]["test/loss"], rel=2e-2)


def test_sync_batchnorm_on_cpu_is_a_clear_error():
    with pytest.raises(RunnerError, match="SyncBatchNorm has no CPU"):
        distributed.convert_sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"))


# -- resume ------------------------------------------------------------------------------------
@pytest.mark.slow  # three 2-process runs: ~30 s on 2 cores
def test_a_killed_ddp_run_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path):
    common = (
        "model._target_=tests.ddp_faults.FaultyAutoencoder",
        "model.hidden_dims=[32]",
        "regularization.dropout=0.2",
        "regularization.augmentation.rotation=10",
        "trainer.deterministic=true",
        "trainer.max_epochs=4",
        "trainer.batch_size=16",
    )
    whole, _ = trained(tmp_path / "whole", *common)
    killed = torchrun(tmp_path / "resumed", *common, "+model.kill_at=100")  # ~epoch 3 of 4
    assert killed.returncode != 0
    last = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)
    assert last["epoch"] == 2 and len(last["rng_by_rank"]) == 2
    resumed, ranks = trained(tmp_path / "resumed", *common, "trainer.resume=true")
    assert resumed["metrics"] == whole["metrics"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"]


@pytest.mark.slow
def test_checkpoints_move_between_one_process_and_ddp(tmp_path, config):
    """A single-process checkpoint continues under DDP, and a DDP one in a single process."""
    common = ("model.hidden_dims=[32]", "logger.tensorboard=false")
    run(config(*common, "trainer.max_epochs=1", run_dir=tmp_path / "one"))
    ddp, _ = trained(tmp_path / "ddp", *common, "trainer.max_epochs=2", f"ckpt_path={tmp_path}/one")
    assert ddp["epochs_trained"] == 2  # epoch 1 came from the single-process run
    back = run(config(*common, "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'ddp'}"))
    assert back["test/loss"] < ddp["metrics"]["test/loss"]


# -- failures end every rank -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("+model.nan_at=7", "train/loss became nan"),
        pytest.param("+model.fail_at=7", "Injected failure", marks=pytest.mark.slow),
    ],
)
def test_a_fault_on_one_rank_ends_both_with_exit_code_2(tmp_path, fault, says):
    procs = start_ranks(
        tmp_path / "run",
        "model._target_=tests.ddp_faults.FaultyAutoencoder",
        fault,
        "trainer.log_every_n_steps=5",
        "trainer.max_epochs=50",
    )
    (code0, err0), (code1, err1) = finish(procs, limit=60)
    assert (code0, code1) == (2, 2), err0[-2000:] + err1[-2000:]
    assert says in err1 and "Traceback" not in err0 + err1
    assert says in err0 or "another process of this data-parallel run stopped" in err0
    run_dir = tmp_path / "run"  # rank 1 logs beside rank 0, into its own file
    assert "DDP rank 1 of 2" in (run_dir / "train_rank1.log").read_text()
    assert "DDP rank 1 of 2" not in (run_dir / "train.log").read_text()


def test_ranks_with_different_run_folders_are_refused(tmp_path):
    procs = start_ranks(tmp_path / "a", "hydra.run.dir=${oc.env:RANK}")
    for code, err in finish(procs, limit=60):
        assert code == 2 and "disagree on their run folder" in err


def test_ddp_without_a_launcher_says_how_to_launch(config, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RunnerError, match="torchrun --standalone --nproc_per_node"):
        run(config("trainer.strategy=ddp"))


def test_single_strategy_in_a_launched_group_is_refused(config, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RunnerError, match="launched as 2 processes but trainer.strategy=single"):
        run(config("trainer.strategy=single"))


def test_more_processes_per_node_than_gpus_is_refused(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(RunnerError, match="4 processes on this node but 2 visible GPU"):
        distributed.init_distributed("ddp", "cuda")


# -- shards ------------------------------------------------------------------------------------
def test_rank_shards_are_disjoint_cover_the_epoch_and_follow_distributed_sampler():
    split = TensorSplit(torch.zeros(11, 1, 1, 1, dtype=torch.uint8), torch.arange(11))
    cpu = torch.device("cpu")

    def epoch(kind, shuffle: bool, rank: int) -> list[int]:
        extra = {"num_workers": 0} if kind is HostLoader else {}
        loader = kind(split, 3, cpu, shuffle, False, 5, Shard(rank, 2), **extra)
        loader.set_epoch(2)
        return torch.cat([y for _, y in loader]).tolist()

    for kind in (DeviceLoader, HostLoader):
        train = [epoch(kind, True, rank) for rank in range(2)]
        assert len(train[0]) == len(train[1]) == 5  # equal steps on every rank
        for rank in range(2):  # the order PyTorch's sampler gives rank r in epoch 2
            sampler = DistributedSampler(range(11), 2, rank, shuffle=True, seed=5, drop_last=True)
            sampler.set_epoch(2)
            assert train[rank] == list(sampler)
        evaluation = [epoch(kind, False, rank) for rank in range(2)]
        assert sorted(evaluation[0] + evaluation[1]) == list(range(11))  # each example once
