"""Checkpoints, resume, divergence, early stopping and schedulers."""

import json
from pathlib import Path

import pytest
import torch

from runner.errors import RunnerError, TrainingDiverged
from runner.models.autoencoder import Autoencoder
from runner.train import run
from runner.training.checkpoint import load_checkpoint, save_checkpoint

DETERMINISTIC = (
    "trainer.deterministic=true",
    "trainer.batch_size=32",
    "model=deep_ae",
    "model.channels=[8,16]",
)


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_metrics(config, tmp_path):
    # Dropout and augmentation make the run consume every random stream we checkpoint.
    extra = (
        *DETERMINISTIC,
        "regularization.dropout=0.1",
        "regularization.augmentation.rotation=10",
    )
    full = run(config(*extra, "trainer.max_epochs=4", run_dir=tmp_path / "full"))

    resumed_dir = tmp_path / "resumed"
    run(config(*extra, "trainer.max_epochs=2", run_dir=resumed_dir))  # "killed" after epoch 2
    resumed = run(
        config(*extra, "trainer.max_epochs=4", "trainer.resume=true", run_dir=resumed_dir)
    )

    assert resumed == full
    state = load_checkpoint(resumed_dir)
    assert state["epoch"] == 4 and len(state["history"]) == 4


def test_ckpt_path_continues_from_another_run_folder(config, tmp_path):
    first = tmp_path / "first"
    run(config(*DETERMINISTIC, "trainer.max_epochs=1", run_dir=first))
    run(
        config(
            *DETERMINISTIC,
            "trainer.max_epochs=2",
            f"ckpt_path={first}",
            run_dir=tmp_path / "second",
        )
    )
    state = load_checkpoint(tmp_path / "second" / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["history"][0] == load_checkpoint(first)["history"][0]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}}, path)

    def crash(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a file")
        raise KeyboardInterrupt  # killed in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_corrupt_or_missing_checkpoints_are_clear_errors(config, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunnerError, match="is corrupt or not a checkpoint of this project"):
        run(config(f"ckpt_path={bad}"))
    with pytest.raises(RunnerError, match="does not exist"):
        run(config(f"ckpt_path={tmp_path / 'nowhere.pt'}"))


def test_checkpoint_of_another_model_does_not_load_silently(config, tmp_path):
    run(config("model=deep_ae", "trainer.max_epochs=1", run_dir=tmp_path / "conv"))
    with pytest.raises(RunnerError, match="does not fit this model"):
        run(config("model=ae", f"ckpt_path={tmp_path / 'conv'}", run_dir=tmp_path / "mlp"))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    config, tmp_path, monkeypatch
):
    original = Autoencoder.compute_losses
    calls = {"n": 0}

    def poisoned(self, x, y):
        losses = original(self, x, y)
        calls["n"] += 1
        if self.training and calls["n"] > 60:  # well into epoch 2
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(Autoencoder, "compute_losses", poisoned)
    with pytest.raises(
        TrainingDiverged, match=r"train/loss became nan in epoch 2 .* last good checkpoint"
    ):
        run(config("trainer.max_epochs=3", "trainer.batch_size=32", "trainer.log_every_n_steps=5"))
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_early_stopping_ends_the_run_and_records_it(config, tmp_path):
    run(
        config(
            "trainer.max_epochs=10",
            "regularization.early_stopping.patience=0",
            "regularization.early_stopping.min_delta=10",
        )
    )
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["stopped_early"] is True and summary["epochs_trained"] == 2


@pytest.mark.parametrize("scheduler", ["step", "cosine", "onecycle", "plateau"])
def test_schedulers_change_the_learning_rate_and_survive_a_checkpoint(config, tmp_path, scheduler):
    extra = ["scheduler.scheduler.step_size=1"] if scheduler == "step" else []
    extra += (
        ["scheduler.scheduler.patience=0", "+scheduler.scheduler.threshold=10"]
        if scheduler == "plateau"
        else []
    )
    run(config(f"scheduler={scheduler}", "trainer.max_epochs=3", *extra))
    state = load_checkpoint(tmp_path / "run")  # weights-only load of the scheduler state
    rates = [epoch["train/lr"] for epoch in state["history"]]
    assert len(set(rates)) > 1, rates
    assert "model" in state["schedulers"]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_every_optimizer_trains(config, optimizer):
    """Far beyond an untrained classifier: chance accuracy is 0.1, its loss ln(10) = 2.30."""
    cnn = ("model=cnn", "model.channels=[8,16]", "trainer.batch_size=32")
    metrics = run(config(f"optimizer={optimizer}", *cnn, "trainer.max_epochs=2"))
    assert metrics["test/acc"] > 0.6 and metrics["test/loss"] < 1.5


def test_regularization_knobs_reach_the_model_and_optimizer(config, tmp_path):
    strong = ("regularization=strong", "regularization.normalization=batch")
    run(config(*strong, "trainer.max_epochs=2", "regularization.weight_decay=0.01"))
    state = load_checkpoint(tmp_path / "run")
    assert state["optimizers"]["model"]["param_groups"][0]["weight_decay"] == 0.01
    assert any("running_mean" in k for k in state["model"])  # batch norm from regularization


@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "onecycle", "plateau"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop", "gan_adam"])
def test_every_scheduler_builds_and_steps_with_every_optimizer_preset(config, optimizer, scheduler):
    from runner.build import build_model, build_optimizers, build_schedules

    model_choice = "model=gan" if optimizer == "gan_adam" else "model=ae"
    cfg = config(model_choice, f"optimizer={optimizer}", f"scheduler={scheduler}")
    optimizers = build_optimizers(cfg, build_model(cfg))
    schedules = build_schedules(cfg, optimizers, steps_per_epoch=10)
    assert set(schedules) == (set() if scheduler == "none" else set(optimizers))
    for name, schedule in schedules.items():
        before = optimizers[name].param_groups[0]["lr"]
        optimizers[name].step()
        step = schedule.scheduler.step
        step(1.0) if schedule.monitor else step()
        assert optimizers[name].param_groups[0]["lr"] > 0
        if scheduler == "onecycle":  # the peak is the optimiser's own configured rate
            assert schedule.scheduler.optimizer.param_groups[0]["max_lr"] == pytest.approx(
                before * 25.0  # OneCycle starts at max_lr / div_factor (25)
            )


def test_onecycle_keeps_a_fine_tuned_backbones_lower_rate(config, tmp_path):
    from runner.build import build_model, build_optimizers, build_schedules

    backbone = ("model.backbone=mobilenet_v3_small", "model.pretrained=none", "model.input_size=32")
    cfg = config("model=transfer", *backbone, "scheduler=onecycle", "model.backbone_lr_scale=0.1")
    optimizer = build_optimizers(cfg, build_model(cfg))["model"]
    build_schedules(cfg, {"model": optimizer}, steps_per_epoch=10)
    head, body = (group["max_lr"] for group in optimizer.param_groups)
    assert body == pytest.approx(0.1 * head) and head == pytest.approx(cfg.optimizer.lr)
