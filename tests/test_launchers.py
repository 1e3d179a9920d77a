"""Trials launched in other processes: Hydra's joblib launcher (local parallel) and submitit
(SLURM, tested with its local executor)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner.config import CONF_DIR, register_configs
from runner.search.resources import cpu_count


@pytest.mark.slow
def test_joblib_runs_trials_in_parallel_processes_that_prune_through_the_study(tmp_path, multirun):
    sweep = tmp_path / "joblib"
    proc = multirun(
        sweep,
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "hydra/sweeper=optuna4",
        # Grid order with this seed: both lr 1e-2 trials in the first batch, both lr 1e-5 in the
        # second, which the median pruner stops in their worker processes.
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.sampler.seed=4",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "optimizer.lr=choice(1e-2,1e-5)",
        "regularization.dropout=choice(0.0,0.1)",
    )
    assert proc.stdout.count("is launching 2 jobs") + proc.stderr.count("is launching 2 jobs") == 2
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    states = {
        (float(r["optimizer.lr"]), float(r["regularization.dropout"])): r["state"] for r in rows
    }
    assert states == {
        (1e-2, 0.0): "finished",
        (1e-2, 0.1): "finished",
        (1e-5, 0.0): "pruned",
        (1e-5, 0.1): "pruned",
    }
    threads = max(1, cpu_count() // 2)  # two trials share the cores
    for r in rows:
        assert f"Using {threads} CPU threads." in (Path(r["folder"]) / "train.log").read_text()


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job(tmp_path, multirun):
    sweep = tmp_path / "submitit"
    multirun(
        sweep,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "optimizer.lr=1e-2,1e-3",
    )
    jobs = [sweep / "0_optimizer.lr=0.01", sweep / "1_optimizer.lr=0.001"]
    values = [json.loads((j / "metrics.json").read_text())["metrics"]["val/loss"] for j in jobs]
    assert values[0] != values[1]
    with open(sweep / "summary.csv") as f:  # the comparison, written where the sweep started
        rows = list(csv.DictReader(f))
    assert sorted(float(r["val/loss"]) for r in rows) == sorted(values)
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit kept each job's log"


def test_slurm_preset_composes_to_the_submitit_slurm_launcher():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (
        launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert (
        launcher.gpus_per_node == 1
        and launcher.cpus_per_task == 8
        and launcher.array_parallelism == 16
    )


def test_slurm_ddp_preset_starts_one_task_per_gpu_on_every_node():
    register_configs()
    GlobalHydra.instance().clear()
    overrides = [
        "hydra/launcher=slurm_ddp",
        "hydra.launcher.nodes=2",
        "hydra.launcher.gpus_per_node=8",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)
    assert cfg.trainer.strategy == "auto"  # several tasks -> DDP, without another override


@pytest.mark.slow  # a 2-task submitit job: ~20 s on 2 cores
def test_a_two_task_submitit_job_trains_one_model_data_parallel(tmp_path, multirun):
    """What slurm_ddp does on a cluster, with submitit's local executor: two tasks of one job
    form a process group from the job's environment and train one model."""
    sweep = tmp_path / "ddp"
    multirun(
        sweep,
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.timeout_min=5",
    )
    (job,) = sweep.glob("0_*")  # nothing swept: the folder's name is its number
    summary = json.loads((job / "metrics.json").read_text())
    digests = summary["state_sha256_by_rank"]
    assert summary["processes"] == 2 and len(digests) == 2 and digests[0] == digests[1]
    assert (job / "train_rank1.log").exists()
    assert json.loads((job / "state.json").read_text())["state"] == "finished"  # rank 0 wrote
