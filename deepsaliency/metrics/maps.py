"""One saliency map, checked and scaled: what every map metric starts from.

A map is 2-D, finite and non-negative (see :func:`deepsaliency.attribution.reduce_map`). The two scalings,
each per map, are the rules of :mod:`.similarity`: divide by the maximum (:func:`normalize_map`; rank and
centre metrics, plots) or rescale min–max (:func:`min_max_map`; SSIM, MSE, PSNR).
"""

from __future__ import annotations

import numpy as np
from skimage.exposure import rescale_intensity

from ..errors import AttributionError, ParamError


def check_map(saliency: np.ndarray, method: str = "map", image: str = "?") -> np.ndarray:
    """Validate one saliency map and return it as float64.

    Args:
        saliency: a 2-D array (H, W).
        method, image: names used in the error message.

    Returns:
        The map as a float64 array.

    Raises:
        AttributionError: the map has NaN/infinite or negative values, or is not 2-D.
    """
    m = np.asarray(saliency, dtype=np.float64)
    if m.ndim != 2:
        raise AttributionError(f"{method}: {image}: map has shape {m.shape}; a saliency map must be 2-D (H, W)")
    bad = int((~np.isfinite(m)).sum())
    if bad:
        raise AttributionError(
            f"{method}: {image}: map has {bad} NaN/infinite values (of {m.size}); refusing to use it"
        )
    if (m < 0).any():
        raise AttributionError(
            f"{method}: {image}: map has negative values (min {m.min():.3g}); "
            "maps must be non-negative (see reduce_map)"
        )
    return m


def normalize_map(saliency: np.ndarray) -> np.ndarray:
    """Scale a non-negative map to [0, 1] by dividing by its maximum (a constant offset stays).

    An all-zero map stays all zero (there is no maximum to divide by). The rule of the
    rank and centre metrics (:func:`pearson`, :func:`spearman`, :func:`top_k_intersection`,
    :func:`center_of_mass_shift`) and of the plots; SSIM, MSE and PSNR use :func:`min_max_map`.

    Args:
        saliency: a non-negative 2-D map.

    Returns:
        A float64 map with maximum 1 (or all zeros).

    Raises:
        AttributionError: see :func:`check_map`.
    """
    return _max_scaled(check_map(saliency))


def min_max_map(saliency: np.ndarray) -> np.ndarray:
    """Rescale a non-negative map min–max to [0, 1]: ``(m − min) / (max − min)``.

    ``skimage.exposure.rescale_intensity`` with ``out_range=(0, 1)``. The rule of
    :func:`ssim`, :func:`mse` and :func:`psnr`: it removes a map's constant offset, which
    dividing by the maximum keeps (RISE's saliency is a mean class probability, everywhere
    far above 0), so the three metrics compare the shapes of two maps the same way for every
    method. A constant map (max = min, e.g. all zero) has no shape and no range: it becomes
    all zeros, like an all-zero map, so two constant maps are identical (SSIM 1, MSE 0).

    Args:
        saliency: a non-negative 2-D map.

    Returns:
        A float64 map with minimum 0 and maximum 1, or all zeros for a constant map.

    Raises:
        AttributionError: see :func:`check_map`.
    """
    return _min_max(check_map(saliency))


def _max_scaled(m: np.ndarray) -> np.ndarray:
    top = m.max()
    return m / top if top > 0 else m


def _constant(m: np.ndarray) -> bool:
    return bool(m.max() == m.min())


def _min_max(m: np.ndarray) -> np.ndarray:
    if _constant(m):
        return np.zeros_like(m)
    return rescale_intensity(m, in_range="image", out_range=(0.0, 1.0))


def _checked_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_map(a), check_map(b)
    if a.shape != b.shape:
        raise ParamError(f"maps: shapes {a.shape} and {b.shape} differ; compare maps of the same size")
    return a, b


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated maps divided by their maximum (rank and centre metrics)."""
    a, b = _checked_pair(a, b)
    return _max_scaled(a), _max_scaled(b)


def _value_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated maps rescaled min–max (SSIM, MSE, PSNR)."""
    a, b = _checked_pair(a, b)
    return _min_max(a), _min_max(b)


def _as_numpy(m) -> np.ndarray:
    if hasattr(m, "detach"):  # a torch tensor
        m = m.detach().cpu().numpy()
    return np.asarray(m)
