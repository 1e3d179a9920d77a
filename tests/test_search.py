"""Sweeps as a user runs them: `python -m runner.train -m ...` in a subprocess, on digits with a
tiny autoencoder, asserting on what lands in the sweep folder."""

from __future__ import annotations

import ast
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from hydra_plugins.optuna4_sweeper._core import quoted
from hydra_plugins.optuna4_sweeper._plots import write_study_plots
from hydra_plugins.optuna4_sweeper._report import reproduce_command
from hydra_plugins.optuna4_sweeper._space import grid_of, parse_space
from hydra_plugins.optuna4_sweeper._study import (
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
)
from hydra_plugins.optuna4_sweeper.config import PRUNERS, SAMPLERS, SweeperError
from runner.config import CONF_DIR, register_configs
from runner.reports.records import RunRecord, with_trials
from runner.search.trial import SweepTrial
from tests.fakes import OPTUNA_GRID, sweep_command

OPTUNA = OPTUNA_GRID


def event_tags(run_dir: Path) -> set[str]:
    return {
        v.tag
        for events in run_dir.glob("events.out.tfevents.*")
        for e in EventFileLoader(str(events)).Load()
        for v in e.summary.value
    }


def trials_csv(sweep_dir: Path) -> list[dict[str, str]]:
    """The sweep's summary.csv (one row per trial, whether or not it got a folder), in trial
    order."""
    with open(sweep_dir / "summary.csv") as f:
        return sorted(csv.DictReader(f), key=lambda r: int(r["run"]))


def job_folder(sweep_dir: Path, number: int | str) -> Path:
    """Job `number`'s folder: its number, then what differs (`0_optimizer.lr=0.01,...`)."""
    (folder,) = sweep_dir.glob(f"{number}_*")
    return folder


def by_params(rows: list[dict[str, str]]) -> dict[tuple[float, float], dict[str, str]]:
    return {(float(r["optimizer.lr"]), float(r["regularization.dropout"])): r for r in rows}


def test_grid_multirun_with_the_basic_sweeper(tmp_path, multirun):
    sweep = tmp_path / "grid"
    # The networks alone (no PCA path to start from), so the learning rate shows.
    multirun(sweep, "optimizer.lr=1e-2,1e-4", "regularization.dropout=0,0.2", "model.linear=none")
    runs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [p.name for p in runs] == [  # named by what differs; the constant keys left out
        "0_optimizer.lr=0.01,regularization.dropout=0",
        "1_optimizer.lr=0.01,regularization.dropout=0.2",
        "2_optimizer.lr=0.0001,regularization.dropout=0",
        "3_optimizer.lr=0.0001,regularization.dropout=0.2",
    ]
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


@pytest.mark.slow
def test_optuna_sweep_records_pruned_and_failed_trials_and_resumes(tmp_path, multirun):
    sweep = tmp_path / "optuna"
    first = multirun(sweep, *OPTUNA, "hydra.sweeper.n_trials=2")
    assert "Optuna sweep finished: 2 trials" in first.stdout
    folder_0 = (job_folder(sweep, 0) / "metrics.json").stat().st_mtime_ns

    # A sweep killed mid-trial leaves that trial RUNNING in the study; fake one, asked as the
    # sweep asks (the grid's next point).
    space = {
        "optimizer.lr": CategoricalDistribution([1e-2, 1e-5]),
        "regularization.dropout": CategoricalDistribution([0.0, 1.5]),
    }
    grid, _ = make_sampler({**SAMPLERS["grid"], "seed": 4}, space)
    storage = open_storage(str(sweep / "optuna.journal"))
    study = optuna.load_study(study_name="train", storage=storage, sampler=grid)
    study.ask(space)

    second = multirun(sweep, *OPTUNA, "hydra.sweeper.n_trials=4")
    assert "1 interrupted trials queued again" in second.stderr + second.stdout
    assert (job_folder(sweep, 0) / "metrics.json").stat().st_mtime_ns == folder_0  # not again
    rows = trials_csv(sweep)
    assert [r["run"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[2]["state"] == "interrupted"  # the interrupted one, run again as trial 3
    assert "run again as trial 3" in rows[2]["error"]
    assert rows[3]["regularization.dropout"] == rows[2]["regularization.dropout"]
    counted = by_params([r for i, r in enumerate(rows) if i != 2])
    assert len(counted) == 4  # the grid is covered once: the resumed sampler saw earlier trials
    assert counted[(1e-2, 0.0)]["state"] == "finished"
    assert counted[(1e-5, 0.0)]["state"] == "pruned"
    assert int(counted[(1e-5, 0.0)]["epochs"]) < 3
    for lr in (1e-2, 1e-5):
        failed = counted[(lr, 1.5)]
        assert failed["state"] == "failed"
        assert "regularization.dropout=1.5" in failed["error"]
    assert not (job_folder(sweep, 3) / "metrics.json").exists()
    # Pruned and failed trials still write their HParams rows, so TensorBoard lists every trial;
    # the pruned one with the best value it reached.
    for point in ((1e-5, 0.0), (1e-2, 1.5)):
        assert "_hparams_/session_start_info" in event_tags(Path(counted[point]["folder"]))
    pruned = scalars(Path(counted[(1e-5, 0.0)]["folder"]), "val/loss_best")
    study = optuna.load_study(
        study_name="train", storage=open_storage(str(sweep / "optuna.journal"))
    )
    reached = study.trials[int(counted[(1e-5, 0.0)]["run"])].intermediate_values.values()
    assert pruned == [pytest.approx(min(reached))]

    best = json.loads((sweep / "best.json").read_text())
    assert best["best_params"] == {"optimizer.lr": 0.01, "regularization.dropout": 0.0}
    best_metrics = json.loads((Path(best["best_folder"]) / "metrics.json").read_text())["metrics"]
    assert best["best_value"] == pytest.approx(best_metrics["val/loss"])
    assert "search." not in best["best_command"]
    assert best["best_folder"] == counted[(1e-2, 0.0)]["folder"]
    markdown = (sweep / "summary.md").read_text()
    assert markdown.count("| pruned |") == 1 and "| interrupted |" in markdown
    assert best["best_command"] in second.stdout
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


# Random search over a continuous space: a sampler that replayed its seed would repeat points.
CONTINUOUS = (
    "hydra/sweeper=optuna4",
    "hydra/sweeper/sampler=random",
    "hydra.sweeper.sampler.seed=0",
    "hydra/sweeper/pruner=none",
    "hydra.sweeper.n_trials=3",
    "trainer.max_epochs=1",
    "logger=none",
    "optimizer.lr=tag(log, interval(1e-3, 1e-2))",
    "regularization.dropout=interval(0.0, 0.3)",
)


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_repeating_its_trials(tmp_path, multirun):
    sweep = tmp_path / "killed"
    cmd = sweep_command(sweep, *CONTINUOUS)
    first = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = sweep / "optuna.journal"
    deadline = time.monotonic() + 240
    try:  # kill -9 while the second trial runs
        while [t.state.name for t in study_trials(journal)] != ["COMPLETE", "RUNNING"]:
            assert first.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    resumed = multirun(sweep, *CONTINUOUS)  # the same command again
    assert "3 complete, 1 interrupted" in resumed.stdout
    rows = trials_csv(sweep)
    assert [r["state"] for r in rows] == ["finished", "interrupted", "finished", "finished"]
    points = [(r["optimizer.lr"], r["regularization.dropout"]) for r in rows]
    complete = [p for p, r in zip(points, rows) if r["state"] == "finished"]
    assert len(set(complete)) == 3  # trial 3 is a new proposal, not trial 0's again
    assert points[2] == points[1]  # the interrupted trial's parameters ran again, as trial 2
    reason = "the sweep stopped while this trial ran"
    assert rows[1]["error"].startswith(reason) and "run again as trial 2" in rows[1]["error"]
    assert "| interrupted |" in (sweep / "summary.md").read_text()
    assert reason in (sweep / "summary.md").read_text()


@pytest.mark.parametrize("name", ["random", "tpe", "cmaes", "grid"])
def test_a_continued_study_gets_new_proposals_from_a_seeded_sampler(tmp_path, name):
    """What a rerun of the same sweep command does: the same seeded sampler, the same study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model.latent_dim": IntDistribution(8, 32, step=8),
    }
    if name == "grid":
        space["optimizer.lr"] = CategoricalDistribution([1e-3, 1e-2])
    storage = open_storage(str(tmp_path / "optuna.journal"))
    proposals = []
    for _ in range(2):  # the first sweep, then the resumed one
        sampler, _ = make_sampler({**SAMPLERS[name], "seed": 0}, space)
        study = open_study(storage, "train", sampler, "minimize")
        for _ in range(3):
            trial = study.ask(space)
            proposals.append(tuple(trial.params.values()))
            study.tell(trial, trial.params["optimizer.lr"])
    # The grid (8 points) continues where it was; the others draw new points.
    assert len(set(proposals)) == 6, proposals


def study_trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    if not journal.exists():
        return []
    try:
        return optuna.load_study(study_name="train", storage=open_storage(str(journal))).trials
    except KeyError:  # the study is not written yet
        return []


def test_sweep_stops_past_the_failure_rate(tmp_path, multirun):
    sweep = tmp_path / "failing"
    proc = multirun(
        sweep,
        "hydra/sweeper=optuna4",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.max_failure_rate=0.25",
        # Config groups that do not exist: each trial fails while its config is composed.
        "optimizer=choice(nosuch,missing)",
        expect=2,
    )
    assert "max_failure_rate=0.25" in proc.stderr
    rows = trials_csv(sweep)  # written all the same: the sweep stopped, the report did not
    assert [r["state"] for r in rows] == ["failed"] * 3  # stopped once 3 > 0.25 * 8 had failed
    trials = json.loads((sweep / "trials.json").read_text())
    for row, trial in zip(rows, trials):
        assert row["folder"] == ""  # failed while composed: no folder, still a row
        assert f"optimizer/{trial['params.optimizer']}" in row["error"]


def test_a_run_that_is_no_sweep_loads_no_optuna_through_the_plugin_scan(tmp_path):
    """Hydra imports the sweeper's public modules at every start; Optuna waits for a sweep."""
    code = (
        "import sys; sys.argv = ['runner.train', '--cfg', 'job']; import runner.train; "
        "runner.train.main(); "
        "print(sorted(m for m in sys.modules if m.startswith(('optuna', 'hydra_plugins.optuna4'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == str(
        [
            "hydra_plugins.optuna4_sweeper",
            "hydra_plugins.optuna4_sweeper.config",
            "hydra_plugins.optuna4_sweeper.sweeper",
        ]
    )


def test_the_sweeper_and_the_app_share_no_code():
    """The plugin imports nothing of runner, runner imports nothing of the plugin."""
    root = Path(__file__).resolve().parent.parent

    def imported(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        return names | {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
        }

    plugin = {m for f in (root / "hydra_plugins").rglob("*.py") for m in imported(f)}
    app = {m for f in (root / "runner").rglob("*.py") for m in imported(f)}
    assert not {m for m in plugin if m.split(".")[0] == "runner"}
    assert not {m for m in app if m.split(".")[0] == "hydra_plugins"}


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


def test_grid_points_set_a_grid_on_continuous_intervals():
    """hydra.sweeper.grid_points=4: a grid of the same intervals random search and TPE draw from."""
    space = {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "regularization.dropout": FloatDistribution(0.0, 0.6),
        "model.latent_dim": IntDistribution(8, 64, log=True),
    }
    grid = grid_of(space, points=4)
    assert grid["optimizer.lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid["regularization.dropout"] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert grid["model.latent_dim"] == [8, 16, 32, 64]
    sampler, size = make_sampler({**SAMPLERS["grid"], "seed": 0}, space, grid_points=4)
    assert size == 64
    with pytest.raises(SweeperError, match="grid_points"):
        grid_of(space)  # without it a continuous interval has no grid


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
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    for key in cfg.hydra.sweeper.params:
        assert key in choices or OmegaConf.select(cfg, key, default="<absent>") != "<absent>", key


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_preset_builds_and_proposes_from_the_space(name):
    space = {
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
        "model.latent_dim": IntDistribution(8, 32, step=8),
    }
    sampler, grid_size = make_sampler({**SAMPLERS[name], "seed": 0}, space)
    assert grid_size == (8 if name == "grid" else None)  # the grid comes from the space
    study = optuna.create_study(sampler=sampler)
    proposals = set()
    for _ in range(8):
        trial = study.ask(space)
        proposals.add((trial.params["optimizer"], trial.params["model.latent_dim"]))
    assert proposals <= {(o, d) for o in ("adam", "sgd") for d in (8, 16, 24, 32)}
    assert len(proposals) == 8 if name == "grid" else len(proposals) > 1


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_any_optuna_sampler_or_pruner_is_a_target_config():
    """No code for samplers and pruners without a preset: a `_target_` and its arguments."""
    space = {"optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    qmc, _ = make_sampler({"_target_": "optuna.samplers.QMCSampler", "seed": 1}, space)
    assert isinstance(qmc, optuna.samplers.QMCSampler)
    conf = {"_target_": "optuna.pruners.PatientPruner", "patience": 2}
    conf["wrapped_pruner"] = {"_target_": "optuna.pruners.PercentilePruner", "percentile": 25.0}
    assert make_pruner(conf) == conf  # what each trial builds its pruner from
    pruner = instantiate(conf)
    assert isinstance(pruner, optuna.pruners.PatientPruner)


@pytest.mark.parametrize(
    ("kind", "conf", "message"),
    [
        (
            "sampler",
            {"_target_": "optuna.samplers.TPESamplr"},
            "Did you mean optuna.samplers.TPESampler? Presets: hydra/sweeper/sampler=tpe, "
            "random, grid, cmaes.",
        ),
        (
            "sampler",
            {"_target_": "optuna.pruners.MedianPruner"},
            "is not an Optuna sampler (a subclass of optuna.samplers",
        ),
        ("sampler", "random", "pick a preset with hydra/sweeper/sampler=<name>"),
        (
            "pruner",
            {"_target_": "optuna.pruners.MedianPruner", "n_warmup_step": 2},
            "unexpected keyword argument 'n_warmup_step'. It takes: n_startup_trials, "
            "n_warmup_steps,",
        ),
        (
            "pruner",
            {"_target_": "optuna.pruners.NopPruner", "name": "median"},
            "Short names are presets now: hydra/sweeper/pruner=median.",
        ),
    ],
)
def test_a_wrong_sampler_or_pruner_names_what_would_work(kind, conf, message):
    with pytest.raises(SweeperError) as raised:
        make_sampler(conf, {}) if kind == "sampler" else make_pruner(conf)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_wrong_sampler_stops_the_sweep_before_any_trial(tmp_path, multirun):
    sweep = tmp_path / "wrong"
    proc = multirun(
        sweep,
        "hydra/sweeper=optuna4",
        "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampelr",
        "optimizer.lr=interval(1e-3,1e-2)",
        expect=2,
    )
    assert proc.stderr.strip().splitlines() == [
        "error: hydra.sweeper.sampler._target_='optuna.samplers.RandomSampelr' is not a class "
        "that can be imported. Did you mean optuna.samplers.RandomSampler? Presets: "
        "hydra/sweeper/sampler=tpe, random, grid, cmaes."
    ]
    assert not (sweep / "optuna.journal").exists() and not list(sweep.glob("0_*"))
    assert not (sweep / "summary.csv").exists()  # no run started: nothing to compare


# A race of two samplers over a 2 x 2 grid, two trials each, every trial two training steps of
# the networks alone (no PCA map to fit first).
RACE = (
    "hydra/sweeper=optuna4",
    "hydra.sweeper.compare_samplers=[grid,random]",
    "hydra.sweeper.sampler.seed=0",
    "hydra/sweeper/pruner=none",
    "hydra.sweeper.n_trials=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "model.linear=none",
    "logger=none",
    "optimizer.lr=choice(1e-2,1e-3)",
    "regularization.dropout=choice(0.0,0.1)",
)


def run_folders(sweep_dir: Path) -> dict[int, Path]:
    """The sweep's run folders by job number, the first part of their names."""
    runs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    by_job = {int(p.name.split("_")[0]): p for p in runs}
    assert len(by_job) == len(runs), [p.name for p in runs]  # no job number twice
    return by_job


def test_a_race_of_samplers_runs_one_study_each_and_resumes(tmp_path, multirun):
    sweep = tmp_path / "race"
    first = multirun(sweep, *RACE)
    logged = first.stdout + first.stderr
    assert "Sampler grid (1 of 2): Optuna study 'train-grid'" in logged
    assert "Sampler random (2 of 2): Optuna study 'train-random'" in logged
    runs = run_folders(sweep)
    assert sorted(runs) == [0, 1, 2, 3]  # job numbers run on from one study to the next
    sampler_of = {}
    for job, run in runs.items():
        config = OmegaConf.load(run / ".hydra" / "config.yaml")
        sampler_of[job] = config.search.sampler
        assert run.name.endswith(f",search.sampler={config.search.sampler}")
        assert config.search.study == f"train-{config.search.sampler}"
    assert sampler_of == {0: "grid", 1: "grid", 2: "random", 3: "random"}

    trials = json.loads((sweep / "trials.json").read_text())
    assert sorted((t["sampler"], t["number"], t["job"]) for t in trials) == [
        ("grid", 0, 0),
        ("grid", 1, 1),
        ("random", 0, 2),
        ("random", 1, 3),
    ]
    for trial in trials:
        assert Path(trial["folder"]) == runs[trial["job"]].resolve()
    rows = trials_csv(sweep)
    assert [int(r["run"]) for r in rows] == [0, 1, 2, 3]  # trial numbers 0, 1 twice: no mix-up
    for row in rows:
        run = runs[int(row["run"])]
        assert row["search.sampler"] == sampler_of[int(row["run"])]
        metrics = json.loads((run / "metrics.json").read_text())["metrics"]
        assert float(row["val/loss"]) == pytest.approx(metrics["val/loss"])

    best = json.loads((sweep / "best.json").read_text())
    assert best["best_value"] == min(t["value"] for t in trials)
    assert sampler_of[best["best_job"]] == best["best_sampler"]
    assert set(best["samplers"]) == {"grid", "random"}
    assert f"found by {best['best_sampler']}" in first.stdout
    with Image.open(sweep / "best_so_far.png") as image:
        assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 150
        image.load()
    assert "study/best_so_far" in image_tags(sweep / "study")
    assert not (sweep / "optimization_history.png").exists()  # one picture for the race
    assert "![best_so_far](best_so_far.png)" in (sweep / "summary.md").read_text()

    finished = {job: (run / "metrics.json").stat().st_mtime_ns for job, run in runs.items()}
    again = multirun(sweep, *RACE)  # the same command: each study resumes, complete
    assert (again.stdout + again.stderr).count("2 trials done, 0 to go") == 2
    assert sorted(run_folders(sweep)) == [0, 1, 2, 3]
    assert {job: (r / "metrics.json").stat().st_mtime_ns for job, r in runs.items()} == finished
    assert len(json.loads((sweep / "trials.json").read_text())) == 4


def test_an_unknown_sampler_in_a_race_stops_the_sweep_before_any_trial(tmp_path, multirun):
    sweep = tmp_path / "unknown"
    proc = multirun(
        sweep,
        "hydra/sweeper=optuna4",
        "hydra.sweeper.compare_samplers=[grid,tpee]",
        "optimizer.lr=choice(1e-2,1e-3)",
        expect=2,
    )
    assert proc.stderr.strip().splitlines() == [
        "error: hydra.sweeper.compare_samplers=[grid,tpee] names tpee, not a sampler preset: "
        "list the presets to compare, each once, from tpe, random, grid, cmaes (e.g. "
        "hydra.sweeper.compare_samplers=[grid,random,tpe]), or set it to null for one study."
    ]
    assert not (sweep / "optuna.journal").exists() and not list(sweep.glob("0_*"))


def test_trials_find_their_runs_by_folder_or_job_not_by_trial_number(tmp_path):
    """In a race, trial numbers repeat across the studies; a moved sweep keeps its job numbers."""
    run = RunRecord(name="1", folder=tmp_path / "1_x", metric="val/loss", mode="min", number=1)
    trials = [
        {"number": 0, "job": 0, "sampler": "grid", "state": "FAIL", "error": "bad", "folder": ""},
        {"number": 0, "job": 1, "sampler": "tpe", "state": "PRUNED", "folder": "/moved/1_x"},
    ]
    records = with_trials([run], trials)
    assert [(r.name, r.state) for r in records] == [("1", "pruned"), ("0", "failed")]
    assert records[1].settings == {"search.sampler": "grid"} and records[1].error == "bad"


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_preset_stops_a_clearly_worse_trial_except_none(name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    conf = {**PRUNERS[name], **({"n_startup_trials": 3} if name == "median" else {})}
    study = optuna.create_study(pruner=instantiate(make_pruner(conf)), direction="minimize")

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


def test_a_trial_in_another_process_reports_and_is_pruned_through_its_study(tmp_path):
    """What a job does with search.storage, search.study and search.trial: no Trial object."""
    journal = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(journal))
    study.set_user_attr("pruner", {**PRUNERS["median"], "n_startup_trials": 1})
    space = {"x": FloatDistribution(0, 1)}
    first = study.ask(space)
    for step in range(3):
        first.report(1.0, step)
    study.tell(first, 1.0)
    good, bad = (SweepTrial(journal, "s", study.ask(space).number) for _ in range(2))
    # Step 0 is the median preset's warm-up; at step 1 only the far worse trial is pruned.
    assert [good.report(0.5, step) for step in (0, 1)] == [False, False]
    assert [bad.report(5.0, step) for step in (0, 1)] == [False, True]
    assert study.trials[bad.number].intermediate_values == {0: 5.0, 1: 5.0} == bad.reported()


@pytest.mark.parametrize(
    "value", ["/tmp/a b,c/x.journal", "C:\\runs\\", "it's", "sqlite:////tmp/x.db"]
)
def test_storage_paths_survive_the_override_parser(value):
    parsed = OverridesParser.create().parse_override(f"search.storage={quoted(value)}").value()
    assert parsed == value


def test_reproduce_command_quotes_and_drops_study_keys():
    command = reproduce_command(
        ["model.hidden_dims=[32, 16]", "optimizer.lr=0.01", "search.trial=3"],
        "python -m runner.train",
    )
    assert command == "python -m runner.train 'model.hidden_dims=[32, 16]' optimizer.lr=0.01"


def scalars(log_dir: Path, tag: str) -> list[float]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


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
