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
