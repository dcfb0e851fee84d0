"""Arrays into what a figure draws: image and map layouts, colour norms, percentile scaling, perturbation gain.

Display conventions (the same in every figure):

* a **signed** attribution (raw Captum output summed over colour channels) is drawn on a diverging colour
  map centred at 0 by a symmetric :class:`~matplotlib.colors.TwoSlopeNorm` (white = 0, red = supports the
  class, blue = opposes it with ``seismic``);
* a **non-negative** map (``reduce_map``: |attribution| summed over channels, RISE, ReLU Grad-CAM) is drawn
  on a sequential colour map from 0;
* maps drawn side by side are each divided by their own scale (by default the 99.5th percentile of |map|,
  clipped at 1, see :func:`scaled`; 100 gives the maximum, the rule of
  :func:`deepsaliency.metrics.similarity.normalize_map`), so one colour bar serves a whole row: the figures
  compare the *shape* of maps, whose raw units differ by orders of magnitude between methods and between
  x and x_adv.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm

from ..errors import AttributionError, DeepSaliencyError


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor; torch is not imported here
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def as_image(image: Any, name: str = "image") -> np.ndarray:
    """An image as float (H, W, 3) in [0, 1].

    Args:
        image: uint8 (H, W, 3); float (H, W, 3) or (3, H, W) in [0, 1]; or a (1, 3, H, W) tensor.
        name: used in the error message.

    Returns:
        float64 (H, W, 3), clipped to [0, 1] (a one-channel image is repeated to three).

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
        raise DeepSaliencyError(
            f"{name}: shape {a.shape} is not allowed (an image (H, W, 3), (3, H, W) or (1, 3, H, W))"
        )
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    return np.clip(a, 0.0, 1.0)


def as_map(saliency: Any, name: str = "map") -> np.ndarray:
    """A saliency map as float (H, W); an attribution (C, H, W) or (1, C, H, W) is summed over channels (sign kept).

    Args:
        saliency: array or tensor, (H, W), (C, H, W) or (1, C, H, W).
        name: used in the error message.

    Returns:
        float64 (H, W).

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

    Args:
        saliency: a 2-D map.
        signed: clip to [-1, 1] (else [0, 1]).
        percentile: in (0, 100]; the divisor is this percentile of |map|.
        min_max: subtract the minimum first (ignored when ``signed``).

    Returns:
        float (H, W) in [0, 1] or [-1, 1].
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
    """How much to amplify a perturbation to see it: the largest 1-2-5 × 10^k factor with ``gain · linf ≤ target``.

    Args:
        linf: L∞ norm of the perturbation in [0, 1] image units.
        target: the largest amplified deviation from grey wanted.

    Returns:
        The gain, ≥ 1 (1 for a zero or already visible perturbation).
    """
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


def scale_label(percentile: float, signed: bool = False, min_max: bool = False) -> str:
    """The colour-bar label saying how the maps were scaled by :func:`scaled`."""
    what = "attribution ÷ " if signed else ("(map − min) ÷ " if min_max else "map ÷ ")
    what += ("max |·|" if signed else "its max") if percentile >= 100 else f"{percentile:g}th pct. of |·|"
    return what


def fmt(v: float | None, spec: str = ".2f") -> str:
    """A number for a title: ``n/a`` for None/NaN, never ``-0.00``."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    text = format(v, spec)
    return text[1:] if text.startswith("-") and float(text) == 0 else text
