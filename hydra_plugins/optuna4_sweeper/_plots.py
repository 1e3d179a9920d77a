"""Pictures of a finished study, with Optuna's own plots: the optimisation history and the
hyperparameter importances, as PNG files in the sweep folder and as images in a TensorBoard run
`study/` there (so `tensorboard --logdir <sweep folder>` shows them beside the trials).

A race of samplers gets one picture instead, best_so_far.png: the best value so far against the
trial number, one line per sampler. Optuna's plot_optimization_history takes several studies, but
draws each study's trials opaque and its best line faint in another colour; here each sampler has
one colour, its trials faint, its best line solid.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping
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


def write_best_so_far(
    studies: Mapping[str, optuna.Study], sweep_dir: Path, metric: str
) -> list[Path]:
    """best_so_far.png (and in TensorBoard): per sampler, its completed trials' values (faint) and
    the best of them so far (by the study's direction); [] before a trial completes."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    for i, (name, study) in enumerate(studies.items()):
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            continue
        numbers = [t.number for t in complete]
        values = [t.value for t in complete]
        better = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
        best = list(itertools.accumulate(values, better))
        colour = colours[i % len(colours)]
        # Seeded alike, samplers often share their first trials (TPE starts with random ones):
        # each line is thinner than the one before, so a line on top leaves those below visible.
        width = 1.5 + len(studies) - 1 - i
        ax.scatter(numbers, values, color=colour, alpha=0.3, s=18, linewidths=0)
        label = f"{name} ({best[-1]:.4g})"
        ax.step(numbers, best, where="post", color=colour, linewidth=width, label=label)
        drawn = True
    if not drawn:
        plt.close(fig)
        return []
    minimize = next(iter(studies.values())).direction == optuna.study.StudyDirection.MINIMIZE
    ax.set_title(
        f"Best {metric} so far ({'lower' if minimize else 'higher'} is better); points: each trial"
    )
    ax.set_xlabel("trial number (within each sampler's study)")
    ax.set_ylabel(metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    shown = [t.value for s in studies.values() for t in s.get_trials(deepcopy=False) if t.value]
    if min(shown) > 0 and max(shown) > 10 * min(shown):  # a few bad trials would flatten the rest
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(title="sampler (best)", fontsize="small")
    fig.tight_layout()
    path = sweep_dir / "best_so_far.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    _to_tensorboard([path], sweep_dir / "study")
    return [path]


def _to_tensorboard(pictures: list[Path], log_dir: Path) -> None:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(log_dir)) as writer:
        for path in pictures:
            image = np.asarray(Image.open(path).convert("RGB"))
            writer.add_image(f"study/{path.stem}", image, 0, dataformats="HWC")
