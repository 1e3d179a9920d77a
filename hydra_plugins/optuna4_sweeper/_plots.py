"""Pictures of a finished study, with Optuna's own plots: the optimisation history and the
hyperparameter importances, as PNG files in the sweep folder and as images in a TensorBoard run
`study/` there (so `tensorboard --logdir <sweep folder>` shows them beside the trials)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def write_study_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """The PNG files written (none before a trial completes; importances need two trials and a
    parameter that varies)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    wanted = {"optimization_history": plots.plot_optimization_history}
    varied = {k for t in complete for k in t.params if t.params[k] != complete[0].params.get(k)}
    if len(complete) >= 2 and varied:
        wanted["param_importances"] = plots.plot_param_importances
    written = []
    for name, plot in wanted.items():
        path = sweep_dir / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
            axes.figure.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
            written.append(path)
        except (ValueError, RuntimeError) as exc:  # e.g. importances of a degenerate study
            log.warning("No %s picture: %s", name, exc)
    _to_tensorboard(written, sweep_dir / "study")
    return written


def _to_tensorboard(pictures: list[Path], log_dir: Path) -> None:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(log_dir)) as writer:
        for path in pictures:
            image = np.asarray(Image.open(path).convert("RGB"))
            writer.add_image(f"study/{path.stem}", image, 0, dataformats="HWC")
