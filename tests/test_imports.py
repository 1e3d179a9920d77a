"""Import what a run uses when it uses it: a default run does not pay for the sweeper, the metric
library or the plotting code."""

from __future__ import annotations

import json
import subprocess
import sys

# Imported only by the runs that use them: Optuna sweeps, scored samples, the study's pictures.
ON_DEMAND = (
    "optuna",
    "torchmetrics",
    "matplotlib",
    "aeon",
    "sklearn",  # bundled digits, stratified splits and folds
    "torchvision",  # its datasets, pictures and model zoo (which pulls in torch._dynamo)
)


def test_importing_the_runner_leaves_the_heavy_optional_modules_alone():
    code = (
        "import json, sys, runner.train, runner.eval, runner.sample, runner.predict; "
        f"print(json.dumps([m for m in {ON_DEMAND!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_run_on_cached_mnist_tensors_does_not_import_torchvision(tiny_mnist, tmp_path):
    from runner.build import build_data
    from runner.config import compose_run_config

    overrides = ["dataset=mnist", f"dataset.root={tiny_mnist}"]
    build_data(compose_run_config(tmp_path / "first", overrides))  # decodes and caches
    code = (
        "import json, sys; from runner.build import build_data; "
        "from runner.config import compose_run_config; "
        f"data = build_data(compose_run_config({str(tmp_path / 'again')!r}, {overrides!r})); "
        "print(json.dumps([data.class_names[0], 'torchvision' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first_class, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert first_class == "0 - zero" and not imported  # torchvision's MNIST class names, kept


def test_a_whole_classifier_run_imports_neither_torchvision_nor_torchmetrics(tiny_mnist, tmp_path):
    """Training, checkpoints, TensorBoard (confusion matrix included) and the test pass: none
    needs the 3 s that torchmetrics' import costs (it pulls in torchvision's model zoo)."""
    from runner.build import build_data
    from runner.config import compose_run_config

    dataset = ["dataset=mnist", f"dataset.root={tiny_mnist}"]
    build_data(compose_run_config(tmp_path / "first", dataset))  # decodes (torchvision), caches
    argv = [
        "runner.train",
        "model=cnn",
        "model.channels=[4]",
        *dataset,
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        "    runpy.run_module('runner.train', run_name='__main__')\n"
        "finally:\n"
        "    print(json.dumps([m for m in ('torchvision', 'torchmetrics') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    events = list((tmp_path / "run").rglob("events.out.tfevents*"))
    assert events and (tmp_path / "run" / "metrics.json").exists()


def test_the_first_step_waits_for_neither_tensorboard_nor_start_up_collections(
    tiny_mnist, tmp_path
):
    """No garbage collection runs between the entry point and the start of training; at the first
    optimiser step the collector is on again and TensorBoard is not imported yet (its writer
    opens at the first write); the run still writes its events, and the collector is on when the
    entry point returns."""
    argv = [
        "runner.train",
        "model=cnn",
        "model.channels=[4]",
        "dataset=mnist",
        f"dataset.root={tiny_mnist}",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    code = (
        "import gc, json, sys\n"
        "from runner.training.loop import Trainer\n"
        "from runner.training.step import OptimizerStep\n"
        "seen, step, fit, collections = [], OptimizerStep.__call__, Trainer.fit, []\n"
        "def fit_start(self, *a, **k):\n"
        "    seen.append(len(collections))\n"
        "    return fit(self, *a, **k)\n"
        "def first(self, *a, **k):\n"
        "    if len(seen) == 1:\n"
        "        seen.extend([gc.isenabled(), 'torch.utils.tensorboard' in sys.modules])\n"
        "    return step(self, *a, **k)\n"
        "OptimizerStep.__call__, Trainer.fit = first, fit_start\n"
        "from runner.train import main\n"
        f"sys.argv = {argv!r}\n"
        "gc.callbacks.append(lambda phase, info: collections.append(phase))\n"
        "main()\n"
        "print(json.dumps(seen + [gc.isenabled()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, True, False, True]
    assert list((tmp_path / "run").rglob("events.out.tfevents*"))
