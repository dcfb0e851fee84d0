"""Attack panels: x, x_adv, the perturbation and the attacked maps per image; every map before and after PGD.

The attack figure follows Dombrowski et al. (2019), "Explanations can be manipulated and geometry is to
blame", https://arxiv.org/abs/1906.07983, Fig. 1. Colour scales follow :mod:`deepsaliency.plots.scaling`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure, SubFigure
from matplotlib.image import AxesImage

from ..errors import DeepSaliencyError
from .maps import draw_map
from .scaling import as_image, as_map, fmt, nice_gain, scale_label
from .style import colorbar, image_axis, method_label, plot_style, row_label, short


@dataclass
class AttackRow:
    """One image's row of the attack figure.

    Attributes:
        name: image name (row label).
        x, x_adv: the image and the adversarial image (any ``as_image`` layout).
        orig_map, adv_map: the attacked method's non-negative map on x and on x_adv.
        target_map: the manipulation target (None for an untargeted attack such as PGD).
        label, prob: predicted class name and probability on x.
        label_adv, prob_adv: predicted class name on x_adv and the probability of the ORIGINAL class on x_adv.
        target_name: the image whose map is the target.
        r_orig_target, r_adv_target: similarity (e.g. Pearson) of the original / adversarial map to the target.
    """

    name: str
    x: np.ndarray
    x_adv: np.ndarray
    orig_map: np.ndarray
    adv_map: np.ndarray
    target_map: np.ndarray | None = None
    label: str = ""
    prob: float | None = None
    label_adv: str = ""
    prob_adv: float | None = None
    target_name: str = ""
    r_orig_target: float | None = None
    r_adv_target: float | None = None


def perturbation_panel(ax: Any, x: np.ndarray, x_adv: np.ndarray, gain: float | None = None) -> tuple[float, float]:
    """Draw ``0.5 + gain · (x_adv − x)`` with its scale written on it.

    Args:
        ax: the axes to draw in.
        x, x_adv: float (H, W, 3) images in [0, 1].
        gain: amplification; None → :func:`~deepsaliency.plots.scaling.nice_gain` of the L∞ norm.

    Returns:
        ``(gain, linf_255)``: the factor used and the L∞ norm in [0, 255] units.
    """
    delta = x_adv - x
    linf = float(np.max(np.abs(delta)))
    gain = nice_gain(linf) if gain is None else gain
    ax.imshow(np.clip(0.5 + gain * delta, 0.0, 1.0))
    image_axis(ax, f"perturbation ×{gain:g}")
    ax.text(
        0.03,
        0.03,
        f"L∞ = {linf * 255:.3g}/255",
        transform=ax.transAxes,
        va="bottom",
        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85),
    )
    return gain, linf * 255


def _attack_row(ax: np.ndarray, r: AttackRow, method: str, **scale: Any) -> AxesImage:
    """Draw one :class:`AttackRow` into six axes; ``scale`` = ``cmap, percentile, min_max``. Returns a map image."""
    x, x_adv = as_image(r.x, "x"), as_image(r.x_adv, "x_adv")
    ax[0].imshow(x)
    image_axis(ax[0], f"x: {short(r.label)}\np = {fmt(r.prob)}")
    row_label(ax[0], r.name)
    ax[1].imshow(x_adv)
    image_axis(ax[1], f"x_adv: {short(r.label_adv)}\np(orig. class) = {fmt(r.prob_adv)}")
    perturbation_panel(ax[2], x, x_adv)
    name = short(method_label(method), 22)
    im = draw_map(ax[3], as_map(r.orig_map, "orig_map"), signed=False, **scale)
    image_axis(ax[3], f"{name} on x" + ("" if r.target_map is None else f"\nr to target = {fmt(r.r_orig_target)}"))
    draw_map(ax[4], as_map(r.adv_map, "adv_map"), signed=False, **scale)
    image_axis(ax[4], f"{name} on x_adv" + ("" if r.target_map is None else f"\nr to target = {fmt(r.r_adv_target)}"))
    if r.target_map is None:
        image_axis(ax[5], "no target (untargeted)")
    else:
        draw_map(ax[5], as_map(r.target_map, "target_map"), signed=False, **scale)
        image_axis(ax[5], f"target map\n(of {short(r.target_name, 16)})")
    return im


@plot_style()
def plot_attack(
    rows: Sequence[AttackRow],
    method: str,
    *,
    map_cmap: str = "inferno",
    clip_percentile: float = 99.5,
    min_max: bool = False,
    title: str | None = None,
) -> Figure:
    """One panel row per image: x, x_adv, the amplified perturbation, the original, adversarial and target map.

    After Dombrowski et al. (2019), Fig. 1 (https://arxiv.org/abs/1906.07983). Maps are each scaled by
    ``scaled`` and share one colour bar; a row without a target (PGD) leaves that cell empty.

    Args:
        rows: one :class:`AttackRow` per image.
        method: the explanation method whose maps are shown (named in the titles).
        map_cmap: sequential colour map.
        clip_percentile: each map is shown ÷ this percentile of its values, clipped (see ``scaled``).
        min_max: show the maps from their minimum (see ``scaled``).
        title: figure title.

    Returns:
        The figure (6 image axes per row and a colour bar).

    Raises:
        DeepSaliencyError: ``rows`` is empty, or an image/map of a row has a shape that is not allowed.
    """
    if not rows:
        raise DeepSaliencyError("plot_attack: rows is empty; give at least one image")
    n = len(rows)
    fig = Figure(figsize=(6 * 2.0 + 0.8, n * 2.45 + (0.45 if title else 0.1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, 6))
    ims = [
        _attack_row(ax, r, method, cmap=map_cmap, percentile=clip_percentile, min_max=min_max)
        for ax, r in zip(axes, rows, strict=True)
    ]
    for ax in axes[:, 0]:
        ax.yaxis.label.set_visible(True)
    colorbar(
        fig,
        ims[-1],
        list(axes[:, 3:].ravel()),
        scale_label(clip_percentile, min_max=min_max),
        fraction=0.02,
        pad=0.01,
        aspect=12 * n,
    )
    if title:
        fig.suptitle(title)
    return fig


def _transfer_block(
    sf: SubFigure,
    name: str,
    images: tuple[Any, Any],
    maps: tuple[Mapping, Mapping],
    sim: Mapping[str, float],
    methods: list[str],
    cmap: str,
    percentile: float,
    min_max_methods: Sequence[str],
) -> None:
    """One image's two rows of :func:`plot_attack_transfer` (x and its maps; x_adv and its maps) in ``sf``."""
    x, x_adv = as_image(images[0], "x"), as_image(images[1], "x_adv")
    top, bottom = sf.subplots(2, len(methods) + 1)
    top[0].imshow(x)
    image_axis(top[0], "x")
    bottom[0].imshow(x_adv)
    image_axis(bottom[0], f"x_adv (L∞ = {float(np.max(np.abs(x_adv - x))) * 255:.3g}/255)")
    ims = []
    for j, m in enumerate(methods, start=1):
        scale: dict[str, Any] = dict(cmap=cmap, percentile=percentile, min_max=m in min_max_methods)
        if m in maps[0]:
            draw_map(top[j], as_map(maps[0][m], f"map of {m}"), signed=False, **scale)
        image_axis(top[j], short(method_label(m), 22) + " on x" + (" (min–max)" if m in min_max_methods else ""))
        ims.append(draw_map(bottom[j], as_map(maps[1][m], f"adversarial map of {m}"), signed=False, **scale))
        r = sim.get(m)
        image_axis(bottom[j], "on x_adv" + ("" if r is None else f", r = {fmt(r)}"))
    axes = list(np.concatenate([top[1:], bottom[1:]]))
    colorbar(sf, ims[-1], axes, scale_label(percentile), fraction=0.02, pad=0.01, aspect=15)
    sf.suptitle(str(name), fontweight="bold")


@plot_style()
def plot_attack_transfer(
    images: Sequence[tuple[str, np.ndarray, np.ndarray]],
    orig_maps: Sequence[Mapping[str, np.ndarray]],
    adv_maps: Sequence[Mapping[str, np.ndarray]],
    *,
    similarity: Sequence[Mapping[str, float]] | None = None,
    map_cmap: str = "inferno",
    clip_percentile: float = 99.5,
    min_max_methods: Sequence[str] = ("rise",),
    title: str | None = None,
) -> Figure:
    """Every method's map before and after one attack: two rows per image (x and its maps, x_adv and its maps).

    Used for untargeted attacks (PGD), whose effect on every explanation is the point.

    Args:
        images: per image ``(name, x, x_adv)``.
        orig_maps, adv_maps: per image, method → map on x / on x_adv (same methods in the same order).
        similarity: per image, method → similarity of the map on x_adv to the map on x (written in the titles).
        map_cmap: sequential colour map.
        clip_percentile: each map is shown ÷ this percentile of its values, clipped (see ``scaled``).
        min_max_methods: methods whose maps are shown from their minimum (titles say "min–max").
        title: figure title.

    Returns:
        The figure: one sub-figure per image, shaded alternately.

    Raises:
        DeepSaliencyError: ``images`` is empty (AttributionError for a NaN or mis-shaped map).
    """
    if not images:
        raise DeepSaliencyError("plot_attack_transfer: images is empty; give at least one image")
    methods = list(adv_maps[0])
    cols = len(methods) + 1
    n = len(images)
    fig = Figure(figsize=(1.95 * cols + 0.9, n * (2 * 2.2 + 0.35) + (0.45 if title else 0.1)), layout="constrained")
    # one block per image, shaded alternately, so pairs of rows read together
    subs: Any = fig.subfigures(n, 1, squeeze=False)
    for i, (sf, (name, x, x_adv)) in enumerate(zip(subs[:, 0], images, strict=True)):
        if i % 2:
            sf.set_facecolor("0.94")
        sim = {} if similarity is None else similarity[i]
        _transfer_block(
            sf, name, (x, x_adv), (orig_maps[i], adv_maps[i]), sim, methods, map_cmap, clip_percentile, min_max_methods
        )
    if title:  # one point above the per-image titles, which use figure.titlesize
        fig.suptitle(title, fontsize=matplotlib.rcParams["figure.titlesize"] + 1)
    return fig
