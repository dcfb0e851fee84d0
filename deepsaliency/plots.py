"""Figures: saliency maps, attacks on them, faithfulness curves and the transfer matrix.

Every function builds a :class:`matplotlib.figure.Figure` directly (no
``pyplot``: no global figure registry to leak, no GUI backend; saving renders
with Agg) and returns it; :func:`save_figure` writes it as PNG.

Display conventions (the same in every figure):

* a **signed** attribution (raw Captum output summed over colour channels) is
  drawn on a diverging colour map centred at 0 by a symmetric
  :class:`~matplotlib.colors.TwoSlopeNorm` (white = 0, red = supports the
  class, blue = opposes it with ``seismic``);
* a **non-negative** map (``reduce_map``: |attribution| summed over channels,
  RISE, ReLU Grad-CAM) is drawn on a sequential colour map from 0;
* maps drawn side by side are each divided by their own scale (by default the
  99.5th percentile of |map|, clipped at 1, see :func:`scaled`; 100 gives the
  maximum, the rule of :func:`deepsaliency.metrics.similarity.normalize_map`),
  so one colour bar serves a whole row: the figures compare the *shape* of
  maps, whose raw units differ by orders of magnitude between methods and
  between x and x_adv.

The attack figure follows Dombrowski et al. (2019), "Explanations can be
manipulated and geometry is to blame", https://arxiv.org/abs/1906.07983, Fig. 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from .errors import AttributionError, DeepSaliencyError, ParamError

#: The ``plots:`` section of params.yaml with its defaults.
PLOT_DEFAULTS: dict[str, object] = {
    "signed_cmap": "seismic",  # diverging colour map for signed attributions (centred at 0)
    "map_cmap": "inferno",  # sequential colour map for non-negative maps
    "dpi": 100,
    "format": "png",  # the HTML report embeds PNG; no other format is written
    "overlay": False,  # draw non-negative maps over a grey copy of the image
    "overlay_alpha": 0.6,  # opacity of a map drawn over the image
    "clip_percentile": 99.5,  # maps are shown ÷ this percentile of |map|, clipped (100 = ÷ max)
    "min_max_methods": ["rise"],  # non-negative maps shown from their minimum, not from 0 (RISE has a large offset)
}

#: Colour maps treated as diverging by :func:`plot_comparison` (a 0-centred norm even for non-negative maps).
DIVERGING_CMAPS = frozenset(
    name + suffix
    for name in ("seismic", "bwr", "coolwarm", "RdBu", "RdBu_r", "PiYG", "PRGn", "BrBG", "PuOr", "RdGy", "RdYlBu", "RdYlGn", "Spectral", "berlin", "managua", "vanimo")
    for suffix in ("", "_r")
)

#: Fixed colour per method so a method looks the same in every curve figure.
METHOD_COLORS = {
    "rise": "tab:blue",
    "integrated_gradients": "tab:orange",
    "saliency": "tab:green",
    "input_x_gradient": "tab:red",
    "smoothgrad": "tab:purple",
    "gradient_shap": "tab:brown",
    "occlusion": "tab:pink",
    "gradcam": "tab:olive",
    "guided_backprop": "tab:cyan",
    "deeplift": "tab:gray",
    "gradcam_plus_plus": "gold",
    "lrp": "navy",
    "random": "black",
}

_TITLE = 9  # font sizes: panel titles, figure titles
_SUPTITLE = 11


def check_colormap(name: object, key: str = "plots.map_cmap") -> str:
    """Return ``name`` if matplotlib knows the colour map, else raise :class:`ParamError`."""
    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise ParamError(f"{key}: {name!r} is not allowed (a matplotlib colour map name, e.g. seismic, bwr, inferno, hot, viridis)")
    return name


def plot_params(section: Mapping | None = None) -> dict:
    """Validate the ``plots:`` section of params.yaml and fill in :data:`PLOT_DEFAULTS`.

    Args:
        section: the section as read from YAML; ``None`` (absent) gives the defaults.

    Returns:
        A complete, validated copy.

    Raises:
        ParamError: an unknown key or a value that is not allowed (one line naming it).
    """
    from .config import validate_section

    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise ParamError(f"plots: {section!r} is not allowed (a mapping with keys {', '.join(PLOT_DEFAULTS)})")
    return validate_section("plots", {**PLOT_DEFAULTS, **section})


# ----------------------------------------------------------------------------- array helpers


def _numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor; torch is not imported here
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def as_image(image, name: str = "image") -> np.ndarray:
    """An image as float (H, W, 3) in [0, 1].

    Args:
        image: uint8 (H, W, 3); float (H, W, 3) or (3, H, W) in [0, 1]; or a (1, 3, H, W) tensor.
        name: used in the error message.

    Raises:
        DeepSaliencyError: the shape is none of these.
    """
    a = _numpy(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise DeepSaliencyError(f"{name}: shape {a.shape} is not allowed (an image (H, W, 3), (3, H, W) or (1, 3, H, W))")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    return np.clip(a, 0.0, 1.0)


def as_map(saliency, name: str = "map") -> np.ndarray:
    """A saliency map as float (H, W); an attribution (C, H, W) or (1, C, H, W) is summed over channels (sign kept).

    Raises:
        AttributionError: NaN/infinite values or a shape that is not 2-D after the channel sum.
    """
    a = _numpy(saliency).astype(np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise AttributionError(f"{name}: shape {a.shape} is not allowed (a map (H, W) or an attribution (C, H, W))")
    if not np.isfinite(a).all():
        raise AttributionError(f"{name}: has NaN/infinite values; a map must be finite")
    return a


def is_signed(saliency: np.ndarray) -> bool:
    """True when the map has a negative value (it must be drawn on a 0-centred diverging scale)."""
    return bool(np.min(saliency) < 0)


def map_norm(saliency: np.ndarray, signed: bool | None = None) -> Normalize:
    """The colour normalisation of one map.

    Args:
        saliency: a 2-D map.
        signed: True → symmetric :class:`TwoSlopeNorm` centred at 0 over ±max|map|;
            False → linear from 0 to the maximum; None → signed when the map has a negative value.

    Returns:
        The norm (an all-zero map gets limits ±1 / [0, 1] so it renders as the 0 colour).
    """
    signed = is_signed(saliency) if signed is None else signed
    if signed:
        m = float(np.max(np.abs(saliency))) or 1.0
        return TwoSlopeNorm(vcenter=0.0, vmin=-m, vmax=m)
    top = float(np.max(saliency))
    return Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)


def scaled(saliency: np.ndarray, signed: bool, percentile: float = 100.0, min_max: bool = False) -> np.ndarray:
    """The map divided by a high percentile of its absolute values, clipped: [0, 1], or [-1, 1] when signed.

    ``percentile=100`` divides by the maximum. A lower value (default in figures: 99.5) keeps a handful
    of extreme pixels, common in gradient maps, from turning the rest of the map black; this is what
    Captum's ``visualize_image_attr(outlier_perc=...)`` does, with the threshold taken by pixel count
    (``numpy.percentile``) instead of by cumulative mass. An all-zero map stays zero.

    ``min_max`` (non-negative maps only) first subtracts the minimum: RISE saliency is a probability
    with a large constant offset (every pixel is kept in about p1 of the masks), so from 0 it is one
    flat colour; the RISE paper (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421) shows it min–max.
    """
    if min_max and not signed:
        saliency = saliency - float(np.min(saliency))
    a = np.abs(saliency)
    m = float(np.percentile(a, percentile)) if percentile < 100 else float(a.max())
    if m <= 0:
        m = float(a.max())
    out = saliency / m if m > 0 else np.zeros_like(saliency)
    return np.clip(out, -1.0 if signed else 0.0, 1.0)


def nice_gain(linf: float, target: float = 0.5) -> float:
    """The largest 1-2-5 × 10^k factor with ``gain · linf ≤ target`` (≥ 1): how much to amplify a perturbation to see it."""
    if linf <= 0:
        return 1.0
    raw = target / linf
    if raw <= 1:
        return 1.0
    exp = math.floor(math.log10(raw))
    best = 1.0
    for mant in (1, 2, 5, 10):
        g = mant * 10**exp
        if g <= raw:
            best = g
    return float(best)


def _scale_label(percentile: float, signed: bool = False, min_max: bool = False) -> str:
    what = "attribution ÷ " if signed else ("(map − min) ÷ " if min_max else "map ÷ ")
    what += ("max |·|" if signed else "its max") if percentile >= 100 else f"{percentile:g}th pct. of |·|"
    return what


def _label(method: str) -> str:
    return method.replace("_", " ")


def _short(text: str, n: int = 20) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _image_axis(ax, title: str | None = None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=_TITLE)


def _draw_map(ax, smap: np.ndarray, *, signed: bool, cmap: str, image: np.ndarray | None = None, alpha: float = 0.6,
              percentile: float = 100.0, min_max: bool = False):
    """Draw one map scaled by :func:`scaled`; over a grey copy of ``image`` when given. Returns the AxesImage."""
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-1.0, vmax=1.0) if signed else Normalize(0.0, 1.0)
    if image is not None:
        ax.imshow(image.mean(axis=-1), cmap="gray", vmin=0, vmax=1)
        return ax.imshow(scaled(smap, signed, percentile, min_max), cmap=cmap, norm=norm, alpha=alpha)
    return ax.imshow(scaled(smap, signed, percentile, min_max), cmap=cmap, norm=norm)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG at ``dpi`` (no timestamp in the file: equal figures give equal bytes)."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    return path


# ----------------------------------------------------------------------------- the seed API


def plot_comparison(
    original_image,
    explanation,
    colormap: str = "seismic",
    title_original: str = "Original image",
    title_explanation: str = "Explanation",
    centered: bool | None = None,
) -> Figure:
    """The image and its explanation side by side, with a colour bar.

    Args:
        original_image: see :func:`as_image`.
        explanation: a map (H, W) or an attribution (C, H, W) (summed over channels, sign kept).
        colormap: matplotlib colour map.
        title_original, title_explanation: panel titles.
        centered: draw on a 0-centred symmetric norm (:func:`map_norm`); None → when the map has a negative
            value or ``colormap`` is diverging (see :data:`DIVERGING_CMAPS`).

    Returns:
        The figure (two image axes and a colour bar).
    """
    check_colormap(colormap, "colormap")
    image = as_image(original_image, "original_image")
    smap = as_map(explanation, "explanation")
    if centered is None:
        centered = is_signed(smap) or colormap in DIVERGING_CMAPS
    fig = Figure(figsize=(8.0, 3.9), layout="constrained")
    ax_img, ax_map = fig.subplots(1, 2)
    ax_img.imshow(image)
    _image_axis(ax_img, title_original)
    im = ax_map.imshow(smap, cmap=colormap, norm=map_norm(smap, signed=centered))
    _image_axis(ax_map, title_explanation)
    cb = fig.colorbar(im, ax=ax_map, fraction=0.046, pad=0.03)
    cb.ax.tick_params(labelsize=8)
    cb.formatter.set_powerlimits((-2, 3))
    return fig


# ----------------------------------------------------------------------------- per image: every method


def plot_methods(
    image,
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
    by :func:`scaled`; one colour bar per row.

    Args:
        image: see :func:`as_image`.
        maps: method → non-negative map (H, W), in column order.
        attributions: method → raw attribution (C, H, W); methods missing here leave their cell empty.
        overlay: draw the non-negative maps over a grey copy of the image.
        overlay_alpha: opacity of the map drawn over the image.
        clip_percentile: each map is shown ÷ this percentile of its |values|, clipped (see :func:`scaled`).
        min_max_methods: methods whose non-negative map is shown from its minimum (titles say "min–max").
        title: figure title.

    Returns:
        The figure.
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
    _image_axis(axes[0, 0], "image")
    im = None
    for j, m in enumerate(methods, start=1):
        smap = as_map(maps[m], f"map of {m}")
        im = _draw_map(axes[0, j], smap, signed=False, cmap=map_cmap, image=img if overlay else None, alpha=overlay_alpha,
                       percentile=clip_percentile, min_max=m in min_max_methods)
        _image_axis(axes[0, j], _label(m) + (" (min–max)" if m in min_max_methods else ""))
    cb = fig.colorbar(im, ax=list(axes[0, 1:]), fraction=0.025, pad=0.01, aspect=12)
    cb.set_label(_scale_label(clip_percentile), fontsize=8)
    cb.ax.tick_params(labelsize=7)
    if rows == 2:
        _image_axis(axes[1, 0])
        axes[1, 0].text(0.5, 0.5, "signed attribution\n(sum over channels)\n\nred: for the class\nblue: against it",
                        ha="center", va="center", fontsize=8, transform=axes[1, 0].transAxes)
        im = None
        for j, m in enumerate(methods, start=1):
            _image_axis(axes[1, j])
            if m not in attributions:
                axes[1, j].text(0.5, 0.5, "no attribution", ha="center", va="center", fontsize=8, transform=axes[1, j].transAxes)
                continue
            attr = as_map(attributions[m], f"attribution of {m}")
            im = _draw_map(axes[1, j], attr, signed=True, cmap=signed_cmap, percentile=clip_percentile)
        if im is not None:
            cb = fig.colorbar(im, ax=list(axes[1, 1:]), fraction=0.025, pad=0.01, aspect=12)
            cb.set_label(_scale_label(clip_percentile, signed=True), fontsize=8)
            cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=_SUPTITLE)
    return fig


# ----------------------------------------------------------------------------- per attack: Dombrowski et al. figure


@dataclass
class AttackRow:
    """One image's row of the attack figure.

    Attributes:
        name: image name (row label).
        x, x_adv: the image and the adversarial image (any :func:`as_image` layout).
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


def _fmt(v: float | None, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    text = format(v, spec)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def perturbation_panel(ax, x: np.ndarray, x_adv: np.ndarray, gain: float | None = None) -> tuple[float, float]:
    """Draw ``0.5 + gain · (x_adv − x)`` with its scale written on it.

    Args:
        gain: amplification; None → :func:`nice_gain` of the L∞ norm.

    Returns:
        ``(gain, linf_255)``: the factor used and the L∞ norm in [0, 255] units.
    """
    delta = x_adv - x
    linf = float(np.max(np.abs(delta)))
    gain = nice_gain(linf) if gain is None else gain
    ax.imshow(np.clip(0.5 + gain * delta, 0.0, 1.0))
    _image_axis(ax, f"perturbation ×{gain:g}")
    ax.text(0.03, 0.03, f"L∞ = {linf * 255:.3g}/255", transform=ax.transAxes, fontsize=8, va="bottom",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85))
    return gain, linf * 255


def plot_attack(rows: Sequence[AttackRow], method: str, *, map_cmap: str = "inferno", clip_percentile: float = 99.5,
                min_max: bool = False, title: str | None = None) -> Figure:
    """One panel row per image: x, x_adv, the amplified perturbation, the original, adversarial and target map.

    After Dombrowski et al. (2019), Fig. 1 (https://arxiv.org/abs/1906.07983). Maps are each ÷ their max
    and share one colour bar; a row without a target (PGD) leaves that cell empty.

    Args:
        rows: one :class:`AttackRow` per image.
        method: the explanation method whose maps are shown (named in the titles).
        map_cmap: sequential colour map.
        clip_percentile: each map is shown ÷ this percentile of its values, clipped (see :func:`scaled`).
        min_max: show the maps from their minimum (see :func:`scaled`).
        title: figure title.

    Returns:
        The figure.
    """
    if not rows:
        raise DeepSaliencyError("plot_attack: rows is empty; give at least one image")
    n = len(rows)
    fig = Figure(figsize=(6 * 2.0 + 0.8, n * 2.45 + (0.45 if title else 0.1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, 6))
    im = None
    for i, r in enumerate(rows):
        x, x_adv = as_image(r.x, "x"), as_image(r.x_adv, "x_adv")
        ax = axes[i]
        ax[0].imshow(x)
        _image_axis(ax[0], f"x: {_short(r.label)}\np = {_fmt(r.prob)}")
        ax[0].set_ylabel(r.name, fontsize=_TITLE)
        ax[1].imshow(x_adv)
        _image_axis(ax[1], f"x_adv: {_short(r.label_adv)}\np(orig. class) = {_fmt(r.prob_adv)}")
        perturbation_panel(ax[2], x, x_adv)
        im = _draw_map(ax[3], as_map(r.orig_map, "orig_map"), signed=False, cmap=map_cmap, percentile=clip_percentile,
                      min_max=min_max)
        t = "" if r.target_map is None else f"\nr to target = {_fmt(r.r_orig_target)}"
        _image_axis(ax[3], f"{_short(_label(method), 22)} on x{t}")
        _draw_map(ax[4], as_map(r.adv_map, "adv_map"), signed=False, cmap=map_cmap, percentile=clip_percentile,
                      min_max=min_max)
        t = "" if r.target_map is None else f"\nr to target = {_fmt(r.r_adv_target)}"
        _image_axis(ax[4], f"{_short(_label(method), 22)} on x_adv{t}")
        if r.target_map is None:
            _image_axis(ax[5], "no target (untargeted)")
        else:
            _draw_map(ax[5], as_map(r.target_map, "target_map"), signed=False, cmap=map_cmap, percentile=clip_percentile,
                      min_max=min_max)
            _image_axis(ax[5], f"target map\n(of {_short(r.target_name, 16)})")
    for ax in axes[:, 0]:
        ax.yaxis.label.set_visible(True)
    cb = fig.colorbar(im, ax=list(axes[:, 3:].ravel()), fraction=0.02, pad=0.01, aspect=12 * n)
    cb.set_label(_scale_label(clip_percentile, min_max=min_max), fontsize=8)
    cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=_SUPTITLE)
    return fig


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
        clip_percentile: each map is shown ÷ this percentile of its values, clipped (see :func:`scaled`).
        min_max_methods: methods whose maps are shown from their minimum (titles say "min–max").
        title: figure title.

    Returns:
        The figure.
    """
    if not images:
        raise DeepSaliencyError("plot_attack_transfer: images is empty; give at least one image")
    methods = list(adv_maps[0])
    cols = len(methods) + 1
    n = len(images)
    fig = Figure(figsize=(1.95 * cols + 0.9, n * (2 * 2.2 + 0.35) + (0.45 if title else 0.1)), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(n, 1))  # one block per image, shaded alternately, so pairs of rows read together
    for i, (name, x, x_adv) in enumerate(images):
        sf = subs[i]
        if i % 2:
            sf.set_facecolor("0.94")
        x, x_adv = as_image(x, "x"), as_image(x_adv, "x_adv")
        top, bottom = sf.subplots(2, cols)
        top[0].imshow(x)
        _image_axis(top[0], "x")
        linf = float(np.max(np.abs(x_adv - x))) * 255
        bottom[0].imshow(x_adv)
        _image_axis(bottom[0], f"x_adv (L∞ = {linf:.3g}/255)")
        im = None
        for j, m in enumerate(methods, start=1):
            if m in orig_maps[i]:
                im = _draw_map(top[j], as_map(orig_maps[i][m], f"map of {m}"), signed=False, cmap=map_cmap, percentile=clip_percentile,
                               min_max=m in min_max_methods)
            _image_axis(top[j], _short(_label(m), 22) + " on x" + (" (min–max)" if m in min_max_methods else ""))
            r = None if similarity is None else similarity[i].get(m)
            im = _draw_map(bottom[j], as_map(adv_maps[i][m], f"adversarial map of {m}"), signed=False, cmap=map_cmap,
                           percentile=clip_percentile, min_max=m in min_max_methods)
            _image_axis(bottom[j], "on x_adv" + ("" if r is None else f", r = {_fmt(r)}"))
        cb = sf.colorbar(im, ax=list(np.concatenate([top[1:], bottom[1:]])), fraction=0.02, pad=0.01, aspect=15)
        cb.set_label(_scale_label(clip_percentile), fontsize=8)
        cb.ax.tick_params(labelsize=7)
        sf.suptitle(str(name), fontsize=_SUPTITLE, fontweight="bold")
    if title:
        fig.suptitle(title, fontsize=_SUPTITLE + 1)
    return fig


# ----------------------------------------------------------------------------- curves


def _method_style(method: str, i: int) -> dict:
    if method == "random":
        return dict(color="black", linestyle="--", linewidth=1.4)
    return dict(color=METHOD_COLORS.get(method, f"C{i % 10}"), linewidth=1.4)


def plot_curves(curves: pd.DataFrame, kind: str = "deletion", title: str | None = None) -> Figure:
    """Deletion or insertion curves: one panel per image, one line per method, mean AUC in the legend.

    Args:
        curves: long table with columns ``method, image, fraction, prob``.
        kind: ``deletion`` (lower AUC is better) or ``insertion`` (higher is better); used in the labels.
        title: figure title.

    Returns:
        The figure.
    """
    need = {"method", "image", "fraction", "prob"}
    if not need <= set(curves.columns):
        raise DeepSaliencyError(f"{kind} curves: columns {sorted(curves.columns)} lack {sorted(need - set(curves.columns))}")
    if curves.empty:
        raise DeepSaliencyError(f"{kind} curves: the table is empty")
    images = list(dict.fromkeys(curves["image"]))
    methods = list(dict.fromkeys(curves["method"]))
    ncols = min(3, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 2.4, 3.0 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    aucs: dict[str, list[float]] = {m: [] for m in methods}
    for ax, img in zip(axes, images):
        sub = curves[curves["image"] == img]
        for i, m in enumerate(methods):
            c = sub[sub["method"] == m].sort_values("fraction")
            if c.empty:
                continue
            aucs[m].append(float(np.trapezoid(c["prob"].to_numpy(float), c["fraction"].to_numpy(float))))
            ax.plot(c["fraction"], c["prob"], label=m, **_method_style(m, i))
        ax.set_title(str(img), fontsize=_TITLE)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[len(images):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"), fontsize=8)
    for ax in axes[::ncols]:
        ax.set_ylabel("probability of the class", fontsize=8)
    handles, labels = [], []
    for i, m in enumerate(methods):
        handles.append(Line2D([], [], **_method_style(m, i)))
        labels.append(f"{_label(m)}  (AUC {np.mean(aucs[m]):.3f})" if aucs[m] else _label(m))
    better = "lower" if kind == "deletion" else "higher"
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title=f"mean AUC ({better} = better)", title_fontsize=8)
    fig.suptitle(title or f"{kind.capitalize()} curves", fontsize=_SUPTITLE)
    return fig


def plot_attack_losses(losses: Mapping[str, pd.DataFrame], title: str | None = None) -> Figure:
    """Attack optimisation curves: one row per attack; explanation loss (log scale), output loss, and β when it varies.

    Args:
        losses: attack → table with columns ``step, image`` and any of ``expl_loss, output_loss, beta``.
        title: figure title.

    Returns:
        The figure.
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
        df = losses[a]
        for j, (col, label) in enumerate(present):
            ax = axes[i, j]
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if col not in df.columns or not df[col].notna().any():
                ax.text(0.5, 0.5, f"no {label}", ha="center", va="center", fontsize=8, transform=ax.transAxes, color="gray")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                for k, (img, g) in enumerate(df.groupby("image", sort=False)):
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
            if i == 0:
                ax.set_title(label, fontsize=_TITLE)
            if i == len(attacks) - 1:
                ax.set_xlabel("step", fontsize=8)
        axes[i, 0].set_ylabel(_label(a), fontsize=_TITLE)
    handles = [Line2D([], [], color=f"C{k % 10}", linewidth=1.2) for k in range(len(images))]
    fig.legend(handles, [str(s) for s in images], loc="outside right upper", fontsize=8, title="image", title_fontsize=8)
    fig.suptitle(title or "Attack optimisation", fontsize=_SUPTITLE)
    return fig


# ----------------------------------------------------------------------------- transfer matrix


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
        matrix: rows = attack, columns = explanation method, values = a similarity averaged over images.
        title, value_label: figure title and colour-bar label.
        cmap, vmin, vmax: colour scale (``vmin`` None → min(0, smallest value)).

    Returns:
        The figure.
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
    for i in range(nr):
        for j in range(nc):
            v = values[i, j]
            if not np.isfinite(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="dimgray")
                continue
            rgba = cm((v - lo) / (hi - lo) if hi > lo else 0.5)
            light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.5
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if light else "white")
    for i, a in enumerate(matrix.index):
        if a in matrix.columns:
            j = list(matrix.columns).index(a)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#00b0f0", lw=2.2))
    ax.set_xticks(range(nc), [_label(c) for c in matrix.columns], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(nr), [_label(r) for r in matrix.index], fontsize=8)
    ax.set_xlabel("evaluated method (its map on x_adv)", fontsize=9)
    ax.set_ylabel("attack (method it was optimised against)", fontsize=9)
    cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    cb.set_label(value_label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=_SUPTITLE)
    return fig
