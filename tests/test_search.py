"""Sweeps as a user runs them: `python -m runner.train -m ...` in a subprocess, on digits with a
tiny autoencoder, asserting on what lands in the sweep folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from hydra_plugins.optuna4_sweeper._core import quoted
from hydra_plugins.optuna4_sweeper.plots import write_study_plots
from runner.config import CONF_DIR
from runner.errors import RunnerError
from runner.search.report import reproduce_command
from runner.search.space import PRUNERS, SAMPLERS, make_pruner, make_sampler, parse_space
from runner.search.trial import open_storage

TINY = (
    "model.hidden_dims=[32]",
    "trainer.max_epochs=3",
    "trainer.progress_bar=false",
    "trainer.device=cpu",
    "logger.log_images=false",
)
# Grid over 2 x 2 points: dropout 1.5 fails validation inside the job, lr 1e-5 learns far slower
# than lr 1e-2 and is pruned by the median pruner once an lr 1e-2 trial has finished.
OPTUNA = (
    "hydra/sweeper=optuna4",
    "hydra.sweeper.sampler.name=grid",
    "hydra.sweeper.sampler.seed=4",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "optimizer.lr=choice(1e-2,1e-5)",
    "regularization.dropout=choice(0.0,1.5)",
)


def multirun(sweep_dir: Path, *overrides: str, expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "runner.train",
        "-m",
        *TINY,
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run(cmd, cwd=sweep_dir.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def event_tags(run_dir: Path) -> set[str]:
    return {
        v.tag
        for events in run_dir.glob("events.out.tfevents.*")
        for e in EventFileLoader(str(events)).Load()
        for v in e.summary.value
    }


def trials_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


def by_params(rows: list[dict[str, str]]) -> dict[tuple[float, float], dict[str, str]]:
    return {
        (float(r["params.optimizer.lr"]), float(r["params.regularization.dropout"])): r
        for r in rows
    }


def test_grid_multirun_with_the_basic_sweeper(tmp_path):
    sweep = tmp_path / "grid"
    multirun(sweep, "optimizer.lr=1e-2,1e-4", "regularization.dropout=0,0.2")
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    seen = {}
    for run in runs:
        overrides = (run / ".hydra" / "overrides.yaml").read_text().splitlines()
        values = dict(line.lstrip("- ").split("=", 1) for line in overrides if "=" in line)
        point = (float(values["optimizer.lr"]), float(values["regularization.dropout"]))
        seen[point] = json.loads((run / "metrics.json").read_text())["metrics"]["val/loss"]
        # Every run holds one HParams row, so the sweep folder's HParams tab lists all four.
        (events,) = run.glob("events.out.tfevents.*")
        assert "_hparams_/session_start_info" in event_tags(run)
    assert len(seen) == 4 and len(set(seen.values())) == 4  # four settings, four models
    for dropout in (0.0, 0.2):  # in 3 epochs lr 1e-2 learns far more than lr 1e-4
        fast, slow = seen[(1e-2, dropout)], seen[(1e-4, dropout)]
        assert fast < 0.8 * slow, (fast, slow)


def test_optuna_sweep_records_pruned_and_failed_trials_and_resumes(tmp_path):
    sweep = tmp_path / "optuna"
    first = multirun(sweep, *OPTUNA, "hydra.sweeper.n_trials=2")
    assert "Optuna sweep finished: 2 trials" in first.stdout
    folder_0 = (sweep / "0" / "metrics.json").stat().st_mtime_ns

    # A sweep killed mid-trial leaves that trial RUNNING in the study; fake one.
    study = optuna.load_study(
        study_name="train", storage=open_storage(str(sweep / "optuna.journal"))
    )
    study.enqueue_trial({"optimizer.lr": 1e-5, "regularization.dropout": 1.5})
    study.ask(
        {
            "optimizer.lr": CategoricalDistribution([1e-2, 1e-5]),
            "regularization.dropout": CategoricalDistribution([0.0, 1.5]),
        }
    )

    second = multirun(sweep, *OPTUNA, "hydra.sweeper.n_trials=4")
    assert "1 interrupted trials queued again" in second.stderr + second.stdout
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == folder_0  # not trained again
    rows = trials_csv(sweep)
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[2]["state"] == "FAIL"  # the interrupted one, run again as trial 3
    counted = by_params([r for i, r in enumerate(rows) if i != 2])
    assert len(counted) == 4  # the grid is covered once: the resumed sampler saw earlier trials
    assert counted[(1e-2, 0.0)]["state"] == "COMPLETE"
    assert counted[(1e-5, 0.0)]["state"] == "PRUNED"
    assert int(counted[(1e-5, 0.0)]["last_step"]) < 3
    for lr in (1e-2, 1e-5):
        failed = counted[(lr, 1.5)]
        assert failed["state"] == "FAIL"
        assert "regularization.dropout=1.5" in failed["error"]
    assert not (sweep / "3" / "metrics.json").exists()
    # The pruned trial still gets its HParams row, so TensorBoard lists every trial.
    pruned = sweep / counted[(1e-5, 0.0)]["number"]
    assert "_hparams_/session_start_info" in event_tags(pruned)

    best = json.loads((sweep / "best.json").read_text())
    assert best["best_params"] == {"optimizer.lr": 0.01, "regularization.dropout": 0.0}
    best_metrics = json.loads((Path(best["best_folder"]) / "metrics.json").read_text())["metrics"]
    assert best["best_value"] == pytest.approx(best_metrics["val/loss"])
    assert "search." not in best["best_command"]
    markdown = (sweep / "trials.md").read_text()
    assert best["best_command"] in markdown and markdown.count("| PRUNED |") == 1
    assert (sweep / "optimization_history.png").exists()
    assert "study/optimization_history" in image_tags(sweep / "study")

    # The printed command trains the best trial again to the same value.
    args = best["best_command"].split()[3:]
    rerun = tmp_path / "rerun"
    cmd = [
        sys.executable,
        "-m",
        "runner.train",
        *[a.strip("'") for a in args],
        f"hydra.run.dir={rerun}",
    ]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    again = json.loads((rerun / "metrics.json").read_text())["metrics"]["val/loss"]
    assert again == pytest.approx(best["best_value"], rel=1e-5)


def test_sweep_stops_past_the_failure_rate(tmp_path):
    sweep = tmp_path / "failing"
    proc = multirun(
        sweep,
        "hydra/sweeper=optuna4",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.max_failure_rate=0.25",
        # Config groups that do not exist: each trial fails while its config is composed.
        "optimizer=choice(nosuch,missing)",
        expect=2,
    )
    assert "max_failure_rate=0.25" in proc.stderr
    rows = trials_csv(sweep)
    assert [r["state"] for r in rows] == ["FAIL"] * 3  # stopped once 3 > 0.25 * 8 had failed
    for row in rows:
        assert f"optimizer/{row['params.optimizer']}" in row["error"]


def test_search_space_syntax():
    parser = OverridesParser.create()
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        "model.latent_dim": "range(8, 33, step=8)",
    }
    space, fixed = parse_space(params, ["optimizer=adam,sgd", "trainer.max_epochs=3"], parser)
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["model.latent_dim"] == IntDistribution(8, 32, step=8)
    assert space["optimizer"] == CategoricalDistribution(["adam", "sgd"])
    assert fixed == ["trainer.max_epochs=3"]


@pytest.mark.parametrize(
    "preset", sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
)
def test_hparams_search_presets_name_keys_the_config_has(preset):
    """A typo in a preset's search space would only fail once its sweep runs."""
    overrides = [f"hparams_search={preset}"]
    text = (CONF_DIR / "hparams_search" / f"{preset}.yaml").read_text()
    model = next(
        (line.split(":")[1].strip() for line in text.splitlines() if "override /model:" in line),
        None,
    )
    if model and not (CONF_DIR / "model" / f"{model}.yaml").exists():
        pytest.skip(f"conf/model/{model}.yaml does not exist yet")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    for key in cfg.hydra.sweeper.params:
        assert key in choices or OmegaConf.select(cfg, key, default="<absent>") != "<absent>", key


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_builds(name):
    space = {
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
        "model.latent_dim": IntDistribution(8, 32, step=8),
    }
    study = optuna.create_study(sampler=make_sampler(name, 0, 1, space))
    trial = study.ask(space)
    assert trial.params["optimizer"] in ("adam", "sgd") and trial.params["model.latent_dim"] in (
        8,
        16,
        24,
        32,
    )


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_stops_a_clearly_worse_trial_except_none(name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(pruner=make_pruner(name, n_startup_trials=3), direction="minimize")

    def objective(trial: optuna.Trial) -> float:
        value = 10.0 if trial.number == 5 else 1.0 - 0.01 * trial.number  # trial 5 is far worse
        for step in range(8):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=6)
    states = [t.state for t in study.trials]
    assert states[:5] == [optuna.trial.TrialState.COMPLETE] * 5
    assert (states[5] == optuna.trial.TrialState.PRUNED) == (name != "none")


def test_unknown_sampler_or_pruner_names_the_choices():
    with pytest.raises(RunnerError, match="tpe, random, grid, cmaes"):
        make_sampler("bayes", None, 1, {})
    with pytest.raises(RunnerError, match="none, median, successive_halving"):
        make_pruner("hyper")


@pytest.mark.parametrize(
    "value", ["/tmp/a b,c/x.journal", "C:\\runs\\", "it's", "sqlite:////tmp/x.db"]
)
def test_storage_paths_survive_the_override_parser(value):
    parsed = OverridesParser.create().parse_override(f"search.storage={quoted(value)}").value()
    assert parsed == value


def test_reproduce_command_quotes_and_drops_study_keys():
    command = reproduce_command(
        ["model.hidden_dims=[32, 16]", "optimizer.lr=0.01", "search.trial_id=3"]
    )
    assert command == "python -m runner.train 'model.hidden_dims=[32, 16]' optimizer.lr=0.01"


def image_tags(log_dir: Path) -> list[str]:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    acc.Reload()
    return acc.Tags()["images"]


def test_a_finished_study_is_drawn_as_pictures_and_in_tensorboard(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: (
            (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 0.01) ** 2
            + 0.001 * t.suggest_int("width", 8, 64)
        ),
        n_trials=8,
    )
    written = write_study_plots(study, tmp_path)
    assert {p.name for p in written} == {"optimization_history.png", "param_importances.png"}
    for path in written:
        with Image.open(path) as image:
            assert image.size[0] > 200 and image.size[1] > 150
    assert set(image_tags(tmp_path / "study")) == {
        "study/optimization_history",
        "study/param_importances",
    }
    assert write_study_plots(optuna.create_study(), tmp_path / "empty") == []
