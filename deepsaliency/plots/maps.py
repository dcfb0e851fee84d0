"""Image and map panels: one explanation beside its image, and every method's explanation of one image.

Colour scales follow the conventions of :mod:`deepsaliency.plots.scaling`; the attack panels are in
:mod:`deepsaliency.plots.attacks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import ScalarFormatter

from ..errors import DeepSaliencyError
from .scaling import as_image, as_map, is_signed, map_norm, scale_label, scaled
from .style import DIVERGING_CMAPS, check_colormap, colorbar, image_axis, method_label, plot_style


def draw_map(
    ax: Any,
    smap: np.ndarray,
    *,
    signed: bool,
    cmap: str,
    image: np.ndarray | None = None,
    alpha: float = 0.6,
    percentile: float = 100.0,
    min_max: bool = False,
) -> AxesImage:
    """Draw one map scaled by :func:`~deepsaliency.plots.scaling.scaled`; over a grey copy of ``image`` when given.

    Returns:
        The map's AxesImage (for a colour bar).
    """
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-1.0, vmax=1.0) if signed else Normalize(0.0, 1.0)
    shown = scaled(smap, signed, percentile, min_max)
    if image is None:
        return ax.imshow(shown, cmap=cmap, norm=norm)
    ax.imshow(image.mean(axis=-1), cmap="gray", vmin=0, vmax=1)
    return ax.imshow(shown, cmap=cmap, norm=norm, alpha=alpha)


@plot_style()
def plot_comparison(
    original_image: Any,
    explanation: Any,
    colormap: str = "seismic",
    title_original: str = "Original image",
    title_explanation: str = "Explanation",
    centered: bool | None = None,
) -> Figure:
    """The image and its explanation side by side, with a colour bar in the map's own units.

    Args:
        original_image: see :func:`~deepsaliency.plots.scaling.as_image`.
        explanation: a map (H, W) or an attribution (C, H, W) (summed over channels, sign kept).
        colormap: matplotlib colour map.
        title_original, title_explanation: panel titles.
        centered: draw on a 0-centred symmetric norm (:func:`~deepsaliency.plots.scaling.map_norm`); None → when
            the map has a negative value or ``colormap`` is diverging (see ``DIVERGING_CMAPS``).

    Returns:
        The figure (two image axes and a colour bar).

    Raises:
        ParamError: unknown ``colormap``. DeepSaliencyError/AttributionError: bad image or map shape, NaN map.
    """
    check_colormap(colormap, "colormap")
    image = as_image(original_image, "original_image")
    smap = as_map(explanation, "explanation")
    if centered is None:
        centered = is_signed(smap) or colormap in DIVERGING_CMAPS
    fig = Figure(figsize=(8.0, 3.9), layout="constrained")
    ax_img, ax_map = fig.subplots(1, 2)
    ax_img.imshow(image)
    image_axis(ax_img, title_original)
    im = ax_map.imshow(smap, cmap=colormap, norm=map_norm(smap, signed=centered))
    image_axis(ax_map, title_explanation)
    cb = colorbar(fig, im, ax_map, fraction=0.046, pad=0.03)
    if isinstance(cb.formatter, ScalarFormatter):  # plain numbers from 0.01 to 1000, else an exponent
        cb.formatter.set_powerlimits((-2, 3))
    return fig


def _signed_row(
    fig: Figure, axes: np.ndarray, methods: list[str], attributions: Mapping[str, Any], cmap: str, percentile: float
) -> None:
    """Row 2 of :func:`plot_methods`: each method's signed attribution, or "no attribution"."""
    image_axis(axes[0])
    axes[0].text(
        0.5,
        0.5,
        "signed attribution\n(sum over channels)\n\nred: for the class\nblue: against it",
        ha="center",
        va="center",
        transform=axes[0].transAxes,
    )
    ims = []
    for ax, m in zip(axes[1:], methods, strict=True):
        image_axis(ax)
        if m not in attributions:
            ax.text(0.5, 0.5, "no attribution", ha="center", va="center", transform=ax.transAxes)
            continue
        attr = as_map(attributions[m], f"attribution of {m}")
        ims.append(draw_map(ax, attr, signed=True, cmap=cmap, percentile=percentile))
    if ims:
        colorbar(
            fig, ims[-1], list(axes[1:]), scale_label(percentile, signed=True), fraction=0.025, pad=0.01, aspect=12
        )


@plot_style()
def plot_methods(
    image: Any,
    maps: Mapping[str, np.ndarray],
    attributions: Mapping[str, np.ndarray] | None = None,
    *,
    map_cmap: str = "inferno",
    signed_cmap: str = "seismic",
    overlay: bool = False,
    overlay_alpha: float = 0.6,
    clip_percentile: float = 99.5,
    min_max_methods: Sequence[str] = ("rise",),
    title: str | None = None,
) -> Figure:
    """The image and every method's explanation in one grid.

    Row 1: the non-negative maps (sequential ``map_cmap``); row 2 (when ``attributions`` is given): the
    signed attributions summed over channels (diverging ``signed_cmap`` centred at 0). Each map is scaled
    by :func:`~deepsaliency.plots.scaling.scaled`; one colour bar per row.

    Args:
        image: see :func:`~deepsaliency.plots.scaling.as_image`.
        maps: method → non-negative map (H, W), in column order.
        attributions: method → raw attribution (C, H, W); methods missing here leave their cell empty.
        map_cmap, signed_cmap: colour maps of the two rows.
        overlay: draw the non-negative maps over a grey copy of the image.
        overlay_alpha: opacity of the map drawn over the image.
        clip_percentile: each map is shown ÷ this percentile of its |values|, clipped (see ``scaled``).
        min_max_methods: methods whose non-negative map is shown from its minimum (titles say "min–max").
        title: figure title.

    Returns:
        The figure.

    Raises:
        DeepSaliencyError: ``maps`` is empty (AttributionError for a NaN or mis-shaped map).
    """
    if not maps:
        raise DeepSaliencyError("plot_methods: maps is empty; give at least one method's map")
    img = as_image(image)
    methods = list(maps)
    rows = 2 if attributions else 1
    cols = len(methods) + 1
    fig = Figure(figsize=(1.95 * cols + 0.9, 2.25 * rows + (0.45 if title else 0.1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols))
    axes[0, 0].imshow(img)
    image_axis(axes[0, 0], "image")
    ims = []
    for ax, m in zip(axes[0, 1:], methods, strict=True):
        im = draw_map(
            ax,
            as_map(maps[m], f"map of {m}"),
            signed=False,
            cmap=map_cmap,
            image=img if overlay else None,
            alpha=overlay_alpha,
            percentile=clip_percentile,
            min_max=m in min_max_methods,
        )
        ims.append(im)
        image_axis(ax, method_label(m) + (" (min–max)" if m in min_max_methods else ""))
    colorbar(fig, ims[-1], list(axes[0, 1:]), scale_label(clip_percentile), fraction=0.025, pad=0.01, aspect=12)
    if attributions:
        _signed_row(fig, axes[1], methods, attributions, signed_cmap, clip_percentile)
    if title:
        fig.suptitle(title)
    return fig
