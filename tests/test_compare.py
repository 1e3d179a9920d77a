"""Every sweep ends in a comparison (summary.csv, summary.md, curves.png in its folder), and
`runner.compare` writes the same for any run and sweep folders; read back as a user reads them."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import optuna
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from hydra_plugins.optuna4_sweeper._study import open_storage
from runner.reports.records import collect
from runner.training.tensorboard import custom_scalars_layout
from tests.fakes import OPTUNA_GRID

QUICK = ("trainer.max_epochs=1", "trainer.limit_train_batches=5")


def summary(folder: Path) -> list[dict[str, str]]:
    with open(folder / "summary.csv") as f:
        return list(csv.DictReader(f))


def metrics_json(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


def last_epoch(folder: str | Path) -> dict[str, float]:
    state = torch.load(Path(folder) / "checkpoints" / "last.pt", weights_only=True)
    return state["history"][-1]


def assert_report(folder: Path) -> None:
    """summary.md holds the table, curves.png is a picture."""
    markdown = (folder / "summary.md").read_text()
    assert "| run |" in markdown and "![curves](curves.png)" in markdown
    with Image.open(folder / "curves.png") as image:
        assert image.format == "PNG" and image.width > 400


def assert_matches_its_run(row: dict[str, str], metric: str = "val/loss") -> None:
    """A finished run's row holds what its metrics.json and checkpoint say."""
    saved = metrics_json(row["folder"])
    for name in (metric, "test/loss"):
        assert float(row[name]) == pytest.approx(saved["metrics"][name], rel=1e-9)
    assert float(row["wall_time_s"]) == pytest.approx(saved["wall_time_s"])
    assert float(row["best_epoch"]) == saved["best_epoch"]
    last = last_epoch(row["folder"])
    gap = last["val/loss"] - last["train/loss"]
    assert float(row["loss gap (val-train)"]) == pytest.approx(gap, rel=1e-9)
    assert float(row[f"final {metric}"]) == pytest.approx(last[metric], rel=1e-9)


@pytest.fixture
def compare_cli(monkeypatch, capsys):
    """`compare_cli(*args)` runs `python -m runner.compare args` in-process: (exit code, stdout,
    stderr)."""
    import runner.compare

    def _run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["runner.compare", *args])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        GlobalHydra.instance().clear()
        capsys.readouterr()
        code = 0
        try:
            runner.compare.main()
        except SystemExit as exc:
            code = exc.code
        finally:
            GlobalHydra.instance().clear()
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def test_a_grid_sweep_ends_in_a_comparison_and_tensorboard_names_what_differs(
    tmp_path, multirun, compare_cli
):
    sweep = tmp_path / "grid"
    # dropout 1.5 fails in the job: the basic sweeper then stops with the job's error, and the
    # comparison is written all the same.
    proc = multirun(
        sweep, *QUICK, "optimizer.lr=1e-2,1e-4", "regularization.dropout=0,1.5", expect=2
    )
    # Folders say what differs: the keys the command line holds constant are left out.
    names = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert names == [
        "0_optimizer.lr=0.01,regularization.dropout=0",
        "1_optimizer.lr=0.01,regularization.dropout=1.5",
        "2_optimizer.lr=0.0001,regularization.dropout=0",
        "3_optimizer.lr=0.0001,regularization.dropout=1.5",
    ]
    rows = summary(sweep)
    assert list(rows[0])[:3] == ["run", "optimizer.lr", "regularization.dropout"]
    assert [r["run"] for r in rows] == ["0", "2", "1", "3"]  # best first, failed runs last
    assert [r["state"] for r in rows] == ["finished", "finished", "failed", "failed"]
    assert float(rows[0]["val/loss"]) < float(rows[1]["val/loss"])
    for row in rows[:2]:
        assert_matches_its_run(row)
        assert row["folder"].endswith(
            f"{row['run']}_optimizer.lr={row['optimizer.lr']},regularization.dropout=0"
        )
    for row in rows[2:]:
        assert row["val/loss"] == "" and "regularization.dropout=1.5" in row["error"]
        assert not (Path(row["folder"]) / "metrics.json").exists()
    assert_report(sweep)
    assert f"Best run 0: val/loss={float(rows[0]['val/loss']):.6g}" in proc.stdout
    assert rows[0]["folder"] in proc.stdout

    # TensorBoard: each run's name says what differs, and its HParams columns lead with it.
    events = EventMultiplexer().AddRunsFromDirectory(str(sweep))
    events.Reload()
    assert sorted(events.Runs()) == [names[0], names[2]]  # the failed runs wrote no events
    for name in (names[0], names[2]):
        content = events.GetAccumulator(name).PluginTagToContent("hparams")
        data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
        columns = [h.name for h in data.experiment.hparam_infos]
        assert columns[:4] == ["optimizer.lr", "regularization.dropout", "model", "dataset"]

    # runner.compare on the sweep folder writes the same report.
    code, out, err = compare_cli(f"runs=[{sweep}]", f"out={tmp_path / 'again'}")
    assert code == 0, err
    assert summary(tmp_path / "again") == rows
    assert_report(tmp_path / "again")
    assert "Best run 0" in out


def test_an_optuna_sweep_ends_in_one_table_with_pruned_and_failed_trials(tmp_path, multirun):
    sweep = tmp_path / "optuna"
    # Grid over 2 x 2 points (this seed runs lr 1e-2 first): dropout 1.5 fails in the job, lr 1e-5
    # falls behind the finished trial at its first epoch and is pruned.
    proc = multirun(
        sweep,
        *QUICK,
        "logger=none",
        *OPTUNA_GRID,
    )
    rows = summary(sweep)
    by_point = {(float(r["optimizer.lr"]), float(r["regularization.dropout"])): r for r in rows}
    assert {p: r["state"] for p, r in by_point.items()} == {
        (1e-2, 0.0): "finished",
        (1e-5, 0.0): "pruned",
        (1e-2, 1.5): "failed",
        (1e-5, 1.5): "failed",
    }
    assert rows[0] is by_point[(1e-2, 0.0)] and rows[1] is by_point[(1e-5, 0.0)]
    assert_matches_its_run(rows[0])
    # The pruned trial: no metrics.json, its row holds the value it reached, as Optuna saw it.
    pruned = by_point[(1e-5, 0.0)]
    assert not (Path(pruned["folder"]) / "metrics.json").exists()
    study = optuna.load_study(
        study_name="train", storage=open_storage(str(sweep / "optuna.journal"))
    )
    reached = study.trials[int(pruned["run"])].intermediate_values
    assert float(pruned["val/loss"]) == pytest.approx(min(reached.values()))
    assert pruned["error"].startswith("pruned at step")
    for point in ((1e-2, 1.5), (1e-5, 1.5)):
        assert "regularization.dropout=1.5" in by_point[point]["error"]
    # Trial number = job number = the start of the folder's name; one table, not two.
    for row in rows:
        assert Path(row["folder"]).name.startswith(f"{row['run']}_optimizer.lr=")
    assert not (sweep / "trials.md").exists() and not (sweep / "trials.csv").exists()
    best = json.loads((sweep / "best.json").read_text())
    assert best["best_folder"] == rows[0]["folder"]
    assert_report(sweep)
    assert "Best run 0" in proc.stdout


@pytest.mark.slow  # four trainings, ~16 s on 2 cores
def test_a_cross_validation_sweep_compares_the_fold_means(tmp_path, multirun):
    sweep = tmp_path / "cv"
    multirun(sweep, *QUICK, "cv.folds=2", "optimizer.lr=1e-2,1e-4", "logger=none")
    rows = summary(sweep)
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.0001"]
    for row in rows:
        saved = metrics_json(row["folder"])["metrics"]
        assert float(row["val/loss"]) == pytest.approx(saved["val/loss"], rel=1e-9)
        assert float(row["cv/val/loss_mean"]) == pytest.approx(saved["cv/val/loss_mean"])
        assert float(row["cv/val/loss_std"]) == pytest.approx(saved["cv/val/loss_std"])
        folds = [last_epoch(Path(row["folder"]) / f"fold_{k}") for k in (0, 1)]
        mean = sum(f["val/loss"] for f in folds) / 2
        assert float(row["final val/loss"]) == pytest.approx(mean, rel=1e-9)
        assert row["state"] == "finished" and row["best_epoch"] == "1.0"
    assert_report(sweep)


def test_compare_two_runs_made_apart(tmp_path, monkeypatch, compare_cli):
    import runner.train

    runs = []
    for lr in ("1e-2", "1e-3"):
        folder = tmp_path / f"lr{lr}"
        argv = [
            "runner.train",
            *QUICK,
            f"optimizer.lr={lr}",
            "model.linear=none",  # the networks alone, so the learning rate shows
            "trainer.progress_bar=false",
            "logger=none",
            f"hydra.run.dir={folder}",
        ]
        monkeypatch.setattr(sys, "argv", argv)
        GlobalHydra.instance().clear()
        runner.train.main()
        GlobalHydra.instance().clear()
        assert json.loads((folder / "state.json").read_text())["state"] == "finished"
        runs.append(folder)
    out = tmp_path / "report"
    code, stdout, err = compare_cli(f"runs=[{runs[1]},{runs[0]}]", f"out={out}")
    assert code == 0, err
    rows = summary(out)
    assert list(rows[0])[:2] == ["run", "optimizer.lr"]  # all else is the same
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.001"]  # ranked, best first
    assert [r["run"] for r in rows] == ["lr1e-2", "lr1e-3"]
    for row in rows:
        assert_matches_its_run(row)
    assert_report(out)
    assert f"Best run folder: {runs[0]}" in stdout
    assert not (out / ".hydra").exists()  # the report's folder never looks like a run


def fake_run(folder: Path, metric: str = "val/loss", mode: str = "min", **metrics) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    config = f"optimized_metric: {metric}\noptimized_mode: {mode}\n"
    (folder / ".hydra" / "config.yaml").write_text(config)
    if metrics:
        (folder / "metrics.json").write_text(json.dumps({"metrics": metrics, "best_epoch": 1}))
    return folder


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda t: [t / "nothing_here"], "does not exist"),
        (lambda t: [(t / "a").mkdir() or t / "a"], "neither a run nor a sweep"),
        (lambda t: [], "Nothing to compare"),
        (
            lambda t: [
                (t / "empty").mkdir() or (t / "empty" / "multirun.yaml").touch() or t / "empty"
            ],
            "holds no runs yet",
        ),
        (
            lambda t: [
                fake_run(t / "ae", **{"val/loss": 0.1}),
                fake_run(t / "cnn", "val/acc", "max", **{"val/acc": 0.9}),
            ],
            "optimise different metrics",
        ),
        (lambda t: [fake_run(t / "0_optimizer.lr=0.01", **{"val/loss": 0.1})], "goes in quotes"),
    ],
    ids=["missing", "no-run", "no-folders", "empty-sweep", "different-tasks", "unquoted-name"],
)
def test_bad_input_exits_2_with_one_paragraph(tmp_path, compare_cli, make, needle):
    folders = make(tmp_path)
    out = tmp_path / "report"
    code, stdout, err = compare_cli(f"runs=[{','.join(map(str, folders))}]", f"out={out}")
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert "Traceback" not in err and stdout == ""
    assert not out.exists()  # nothing written


def test_a_run_folder_in_any_state_is_a_row(tmp_path):
    """Killed before metrics.json, a corrupt checkpoint, a state.json: rows, never a crash."""
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0_a", **{"val/loss": 0.5, "test/loss": 0.6})
    fake_run(sweep / "1_b")  # killed: no metrics.json, no state.json
    broken = fake_run(sweep / "2_c")
    (broken / "checkpoints").mkdir()
    (broken / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    (broken / "state.json").write_text(json.dumps({"state": "failed", "error": "OOM"}))
    comparison = collect([sweep])
    assert [(r.folder.name, r.state) for r in comparison.records] == [
        ("0_a", "finished"),
        ("1_b", "unfinished"),
        ("2_c", "failed"),
    ]
    assert comparison.best.folder.name == "0_a" and comparison.varying == []


def test_custom_scalars_put_per_epoch_curves_before_single_values_and_parts():
    names = ["train/loss", "val/loss", "test/loss", "train/lr", "test/majority_acc"]
    names += [f"test/acc_class/{c}" for c in range(3)]
    layout = custom_scalars_layout(names)
    assert list(layout) == ["metrics: train and val", "test: one value per run", "per class"]
    assert list(layout["metrics: train and val"]) == ["loss", "lr"]
    assert list(layout["test: one value per run"]) == ["majority_acc"]


def test_runs_that_differ_in_a_seed_are_also_summarised_over_seeds(tmp_path, multirun):
    sweep = tmp_path / "seeds"
    multirun(
        sweep,
        *QUICK,
        "optimizer.lr=1e-2,1e-4",
        "trainer.seed=0,1",
    )
    with open(sweep / "summary_over_seeds.csv") as f:
        grouped = {r["optimizer.lr"]: r for r in csv.DictReader(f)}
    assert set(grouped) == {"0.01", "0.0001"}
    for lr, row in grouped.items():
        runs = [r for r in summary(sweep) if r["optimizer.lr"] == lr]
        assert row["runs"] == "2" and len(runs) == 2
        losses = [metrics_json(r["folder"])["metrics"]["val/loss"] for r in runs]
        tests = [metrics_json(r["folder"])["metrics"]["test/loss"] for r in runs]
        mean = sum(losses) / 2
        assert float(row["val/loss mean"]) == pytest.approx(mean)
        assert float(row["val/loss std"]) == pytest.approx(abs(losses[0] - losses[1]) / 2)
        errors = [a - t for a, t in zip(losses, tests)]
        assert float(row["val/loss - test/loss mean"]) == pytest.approx(sum(errors) / 2)
    markdown = (sweep / "summary.md").read_text()
    assert "## Over seeds (trainer.seed)" in markdown
    assert f"{float(grouped['0.01']['val/loss mean']):.4g} ± " in markdown
