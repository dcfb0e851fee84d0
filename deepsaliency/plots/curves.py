"""Line figures: deletion/insertion curves, attack optimisation curves and the manipulability curve.

Deletion/insertion: Petsiuk et al. (2018), "RISE: Randomized Input Sampling for Explanation of Black-box
Models", https://arxiv.org/abs/1806.07421. Manipulability (similarity to the target map against the
attack's L∞ budget): the budget axis of Dombrowski et al. (2019), https://arxiv.org/abs/1906.07983.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from ..errors import DeepSaliencyError
from .style import method_label, method_style, plot_style, row_label


def _need_columns(table: pd.DataFrame, need: set[str], what: str) -> None:
    if not need <= set(table.columns):
        raise DeepSaliencyError(f"{what}: columns {sorted(table.columns)} lack {sorted(need - set(table.columns))}")
    if table.empty:
        raise DeepSaliencyError(f"{what}: the table is empty")


@plot_style()
def plot_curves(curves: pd.DataFrame, kind: str = "deletion", title: str | None = None) -> Figure:
    """Deletion or insertion curves: one panel per image, one line per method, mean AUC in the legend.

    Args:
        curves: long table with columns ``method, image, fraction, prob`` (fraction and prob in [0, 1]).
        kind: ``deletion`` (lower AUC is better) or ``insertion`` (higher is better); used in the labels.
        title: figure title.

    Returns:
        The figure.

    Raises:
        DeepSaliencyError: a column is missing or the table is empty.
    """
    _need_columns(curves, {"method", "image", "fraction", "prob"}, f"{kind} curves")
    images = list(dict.fromkeys(curves["image"]))
    methods = list(dict.fromkeys(curves["method"]))
    ncols = min(3, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 2.4, 3.0 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    aucs: dict[str, list[float]] = {m: [] for m in methods}
    for ax, img in zip(axes, images, strict=False):
        sub = curves[curves["image"] == img]
        for i, m in enumerate(methods):
            c = sub[sub["method"] == m].sort_values("fraction")
            if c.empty:
                continue
            aucs[m].append(float(np.trapezoid(c["prob"].to_numpy(float), c["fraction"].to_numpy(float))))
            ax.plot(c["fraction"], c["prob"], label=m, **method_style(m, i))
        ax.set_title(str(img))
        ax.grid(alpha=0.3)
    for ax in axes[len(images) :]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols :]:
        ax.set_xlabel("fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"))
    for ax in axes[::ncols]:
        ax.set_ylabel("probability of the class")
    handles = [Line2D([], [], **method_style(m, i)) for i, m in enumerate(methods)]
    labels = [f"{method_label(m)}  (AUC {np.mean(aucs[m]):.3f})" if aucs[m] else method_label(m) for m in methods]
    better = "lower" if kind == "deletion" else "higher"
    fig.legend(handles, labels, loc="outside right upper", title=f"mean AUC ({better} = better)")
    fig.suptitle(title or f"{kind.capitalize()} curves")
    return fig


def _loss_panel(ax: Any, df: pd.DataFrame, col: str, label: str, images: list[str]) -> None:
    """One cell of :func:`plot_attack_losses`: a line per image (colour by order of first appearance)."""
    ax.grid(alpha=0.3)
    if col not in df.columns or not df[col].notna().any():
        ax.text(0.5, 0.5, f"no {label}", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for img, g in df.groupby("image", sort=False):
        if img not in images:
            images.append(img)
        g = g.sort_values("step")
        ax.plot(g["step"], g[col], color=f"C{images.index(img) % 10}", linewidth=1.2)
    vals = df[col].to_numpy(float)
    vals = vals[np.isfinite(vals)]
    if col == "expl_loss" and vals.size and vals.min() > 0 and vals.max() / vals.min() > 20:
        ax.set_yscale("log")
    else:  # short tick labels, no offset text ("1e-3") colliding with the panel above
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


@plot_style()
def plot_attack_losses(losses: Mapping[str, pd.DataFrame], title: str | None = None) -> Figure:
    """Attack optimisation curves: one row per attack; explanation loss (log scale), output loss, and β when it varies.

    Args:
        losses: attack → table with columns ``step, image`` and any of ``expl_loss, output_loss, beta``.
        title: figure title.

    Returns:
        The figure (attacks × quantities panels).

    Raises:
        DeepSaliencyError: no table, or no table with a non-empty loss or β column.
    """
    if not losses:
        raise DeepSaliencyError("plot_attack_losses: no attack loss table given")
    quantities = [("expl_loss", "explanation loss"), ("output_loss", "output loss"), ("beta", "softplus β")]
    present = [q for q in quantities if any(q[0] in df.columns and df[q[0]].notna().any() for df in losses.values())]
    if not present:
        raise DeepSaliencyError("plot_attack_losses: no table has a non-empty expl_loss, output_loss or beta column")
    attacks = list(losses)
    fig = Figure(figsize=(3.7 * len(present) + 1.8, 2.3 * len(attacks) + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(attacks), len(present), squeeze=False))
    images: list[str] = []
    for i, a in enumerate(attacks):
        for j, (col, label) in enumerate(present):
            _loss_panel(axes[i, j], losses[a], col, label, images)
            if i == 0:
                axes[i, j].set_title(label)
            if i == len(attacks) - 1:
                axes[i, j].set_xlabel("step")
        row_label(axes[i, 0], method_label(a))
    handles = [Line2D([], [], color=f"C{k % 10}", linewidth=1.2) for k in range(len(images))]
    fig.legend(handles, [str(s) for s in images], loc="outside right upper", title="image")
    fig.suptitle(title or "Attack optimisation")
    return fig


def _n_text(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"


def _manipulability_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check the columns and one row per (method, eps); rows whose mean is not finite are not drawn."""
    _need_columns(table, {"method", "eps", "n", "mean", "ci_low", "ci_high"}, "plot_manipulability: table")
    dup = table.duplicated(["method", "eps"])
    if dup.any():
        row = table[dup].iloc[0]
        raise DeepSaliencyError(
            f"plot_manipulability: table has several rows for method {row['method']!r} at eps={row['eps']:g} "
            "(one row per (method, eps) is allowed)"
        )
    shown = table[np.isfinite(table["mean"].to_numpy(float))]
    if shown.empty:
        raise DeepSaliencyError("plot_manipulability: table has no finite mean to draw")
    outside = (shown["ci_low"] > shown["mean"]) | (shown["mean"] > shown["ci_high"])
    if outside.any():
        row = shown[outside].iloc[0]
        raise DeepSaliencyError(
            f"plot_manipulability: table row {row['method']!r} at eps={row['eps']:g} has mean {row['mean']:g} outside "
            f"[ci_low, ci_high] = [{row['ci_low']:g}, {row['ci_high']:g}] (ci_low ≤ mean ≤ ci_high is allowed)"
        )
    return shown.sort_values("eps", kind="stable")


@plot_style()
def plot_manipulability(
    table: pd.DataFrame, metric_label: str = "r(adv, target)", *, title: str | None = None
) -> Figure:
    """Manipulability curve: how close each attacked method's map got to the target, against the L∞ budget.

    One line with markers per method through its mean at each budget, its confidence interval as a shaded band;
    with a single budget, points with error bars (slightly spread sideways so the bars do not hide each other).
    A method whose ``converged_rate`` is below 0.5 at some budget is drawn dashed (open markers) and marked
    "(not converged)" in the legend: its curve may understate what a longer attack reaches.

    Args:
        table: one row per (method, eps) with columns ``method``; ``eps`` (L∞ budget, /255); ``n`` (images);
            ``mean``, ``ci_low``, ``ci_high`` (the metric and its confidence interval, e.g. Pearson r in [-1, 1]);
            optionally ``converged_rate`` in [0, 1]. Rows with a non-finite mean are not drawn.
        metric_label: y-axis label, the metric in ``mean``.
        title: figure title (None: "Manipulability").

    Returns:
        The figure: one axes; x = ε, y = the metric; a legend entry per method.

    Raises:
        DeepSaliencyError: a column is missing, the table is empty or has no finite mean, or a (method, eps)
            pair has several rows.
    """
    shown = _manipulability_table(table)
    budgets = np.unique(shown["eps"].to_numpy(float))
    methods = list(dict.fromkeys(shown["method"]))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    step = 0.03 * max(float(budgets[0]), 1.0)  # sideways spread of one budget's points, in /255
    handles, labels = [], []
    for i, m in enumerate(methods):
        g = shown[shown["method"] == m]
        eps, mean = g["eps"].to_numpy(float), g["mean"].to_numpy(float)
        low, high = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
        rate = g["converged_rate"].to_numpy(float) if "converged_rate" in g.columns else np.ones_like(mean)
        stuck = bool((rate < 0.5).any())
        style = dict(method_style(m, i), linestyle="--" if stuck else "-", marker="o", label=m)
        style["markerfacecolor"] = "white" if stuck else style["color"]
        if len(budgets) == 1:
            x = eps + (i - (len(methods) - 1) / 2) * step
            bars = ax.errorbar(x, mean, yerr=[mean - low, high - mean], capsize=3, **style)
            bars[2][0].set_linestyle(style["linestyle"])
        else:
            ax.plot(eps, mean, **style)
            ax.fill_between(eps, low, high, color=style["color"], alpha=0.18, linewidth=0)
        handles.append(Line2D([], [], **style))
        labels.append(f"{method_label(m)}  ({_n_text(g['n'])})" + (" (not converged)" if stuck else ""))
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.set_xlabel("L∞ budget ε (/255)")
    ax.set_ylabel(metric_label)
    ax.grid(alpha=0.3)
    what = "bars" if len(budgets) == 1 else "shaded"
    fig.legend(handles, labels, loc="outside right upper", title=f"attacked method\n({what}: CI of the mean)")
    # one axes: the title sits on it (a figure title would collide with the legend), as large as a figure title
    ax.set_title(title or "Manipulability", fontsize=matplotlib.rcParams["figure.titlesize"])
    return fig
