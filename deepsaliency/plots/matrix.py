"""The transfer matrix: attacked method × evaluated method, one similarity per cell, as an annotated heatmap."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import DeepSaliencyError
from .style import colorbar, method_label, plot_style


@plot_style()
def plot_transfer_matrix(
    matrix: pd.DataFrame,
    *,
    title: str = "Transfer matrix",
    value_label: str = "Pearson r",
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = 1.0,
) -> Figure:
    """Heatmap of attacked method (rows) × evaluated method (columns), each cell's value written in it.

    Cells where the row and column name the same method (the attack against the method itself) are outlined;
    missing values are grey with "n/a".

    Args:
        matrix: rows = attack, columns = explanation method, values = a similarity averaged over images
            (e.g. Pearson r in [-1, 1]).
        title, value_label: figure title and colour-bar label.
        cmap, vmin, vmax: colour scale (``vmin`` None → min(0, smallest value); ``vmax`` None → largest value).

    Returns:
        The figure (the heatmap axes and a colour bar).

    Raises:
        DeepSaliencyError: the matrix is empty.
    """
    if matrix.empty:
        raise DeepSaliencyError("plot_transfer_matrix: the matrix is empty")
    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else min(0.0, float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    nr, nc = values.shape
    fig = Figure(figsize=(0.95 * nc + 3.2, 0.6 * nr + 2.4), layout="constrained")
    ax = fig.subplots()
    cm = matplotlib.colormaps[cmap].with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cm, vmin=lo, vmax=hi, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if not np.isfinite(v):
            ax.text(j, i, "n/a", ha="center", va="center", color="dimgray")
            continue
        rgba = cm((v - lo) / (hi - lo) if hi > lo else 0.5)
        light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.5  # dark text on light cells
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="black" if light else "white")
    for i, a in enumerate(matrix.index):
        if a in matrix.columns:
            j = list(matrix.columns).index(a)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#00b0f0", lw=2.2))
    ax.set_xticks(range(nc), [method_label(c) for c in matrix.columns], rotation=35, ha="right")
    ax.set_yticks(range(nr), [method_label(r) for r in matrix.index])
    ax.set_xlabel("evaluated method (its map on x_adv)")
    ax.set_ylabel("attack (method it was optimised against)")
    colorbar(fig, im, ax, value_label, fraction=0.05, pad=0.02)
    # the figure's only title sits on its one axes, as large as the other figures' titles
    ax.set_title(title, fontsize=matplotlib.rcParams["figure.titlesize"])
    return fig
