"""curves.png: the optimised metric and the loss per epoch of every run, on shared axes; one colour
per run, validation solid, training dashed, each run labelled by what sets it apart."""

from __future__ import annotations

from pathlib import Path

from runner.reports.records import Comparison

LABELLED = 10  # runs drawn in colour and named in the legend, best first


def write_curves(comparison: Comparison, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    metric = comparison.metric
    name = metric.split("/", 1)[-1]
    panels = [metric] if name == "loss" else [metric, "val/loss"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    seen: dict[str, list[float]] = {panel: [] for panel in panels}
    for i, record in enumerate(comparison.records):
        epochs = range(1, len(record.history) + 1)
        # Past the best ten (records are ranked), runs are thin grey lines without a label.
        shown = i < LABELLED
        colour = colours[i % len(colours)] if shown else "0.75"
        label = comparison.label(record) if shown else None
        for ax, panel in zip(axes[0], panels):
            val = [e.get(panel) for e in record.history]
            train = [e.get(f"train/{panel.split('/', 1)[-1]}") for e in record.history]
            seen[panel] += [v for v in val + train if v is not None]
            if any(v is not None for v in val):
                ax.plot(epochs, _nan(val), color=colour, marker="." if shown else None, label=label)
                drawn = True
            if any(v is not None for v in train):
                ax.plot(
                    epochs, _nan(train), color=colour, linestyle="--", marker="." if shown else None
                )
    for ax, panel in zip(axes[0], panels):
        train = f"train/{panel.split('/', 1)[-1]}"
        ax.set_title(f"{panel} (solid), {train} (dashed)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel.split("/", 1)[-1])
        if _spans_decades(seen[panel]):  # runs of different families, losses of different scales
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if drawn:
        axes[0][-1].legend(fontsize="small", loc="best")
    else:
        axes[0][0].text(0.5, 0.5, "no run has a per-epoch history yet", ha="center")
    title = f"{len(comparison.records)} runs, {comparison.mode} {metric}"
    others = len(comparison.records) - LABELLED
    if others > 0:
        title += f": the best {LABELLED} named, the other {others} in grey"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def _spans_decades(values: list[float]) -> bool:
    """Positive values whose largest is over 100 times the smallest."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    return bool(finite) and min(finite) > 0 and max(finite) > 100 * min(finite)
