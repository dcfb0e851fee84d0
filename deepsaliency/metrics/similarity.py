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

import numpy as np
import scipy.ndimage
import scipy.stats
from skimage.exposure import rescale_intensity
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ..errors import AttributionError, ParamError

#: PSNR (dB) reported when two maps are identical (MSE = 0), and the ceiling for every PSNR.
#: 100 dB corresponds to MSE = 1e-10 on [0, 1] maps, far below float32 resolution of a map.
PSNR_CAP = 100.0

#: Smallest map side skimage's default 7×7 SSIM window fits in.
SSIM_MIN_SIDE = 7

#: Every map metric, in the order tables report them.
MAP_METRICS = ("ssim", "mse", "psnr", "pearson", "spearman", "top_k", "com_shift")


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
        raise AttributionError(f"{method}: {image}: map has {bad} NaN/infinite values (of {m.size}); refusing to use it")
    if (m < 0).any():
        raise AttributionError(
            f"{method}: {image}: map has negative values (min {m.min():.3g}); maps must be non-negative (see reduce_map)"
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


def _constant(m: np.ndarray) -> bool:
    return bool(m.max() == m.min())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the pixels of two maps (``scipy.stats.pearsonr``).

    Undefined when a map is constant (zero variance, e.g. all zero); it is
    then reported as 0: no linear association can be measured.

    Returns:
        r in [-1, 1].
    """
    return _pearson(*_pair(a, b))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if _constant(a) or _constant(b):
        return 0.0
    return float(np.clip(scipy.stats.pearsonr(a.ravel(), b.ravel()).statistic, -1.0, 1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the pixels of two maps (``scipy.stats.spearmanr``).

    Ties get average ranks (scipy's default). A constant map gives 0, as for
    :func:`pearson`.

    Returns:
        ρ in [-1, 1].
    """
    return _spearman(*_pair(a, b))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if _constant(a) or _constant(b):
        return 0.0
    return float(np.clip(scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic, -1.0, 1.0))


def top_k_pixels(saliency: np.ndarray, k: int) -> np.ndarray:
    """Flat (row-major) indices of the ``k`` largest pixels of a map.

    Ties are ranked by raster order (the lower flat index first), so the set is
    deterministic even for maps with plateaus (e.g. Grad-CAM's zeros).
    """
    return _top_k_pixels(check_map(saliency), k)


def _top_k_pixels(m: np.ndarray, k: int) -> np.ndarray:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= m.size:
        raise ParamError(f"metrics.top_k: {k!r} is not allowed (an integer in [1, {m.size}], the pixels of a map)")
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


def _top_k_intersection(a: np.ndarray, b: np.ndarray, k: int) -> float:
    shared = np.intersect1d(_top_k_pixels(a, k), _top_k_pixels(b, k), assume_unique=True)
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
        "top_k": _top_k_intersection(a, b, top_k),
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


def _as_numpy(m) -> np.ndarray:
    if hasattr(m, "detach"):  # a torch tensor
        m = m.detach().cpu().numpy()
    return np.asarray(m)
