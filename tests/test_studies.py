"""The course's studies (`-m study=<name>`, conf/study/): every job of every study composes and
passes the start-up checks, and a study runs end to end into its comparison."""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from runner.config import CONF_DIR, register_configs
from runner.validation import validate

STUDIES = sorted(p.stem for p in (CONF_DIR / "study").glob("*.yaml"))
QUICK = (
    "trainer.max_epochs=1",
    "trainer.max_steps=null",
    "trainer.limit_train_batches=3",
    "trainer.progress_bar=false",
    "logger.log_images=false",
)


def run_study(sweep_dir: Path, *overrides: str) -> None:
    command = [sys.executable, "-m", "runner.train", "-m", *overrides, *QUICK]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    proc = subprocess.run(
        command, cwd=sweep_dir.parent, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def composed(overrides: list[str], hydra: bool = False):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def jobs_of(study: str) -> list[list[str]]:
    """The overrides of each job the study's sweep launches (a grid: every combination)."""
    sweeper = composed([f"study={study}"], hydra=True).hydra.sweeper
    parser = OverridesParser.create()
    axes = []
    for key, values in sweeper.params.items():
        override = parser.parse_override(f"{key}={values}")
        if override.is_sweep_override() and not override.is_discrete_sweep():
            pytest.fail(f"{study}: {key}={values} is not a list of values")  # basic sweeper only
        choices = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [override.get_value_element_as_str()]
        )
        axes.append([f"{key}={v}" for v in choices])
    return [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("study", STUDIES)
def test_every_job_of_a_study_passes_the_start_up_checks(study):
    """A typo in a study (a key, a choice, a value out of range) fails here, not an hour into
    its sweep."""
    jobs = jobs_of(study) if study != "search" else [[]]
    assert jobs
    for job in jobs:
        cfg = composed([f"study={study}", *job, "paths.output_dir=."])
        validate(cfg)
        assert study in cfg.tags
    sweep_dir = composed([f"study={study}"], hydra=True).hydra.sweep.dir
    assert f"study_{study}" in sweep_dir  # each study's sweeps in a folder of their own


@pytest.mark.slow
def test_a_study_runs_into_its_comparison(tmp_path):
    """study=overfitting on the embedded digits, a few steps per run: one run per defence, each
    with its preset, and the comparison names them."""
    sweep = tmp_path / "overfitting"
    run_study(sweep, "study=overfitting", "dataset=digits")
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    wanted = [job[0].split("=")[1] for job in jobs_of("overfitting")]
    assert sorted(r["regularization"] for r in rows) == sorted(wanted)
    assert all(r["state"] == "finished" for r in rows)
    for row in rows:
        folder = Path(row["folder"])
        assert folder.name.endswith(f"_regularization={row['regularization']}")
        saved = OmegaConf.load(folder / ".hydra" / "config.yaml").regularization
        preset = OmegaConf.to_container(
            OmegaConf.load(CONF_DIR / "regularization" / f"{row['regularization']}.yaml")
        )
        preset.pop("defaults")
        expected = {"dropout": 0.0, "normalization": "none", "weight_decay": 0.0, **preset}
        for key, value in expected.items():
            got = OmegaConf.to_container(saved[key]) if isinstance(value, dict) else saved[key]
            if isinstance(value, dict):
                got = {k: got[k] for k in value}
            assert got == value, (row["regularization"], key)
    assert "What differs between the runs: regularization." in (sweep / "summary.md").read_text()


def test_the_cross_validation_study_sets_each_estimate_beside_the_test_score(tmp_path):
    sweep = tmp_path / "cv"
    run_study(sweep, "study=cross_validation", "cv.folds=null,2", "dataset.split_seed=0,1")
    with open(sweep / "summary_over_seeds.csv") as f:
        grouped = {r["cv.folds"]: r for r in csv.DictReader(f)}
    assert set(grouped) == {"null", "2"}
    for row in grouped.values():
        assert row["runs"] == "2"
        error = float(row["val/acc - test/acc mean"])
        assert error == pytest.approx(float(row["val/acc mean"]) - float(row["test/acc mean"]))
    folds = sorted(p.name for p in sweep.glob("*cv.folds=2*/fold_*"))
    assert len(folds) == 4  # two seeds x two folds, each its own run


def test_there_is_a_study_for_every_lesson_of_the_course():
    assert set(STUDIES) >= {
        "overfitting",
        "init",
        "hyperparameters",
        "search",
        "cross_validation",
        "transfer",
        "autoencoders",
        "gan",
        "sequences",
    }
