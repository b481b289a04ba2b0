"""One PNG per workload: each figure's median per side as a bar, min–max as the error bar.

matplotlib is the optional ``bench`` extra (``pip install -e '.[bench]'``); without it the bench
still measures and writes its JSON, and says that it drew nothing.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from bench.results import WorkloadResult

__all__ = ["plot_workload", "plotting_unavailable"]

logger = logging.getLogger(__name__)

_COLOURS = {"coda": "#2a7ab9", "coda-pinned": "#7fb3df", "coda-runs": "#1b4f7a",
            "celery-redis": "#c94a3b", "celery-rabbitmq": "#e8963a"}


def plotting_unavailable() -> str | None:
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plots drawn"
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def plot_workload(result: WorkloadResult, directory: Path) -> Path | None:
    """Draw ``result`` to ``directory/<name>.png``; None when it has no figures."""
    if not result.figures:
        return None
    plt = _pyplot()
    keys = list(dict.fromkeys(f.figure.key for f in result.figures if f.figure.compare))
    columns = min(3, len(keys))
    rows_of_plots = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows_of_plots, columns, figsize=(3.4 * columns + 1, 3.4 * rows_of_plots + 0.4), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        rows = [f for f in result.figures if f.figure.key == key]
        medians = [f.summary.median for f in rows]
        errors = [[f.summary.median - f.summary.min for f in rows], [f.summary.max - f.summary.median for f in rows]]
        ax.bar(range(len(rows)), medians, yerr=errors, capsize=4,
               color=[_COLOURS.get(f.side, "#888888") for f in rows])
        ax.set_xticks(range(len(rows)), [f.side for f in rows], rotation=20, ha="right", fontsize=8)
        figure = rows[0].figure
        better = "higher is better" if figure.higher_is_better else "lower is better"
        ax.set_title(f"{figure.label}\n({figure.unit or 'count'}, {better})", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    verdicts = [f"{c.label}: {c.ratio.median:.3g} ({c.target.bound_text}, {c.verdict})"
                for c in result.comparisons if c.target is not None]
    fig.suptitle(f"{result.number}. {result.title}", fontsize=10)
    if verdicts:
        fig.text(0.01, 0.01, "\n".join(verdicts), fontsize=7, va="bottom")
    footer = 0.035 * (len(verdicts) + 1) / rows_of_plots if verdicts else 0
    fig.tight_layout(rect=(0, footer, 1, 1))
    path = directory / f"{result.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
