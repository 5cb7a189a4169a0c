"""Pictures of a sensitivity analysis: Distiller's line plot, and a weights × sparsity heatmap of the top-1 drop.

Distiller's ``sensitivity.png`` (reference §4.3) draws one line per weight, x = sparsity, y = top-5, with
its legend inside the axes; with twenty weights that legend hides the lines, so here it sits below the
plot. The heatmap answers the question users actually ask ("which layers can I prune, and how far?")
at a glance: one row per weight, one column per sparsity, the drop in points printed in each cell.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from edgeprune.analysis.plotting import save_figure

Results = dict[str, dict[float, dict[str, float]]]
_STYLES = ("-", "--", ":", "-.")


def plot_sensitivity(results: Results, path: str | Path, metric: str = "top5") -> Path:
    """One line per weight: ``metric`` against sparsity (``top5`` is Distiller's ``sensitivity.png``)."""
    columns = 3 if len(results) > 16 else 2
    legend_rows = math.ceil(len(results) / columns)
    fig = Figure(figsize=(9, 5 + 0.19 * legend_rows))
    ax = fig.add_subplot()
    palette = colormaps["tab20"]
    for i, (name, points) in enumerate(results.items()):
        ax.plot(list(points), [m[metric] for m in points.values()], label=name, color=palette(i % 20),
                linestyle=_STYLES[(i // 20) % len(_STYLES)], marker=".", markersize=4, linewidth=1.2)
    ax.set_xlabel("sparsity")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"Pruning Sensitivity ({metric}, one weight pruned at a time, no retraining)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=columns, fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_sensitivity_heatmap(results: Results, baseline: dict[str, float], path: str | Path) -> Path:
    """Top-1 drop (points below the dense model's top-1) per weight and sparsity; red loses, blue gains."""
    names = list(results)
    sparsities = sorted({s for points in results.values() for s in points})
    drop = np.full((len(names), len(sparsities)), np.nan)
    for i, name in enumerate(names):
        for j, sparsity in enumerate(sparsities):
            if sparsity in results[name]:
                drop[i, j] = baseline["top1"] - results[name][sparsity]["top1"]
    limit = max(float(np.nanmax(np.abs(drop))), 0.5)
    fig = Figure(figsize=(max(6.0, 0.62 * len(sparsities) + 3.8), max(3.0, 0.3 * len(names) + 1.8)))
    ax = fig.add_subplot()
    image = ax.imshow(drop, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks(range(len(sparsities)), [f"{s:.2f}" for s in sparsities], fontsize=8,
                  rotation=45 if len(sparsities) > 12 else 0)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("weight (pruned alone)")
    ax.set_title(f"Top-1 drop in points, no retraining (dense top-1 {baseline['top1']:.2f} %)", fontsize=10)
    if drop.size <= 600:
        for (i, j), value in np.ndenumerate(drop):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(value) > 0.6 * limit else "black")
    fig.colorbar(image, ax=ax, label="top-1 drop (points)", fraction=0.04, pad=0.02)
    return save_figure(fig, path)
