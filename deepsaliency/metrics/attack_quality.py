"""How visible an attack is and what it does to the prediction: one function per quantity.

Images are float arrays (3, H, W) in [0, 1] pixel space (the artifact contract).
Perturbation norms are reported in [0, 255] units so they read like the
ε budgets of the attack literature (e.g. L∞ = 8 means 8/255).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ..errors import DeepSaliencyError
from .similarity import PSNR_CAP

#: Columns of :func:`attack_quality`, in table order.
QUALITY_METRICS = ("top1_kept", "prob_orig", "prob_adv", "prob_change", "l2_255", "linf_255", "psnr", "ssim")


def _images(x: np.ndarray, x_adv: np.ndarray, name: str = "x_adv") -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    x_adv = np.asarray(x_adv, dtype=np.float64)
    if x.shape != x_adv.shape or x.ndim != 3 or x.shape[0] != 3:
        raise DeepSaliencyError(
            f"{name}: shape {x_adv.shape} does not match the image {x.shape}; both must be (3, H, W)"
        )
    if not (np.isfinite(x_adv).all() and np.isfinite(x).all()):
        raise DeepSaliencyError(f"{name}: has NaN/infinite pixels; an adversarial image must be finite in [0, 1]")
    return x, x_adv


def perturbation_l2(x: np.ndarray, x_adv: np.ndarray) -> float:
    """L2 norm of ``x_adv - x`` over all 3·H·W values, in [0, 255] units."""
    x, x_adv = _images(x, x_adv)
    return float(np.linalg.norm((x_adv - x).ravel()) * 255.0)


def perturbation_linf(x: np.ndarray, x_adv: np.ndarray) -> float:
    """L∞ norm (largest absolute change of one channel value) of ``x_adv - x``, in [0, 255] units."""
    x, x_adv = _images(x, x_adv)
    return float(np.abs(x_adv - x).max() * 255.0)


def image_psnr(x: np.ndarray, x_adv: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR (dB) of ``x_adv`` against ``x``, ``data_range=1`` (skimage); identical images give ``cap``."""
    x, x_adv = _images(x, x_adv)
    if mean_squared_error(x, x_adv) == 0:
        return float(cap)
    return float(min(cap, peak_signal_noise_ratio(x, x_adv, data_range=1.0)))


def image_ssim(x: np.ndarray, x_adv: np.ndarray) -> float:
    """SSIM of ``x_adv`` against ``x`` (skimage, ``data_range=1``, ``channel_axis=0``, 7×7 window)."""
    x, x_adv = _images(x, x_adv)
    return float(structural_similarity(x, x_adv, data_range=1.0, channel_axis=0))


def attack_quality(
    x: np.ndarray, x_adv: np.ndarray, label_orig: int, label_adv: int, prob_orig: float, prob_adv: float
) -> dict[str, float]:
    """Every attack-quality number for one image and one attack.

    Args:
        x, x_adv: the image and its attacked version, (3, H, W) in [0, 1].
        label_orig: the class predicted on ``x`` (the "true" class here).
        label_adv: the class predicted on ``x_adv``.
        prob_orig: softmax probability of ``label_orig`` on ``x``.
        prob_adv: softmax probability of ``label_orig`` (not ``label_adv``) on ``x_adv``.

    Returns:
        ``top1_kept`` (1.0 if ``label_adv == label_orig`` else 0.0), ``prob_orig``,
        ``prob_adv``, ``prob_change`` (``prob_adv - prob_orig``), ``l2_255``,
        ``linf_255``, ``psnr`` and ``ssim`` (see the functions above).
    """
    for name, p in (("prob_orig", prob_orig), ("prob_adv", prob_adv)):
        if not (np.isfinite(p) and 0.0 <= p <= 1.0):
            raise DeepSaliencyError(f"{name}: {p!r} is not a probability (a number in [0, 1])")
    return {
        "top1_kept": float(int(label_adv) == int(label_orig)),
        "prob_orig": float(prob_orig),
        "prob_adv": float(prob_adv),
        "prob_change": float(prob_adv) - float(prob_orig),
        "l2_255": perturbation_l2(x, x_adv),
        "linf_255": perturbation_linf(x, x_adv),
        "psnr": image_psnr(x, x_adv),
        "ssim": image_ssim(x, x_adv),
    }


def success_rate(labels_orig, labels_adv) -> float:
    """Fraction of images whose top-1 class changed (PGD's success: the label flipped).

    Args:
        labels_orig, labels_adv: top-1 classes on the originals and on the attacked images.

    Returns:
        A fraction in [0, 1].
    """
    a, b = np.asarray(labels_orig).ravel(), np.asarray(labels_adv).ravel()
    if a.shape != b.shape or a.size == 0:
        raise DeepSaliencyError(
            f"labels: {a.size} original and {b.size} adversarial labels; need the same non-zero count"
        )
    return float((a != b).mean())
