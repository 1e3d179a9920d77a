"""logger.layer_stats: each layer's activation and gradient scale in TensorBoard at the first step
and every epoch, the first step's figures in metrics.json, and figures that tell inits apart."""

import json
import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runner.models import MLP
from runner.train import run
from runner.training.layer_stats import LayerStats
from runner.training.step import OptimizerStep

INIT_FIGURES = {
    "init/activation_std_first",
    "init/activation_std_last",
    "init/gradient_std_first",
    "init/gradient_std_last",
}
DEEP = "model.hidden_dims=[64,64,64,64,64,64,64,64]"


def test_every_linear_layer_is_logged_at_the_first_step_and_each_epoch(config, tmp_path):
    run(
        config(
            "model=mlp",
            "model.hidden_dims=[16,16]",
            "logger.layer_stats=true",
            "logger.log_images=false",
            "trainer.limit_train_batches=3",
        )
    )
    out = tmp_path / "run"
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["train_steps"] == 6  # two epochs of three steps
    events = EventAccumulator(str(out), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    for layer in ("body.0", "body.2", "head"):  # every Linear, by its module path
        for kind in ("activation_std", "gradient_std"):
            values = events.Scalars(f"layers/{kind}/{layer}")
            assert [v.step for v in values] == [1, 4]
            assert all(math.isfinite(v.value) and v.value > 0 for v in values)
        assert f"layers/activation/{layer}" in events.Tags()["histograms"]
    figures = {k: v for k, v in summary["metrics"].items() if k.startswith("init/")}
    assert set(figures) == INIT_FIGURES
    first = events.Scalars("layers/activation_std/body.0")[0].value
    assert figures["init/activation_std_first"] == first
    last_hidden = events.Scalars("layers/gradient_std/body.2")[0].value
    assert figures["init/gradient_std_last"] == last_hidden


def test_off_by_default_and_nothing_recorded(config, tmp_path):
    metrics = run(
        config(
            "model=mlp",
            "model.hidden_dims=[16]",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        )
    )
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    events.Reload()
    assert not [t for t in events.Tags()["scalars"] if t.startswith("layers/")]
    assert not [k for k in metrics if k.startswith("init/")]


def test_pytorch_init_starves_a_deep_tanh_net_where_xavier_keeps_its_scale(config, tmp_path):
    # PyTorch's default draws weights with std 1/sqrt(3 fan_in): each tanh layer shrinks the
    # signal by about sqrt(3), down to the floor its biases (drawn alike, Xavier's are zero) keep;
    # the gradients reaching the first layer shrink as much on the way back.
    figures = {}
    for init in ("default", "xavier"):
        metrics = run(
            config(
                "model=mlp",
                DEEP,
                "model.activation=tanh",
                f"model.init={init}",
                "logger.layer_stats=true",
                "logger=none",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=1",
                run_dir=tmp_path / init,
            )
        )
        figures[init] = {k: v for k, v in metrics.items() if k.startswith("init/")}
    default, xavier = figures["default"], figures["xavier"]
    assert set(default) == INIT_FIGURES  # no TensorBoard, still in the final metrics
    assert default["init/activation_std_last"] < 0.3 * default["init/activation_std_first"]
    assert default["init/activation_std_last"] < 0.5 * xavier["init/activation_std_last"]
    assert default["init/gradient_std_first"] < 0.1 * xavier["init/gradient_std_first"]


def first_step(model: MLP, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The init/* figures of one SGD step on (x, y)."""
    optimizers = {"model": torch.optim.SGD(model.parameters(), lr=0.1)}
    step = OptimizerStep(torch.device("cpu"))
    stats = LayerStats(None)
    with stats.record(model, step, 1):
        model.training_step((x, y), optimizers, step)
    return stats.first_step


def test_tiny_weights_vanish_in_a_deep_tanh_net():
    # W = 0.01 * randn (the classic "small random numbers"): each layer multiplies the scale by
    # 0.01 * sqrt(64) = 0.08, so the eighth hidden layer sees ~1e-8 of the first's.
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    figures = {}
    for init in ("tiny", "xavier"):
        torch.manual_seed(1)
        model = MLP((1, 8, 8), 10, hidden_dims=(64,) * 8, activation="tanh", init="xavier")
        if init == "tiny":
            for layer in model.modules():
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.normal_(layer.weight, std=0.01)
        figures[init] = first_step(model, x, y)
    tiny, xavier = figures["tiny"], figures["xavier"]
    assert tiny["init/activation_std_last"] < 1e-4 * xavier["init/activation_std_last"]
    assert tiny["init/activation_std_first"] > 0.05 * xavier["init/activation_std_first"]
    assert tiny["init/gradient_std_first"] < 1e-4 * xavier["init/gradient_std_first"]


def test_gradients_are_read_unscaled_under_16_bit_mixed_precision():
    torch.manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    figures = {}
    for precision in ("32", "16-mixed"):
        torch.manual_seed(1)
        model = MLP((1, 8, 8), 10, hidden_dims=(32, 32))
        optimizers = {"model": torch.optim.SGD(model.parameters(), lr=0.1)}
        # grad_clip: the gradients are unscaled once, for the statistics and the clipping both
        step = OptimizerStep(torch.device("cpu"), precision, grad_clip=1.0)
        stats = LayerStats(None)
        with stats.record(model, step, 1):
            model.training_step((x, y), optimizers, step)
        assert step.on_gradients is None and not model.head._forward_hooks  # all removed
        figures[precision] = stats.first_step
    for name, value in figures["32"].items():
        assert abs(figures["16-mixed"][name] - value) < 0.05 * value, name
