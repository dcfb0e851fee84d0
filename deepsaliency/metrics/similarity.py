"""How similar two saliency maps are: one function per metric.

Every map is 2-D and non-negative (see :func:`deepsaliency.attribution.reduce_map`).
Two scalings, each per map, so the metrics compare the *shape* of two maps, not
their units (the un-normalised magnitudes of, say, Integrated Gradients on
``x`` and on ``x_adv`` can differ by orders of magnitude):

* :func:`ssim`, :func:`mse`, :func:`psnr` compare pixel *values*, so each map is
  first rescaled min–max to [0, 1] (:func:`min_max_map`; a constant map becomes
  all zeros) and the metrics use ``data_range=1``. Dividing by the maximum
  alone (:func:`normalize_map`, the rule before) leaves a map's constant offset
  in place: a RISE map's minimum is 0.5–0.84 of its maximum on the sample images,
  so any two RISE maps got an SSIM of 0.89–0.93 (0.49–0.70 after min–max; Quantus'
  convention, see :func:`ssim`, gives 0.76–0.82). Gradient, occlusion and Grad-CAM
  maps have minima ≈ 0, so min–max leaves their values (SSIM within 0.007).
* :func:`pearson`, :func:`spearman`, :func:`top_k_intersection` do not change
  under a positive rescaling or an offset; :func:`center_of_mass_shift` is defined
  on the map's own values (an offset would pull every centre to the image centre).
  They use the maps divided by their maximum (:func:`normalize_map`), as before.

No metric is ever NaN or infinite. Where a textbook formula is undefined the
value is fixed and documented on the function:

==================  ============================================================
metric              defined value for degenerate input
==================  ============================================================
:func:`ssim`        always finite (``data_range=1`` keeps its constants > 0);
                    two maps equal after :func:`min_max_map` give 1 (e.g. a map
                    and ``3 + 2·map``, or any two constant maps)
:func:`psnr`        capped at :data:`PSNR_CAP` = 100 dB (MSE = 0)
:func:`pearson`     0 when either map is constant (zero variance)
:func:`spearman`    0 when either map is constant
:func:`top_k_intersection`  ties ranked by raster order (row-major index)
:func:`center_of_mass_shift` an all-zero map's centre is the image centre
==================  ============================================================

Library functions do the work where one exists (skimage.metrics,
skimage.exposure, scipy.stats, scipy.ndimage); the top-k intersection (Ghorbani et al. 2019) and the
centre-of-mass shift are a few lines of numpy, written here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.ndimage
import scipy.stats
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from .._validate import check_int
from ..errors import ParamError
from .maps import _as_numpy, _checked_pair, _max_scaled, _min_max, _pair, _value_pair

# Defined in .maps; importable from here as before (tables, faithfulness, sanity and the tests use these paths).
from .maps import _constant as _constant
from .maps import check_map as check_map
from .maps import min_max_map as min_max_map
from .maps import normalize_map as normalize_map

#: PSNR (dB) reported when two maps are identical (MSE = 0), and the ceiling for every PSNR.
#: 100 dB corresponds to MSE = 1e-10 on [0, 1] maps, far below float32 resolution of a map.
PSNR_CAP = 100.0

#: Smallest map side skimage's default 7×7 SSIM window fits in.
SSIM_MIN_SIDE = 7

#: Every map metric, in the order tables report them.
MAP_METRICS = ("ssim", "mse", "psnr", "pearson", "spearman", "top_k", "com_shift")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps rescaled min–max (Wang et al. 2004, https://doi.org/10.1109/TIP.2003.819861).

    Each map goes through :func:`min_max_map`, then ``skimage.metrics.structural_similarity``
    with ``data_range=1`` (the range of every rescaled, non-constant map) and its default 7×7
    uniform window. The value does not change when a map is multiplied by a positive number or
    shifted by a constant. Finite for every input: the stabilising constants ``(0.01)²`` and
    ``(0.03)²`` are positive.

    Differs from Quantus (``quantus.functions.similarity_func.ssim``), which passes the maps as
    given — by default after its ``normalise_by_max``, so with their offsets — and sets
    ``data_range`` to the pair's joint range ``max(a, b) − min(a, b)``: its value depends on the
    offsets. Two maps in [0.4, 1] rather than [0, 1] score higher there (the luminance term
    ``(2·μa·μb + C1) / (μa² + μb² + C1)`` is near 1 for any two large means) and the same here.

    Args:
        a, b: non-negative 2-D maps of the same shape, each side ≥ 7.

    Returns:
        SSIM in [-1, 1]; 1 for maps equal after :func:`min_max_map`.

    Raises:
        AttributionError: a map is not 2-D, not finite or negative (:func:`check_map`).
        ParamError: the shapes differ or a side is < 7.
    """
    return _ssim(*_value_pair(a, b))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < SSIM_MIN_SIDE:
        raise ParamError(f"maps: shape {a.shape} is too small for SSIM (each side must be ≥ {SSIM_MIN_SIDE})")
    return float(structural_similarity(a, b, data_range=1.0))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two maps rescaled min–max (:func:`min_max_map`; ``skimage.metrics.mean_squared_error``).

    Returns:
        MSE in [0, 1]; 0 for maps equal after :func:`min_max_map`.

    Raises:
        AttributionError, ParamError: as for :func:`ssim`.
    """
    return _mse(*_value_pair(a, b))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(mean_squared_error(a, b))


def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    """Peak signal-to-noise ratio of two maps rescaled min–max (:func:`min_max_map`), ``data_range=1``, in dB.

    ``skimage.metrics.peak_signal_noise_ratio``; identical maps (MSE = 0)
    would give +inf, so every value is capped at ``cap`` (default 100 dB).

    Returns:
        PSNR in [0, cap].

    Raises:
        AttributionError, ParamError: as for :func:`ssim`.
    """
    return _psnr(*_value_pair(a, b), cap=cap)


def _psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    if mean_squared_error(a, b) == 0:
        return float(cap)
    return float(min(cap, peak_signal_noise_ratio(a, b, data_range=1.0)))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the pixels of two maps (``scipy.stats.pearsonr``).

    Undefined when a map is constant (zero variance, e.g. all zero); it is
    then reported as 0: no linear association can be measured.

    Returns:
        r in [-1, 1].
    """
    return _pearson(*_pair(a, b))


def _correlation(test: Callable[..., Any], a: np.ndarray, b: np.ndarray) -> float:
    """``test``'s statistic (scipy's ``pearsonr`` or ``spearmanr``) on the pixels, 0 for a constant map."""
    if _constant(a) or _constant(b):
        return 0.0
    return float(np.clip(test(a.ravel(), b.ravel()).statistic, -1.0, 1.0))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return _correlation(scipy.stats.pearsonr, a, b)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the pixels of two maps (``scipy.stats.spearmanr``).

    Ties get average ranks (scipy's default). A constant map gives 0, as for
    :func:`pearson`.

    Returns:
        ρ in [-1, 1].
    """
    return _spearman(*_pair(a, b))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return _correlation(scipy.stats.spearmanr, a, b)


def top_k_pixels(saliency: np.ndarray, k: int) -> np.ndarray:
    """Flat (row-major) indices of the ``k`` largest pixels of a map.

    Ties are ranked by raster order (the lower flat index first), so the set is
    deterministic even for maps with plateaus (e.g. Grad-CAM's zeros).
    """
    return _top_k_pixels(check_map(saliency), k)


def _top_k_pixels(m: np.ndarray, k: int, name: str = "k") -> np.ndarray:
    k = check_int(k, name, 1, m.size, why="the pixels of a map")
    flat = m.ravel()
    # Same set as a stable descending argsort, in O(H·W): everything above the k-th value, then ties in raster order.
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    above = np.flatnonzero(flat > kth)
    return np.concatenate([above, np.flatnonzero(flat == kth)[: k - above.size]])


def top_k_intersection(a: np.ndarray, b: np.ndarray, k: int = 1000) -> float:
    """Fraction of the ``k`` most salient pixels the two maps share.

    Ghorbani, Abid & Zou (2019), "Interpretation of Neural Networks is
    Fragile", https://arxiv.org/abs/1710.10547 (k = 1000 at 224²). Written
    here: no kept library computes it. Ties: see :func:`top_k_pixels`.

    Args:
        a, b: non-negative 2-D maps of the same shape.
        k: how many top pixels to compare, 1 ≤ k ≤ H·W.

    Returns:
        |top_k(a) ∩ top_k(b)| / k, in [0, 1].
    """
    return _top_k_intersection(*_pair(a, b), k=k)


def _top_k_intersection(a: np.ndarray, b: np.ndarray, k: int, name: str = "k") -> float:
    """``name``: the caller's argument that ``k`` came from, for the error message."""
    shared = np.intersect1d(_top_k_pixels(a, k, name), _top_k_pixels(b, k, name), assume_unique=True)
    return float(len(shared) / k)


def center_of_mass(saliency: np.ndarray) -> np.ndarray:
    """Centre of mass (row, col) of a non-negative map, in pixels (``scipy.ndimage.center_of_mass``).

    An all-zero map has no mass; its centre is defined as the image centre
    ((H - 1) / 2, (W - 1) / 2).
    """
    return _center_of_mass(check_map(saliency))


def _center_of_mass(m: np.ndarray) -> np.ndarray:
    if m.sum() == 0:
        return np.array([(m.shape[0] - 1) / 2, (m.shape[1] - 1) / 2])
    return np.asarray(scipy.ndimage.center_of_mass(m), dtype=np.float64)


def center_of_mass_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance in pixels between the centres of mass of two maps.

    Written here (a subtraction on top of :func:`center_of_mass`). The shift
    does not depend on a map's scale, so normalising does not change it.

    Returns:
        The distance in pixels, ≥ 0.
    """
    return _center_of_mass_shift(*_pair(a, b))


def _center_of_mass_shift(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(_center_of_mass(a) - _center_of_mass(b)))


def compare_maps(a: np.ndarray, b: np.ndarray, top_k: int = 1000) -> dict[str, float]:
    """Every map metric of :data:`MAP_METRICS` for one pair of maps.

    Args:
        a, b: non-negative 2-D maps of the same shape.
        top_k: ``k`` of :func:`top_k_intersection`.

    Returns:
        ``{metric: value}``, every value finite. SSIM, MSE and PSNR on the maps rescaled min–max
        (:func:`min_max_map`), the others on the maps divided by their maximum (:func:`normalize_map`).
    """
    a, b = _checked_pair(_as_numpy(a), _as_numpy(b))  # validated once for all seven
    va, vb = _min_max(a), _min_max(b)
    a, b = _max_scaled(a), _max_scaled(b)
    return {
        "ssim": _ssim(va, vb),
        "mse": _mse(va, vb),
        "psnr": _psnr(va, vb),
        "pearson": _pearson(a, b),
        "spearman": _spearman(a, b),
        "top_k": _top_k_intersection(a, b, top_k, "top_k"),
        "com_shift": _center_of_mass_shift(a, b),
    }


def compute_metrics(org_expl: np.ndarray, adv_expl: np.ndarray) -> tuple[float, float, float]:
    """The seed's API: ``ssim, mse, psnr = compute_metrics(org_expl, adv_expl)``.

    Unlike the seed (1-D vectors, one ``data_range`` shared by every pair),
    the maps are 2-D and each is rescaled min–max by :func:`min_max_map`, the rule of
    :func:`ssim`, :func:`mse`, :func:`psnr` and :func:`compare_maps`.

    Args:
        org_expl, adv_expl: non-negative 2-D maps (numpy arrays or CPU tensors) of the same shape.

    Returns:
        ``(ssim, mse, psnr)`` — see :func:`ssim`, :func:`mse`, :func:`psnr`.
    """
    a, b = _value_pair(_as_numpy(org_expl), _as_numpy(adv_expl))
    return _ssim(a, b), _mse(a, b), _psnr(a, b)
