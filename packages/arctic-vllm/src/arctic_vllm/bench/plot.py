"""Speed-ups against no speculation as a bar chart (PNG), one group of bars per workload."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._extra import require
from .runner import Row


def plot_speedups(rows: Sequence[Row], path: Path, title: str) -> None:
    """Write ``rows``' speed-ups (each method's tokens/s over no speculation's, same run) to
    ``path``; the bars follow the rows' order of workloads and methods."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")  # no display: write the file only
    plt = require("matplotlib.pyplot")

    workloads = list(dict.fromkeys(r.workload for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    by = {(r.workload, r.method): r for r in rows}
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(workloads) * len(methods) / 4, 4.5))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs = [i + j * width for i in range(len(workloads))]
        ax.bar(xs, [by[w, m].speedup for w in workloads], width, label=m)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))], workloads)
    ax.set_ylabel("speed-up vs no speculation (same run)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
