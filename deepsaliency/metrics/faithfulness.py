"""Deletion and insertion: does the map rank the pixels the model actually uses?

Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for Explanation
of Black-box Models", https://arxiv.org/abs/1806.07421, section 4.1.

* **Deletion**: starting from the image, replace the ``step`` most salient
  pixels still present by a substrate (mean colour, black, or a blurred copy),
  again and again until none is left. A faithful map makes the probability of
  the class fall fast: *lower* AUC is better.
* **Insertion**: starting from a blurred copy (the reference's, :func:`blur`), put
  the original pixels back in the same order. A faithful map makes the probability rise fast:
  *higher* AUC is better.

The probability is the softmax probability of one fixed class (the class
predicted on the *original* image, also when the input is an adversarial
image). The curve has a point after every ``step`` pixels; its area is the
trapezoid rule over the fraction of pixels changed, x ∈ [0, 1].

Written here: Captum has no deletion/insertion metric and Quantus (not a kept
library) differs from the reference in substrate and AUC. Differences from the
reference implementation (``eclique/RISE`` ``evaluation.py``), all documented:

* the model takes [0, 1] pixels, so the reference's "zeros" substrate (zero in
  ImageNet-*normalised* space) is ``substrate="mean"`` here (the model's
  normalisation mean colour); ``"zero"`` is a black image;
* the blur is the reference's own (:func:`blur`, none other): its ``gkern(11, 5)``
  kernel (``scipy.ndimage.gaussian_filter`` of a centred unit impulse on an
  11×11 grid, which at σ 5 is a nearly flat filter, corner/centre 0.88) applied
  with zero padding in *normalised* space, i.e. padding with the model's mean
  colour in pixel space. It is not a truncated Gaussian of σ 5. On the three
  sample images the reference's own evaluation code (run on a CPU) gives the
  same insertion AUCs to 0.001 for maps without ties (see the README);
* pixels with equal saliency are ordered by a seeded random permutation (the
  reference's unstable ``np.argsort`` leaves that order to chance);
* the AUC uses the true fraction of pixels changed at each point, equal to
  the reference's uniform spacing whenever ``step`` divides H·W.

Every curve is computed in batches under ``torch.inference_mode``: all
``ceil(H·W / step) + 1`` images of one curve go through the model
``batch_size`` at a time.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validate import check_choice, check_int
from ..errors import ParamError
from ..models import model_device, preserves_model_state
from ..params import DEFAULTS as D  # the one default of each parameter: the params section's
from .maps import check_map
from .substrates import REFERENCE_BLUR_KERNEL as REFERENCE_BLUR_KERNEL
from .substrates import REFERENCE_BLUR_SIGMA as REFERENCE_BLUR_SIGMA
from .substrates import SUBSTRATES as SUBSTRATES
from .substrates import _check_blur, _mean_colour
from .substrates import blur as blur
from .substrates import reference_kernel as reference_kernel
from .substrates import substrate as substrate

#: Default pixels per step: 224·8, i.e. 28 steps (29 model calls) per curve at 224².
DEFAULT_STEP = D.faithfulness.step


@dataclass(frozen=True)
class Curve:
    """One deletion or insertion curve.

    Attributes:
        fractions: fraction of pixels changed at each point, from 0 to 1 (n + 1 points).
        probs: softmax probability of the class at each point.
        auc: trapezoid area under ``probs`` over ``fractions``.
    """

    fractions: np.ndarray
    probs: np.ndarray
    auc: float


def auc(fractions: np.ndarray, probs: np.ndarray) -> float:
    """Trapezoid area under a curve sampled at ``fractions`` (``numpy.trapezoid``)."""
    return float(np.trapezoid(np.asarray(probs, dtype=np.float64), np.asarray(fractions, dtype=np.float64)))


def random_map(shape: tuple[int, int], seed: int = D.faithfulness.seed, key: str = "", cell: int = 1) -> np.ndarray:
    """The baseline map: uniform noise, seeded by ``seed`` and ``key`` (e.g. the image name).

    A random ranking of the pixels is what every method must beat. The same
    ``(seed, key, cell)`` always gives the same map, independently of call order.

    Args:
        shape: (H, W).
        seed, key: what the noise is drawn from.
        cell: 1 = i.i.d. noise per pixel (the usual baseline). Larger values draw
            one value per ``cell``×``cell`` block and upsample bilinearly, a
            random map as smooth as Grad-CAM/RISE/occlusion maps: scattered
            single-pixel deletion is itself destructive for CNNs, so pixel
            noise is a hard deletion baseline for blob-like maps.
    """
    cell = check_int(cell, "cell", 1, min(shape), why="the map's shorter side")
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
    if cell == 1:
        return rng.random(tuple(shape), dtype=np.float64).astype(np.float32)
    h, w = shape
    grid = torch.from_numpy(rng.random((-(-h // cell), -(-w // cell)))).float()[None, None]
    return torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def pixel_ranks(saliency: np.ndarray, seed: int = D.faithfulness.seed) -> np.ndarray:
    """Rank of every pixel (row-major), 0 = most salient.

    Ties are ordered by a random permutation drawn from ``seed``, so a plateau
    (all-zero regions of Grad-CAM, a constant map) is visited in no spatial
    order (raster order would systematically delete the top rows first).
    """
    flat = check_map(saliency).ravel()
    jitter = np.random.default_rng(int(seed)).permutation(flat.size)
    order = np.lexsort((jitter, -flat))  # last key sorts first: by decreasing saliency, then jitter
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks


def causal_curve(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    saliency: np.ndarray,
    target: int,
    step: int = DEFAULT_STEP,
    batch_size: int = D.faithfulness.batch_size,
    seed: int = D.faithfulness.seed,
) -> Curve:
    """The probability of ``target`` while the pixels of ``start`` become those of ``finish``.

    Pixels are changed ``step`` at a time in order of decreasing ``saliency``
    (all channels of a pixel together). Point ``i`` has the ``min(i·step, H·W)``
    top-ranked pixels changed, for ``i = 0 … ceil(H·W / step)``.

    Args:
        model: a classifier returning logits; images are fed in [0, 1] as given.
        start, finish: images (1, 3, H, W) or (3, H, W).
        saliency: a non-negative map (H, W).
        target: the class whose softmax probability is tracked.
        step: pixels changed per point, 1 ≤ step ≤ H·W.
        batch_size: images per forward pass.
        seed: tie-breaking seed (:func:`pixel_ranks`).

    Returns:
        A :class:`Curve`.
    """
    start = start.reshape(1, *start.shape[-3:])
    finish = finish.reshape(1, *finish.shape[-3:])
    h, w = start.shape[-2:]
    hw = h * w
    if np.shape(saliency) != (h, w):
        raise ParamError(f"saliency: shape {np.shape(saliency)} does not match the image ({h}, {w})")
    step = check_int(step, "step", 1, hw)
    batch_size = check_int(batch_size, "batch_size", 1)
    device = model_device(model)
    ranks = torch.from_numpy(pixel_ranks(saliency, seed)).to(device).reshape(1, 1, h, w)
    start, finish = start.to(device), finish.to(device)
    counts = torch.tensor([min(i * step, hw) for i in range(-(-hw // step) + 1)], device=device)
    probs = []
    with torch.inference_mode():
        for i in range(0, len(counts), batch_size):
            c = counts[i : i + batch_size].reshape(-1, 1, 1, 1)
            images = torch.where(ranks < c, finish, start).contiguous(memory_format=torch.channels_last)
            probs.append(model(images).float().softmax(-1)[:, int(target)].double().cpu())
    fractions = counts.double().cpu().numpy() / hw
    p = torch.cat(probs).numpy()
    return Curve(fractions, p, auc(fractions, p))


def _prepare(model: nn.Module, x: torch.Tensor, target: int | None) -> tuple[torch.Tensor, int]:
    x = torch.as_tensor(x).float().reshape(1, *x.shape[-3:]).to(model_device(model))
    if target is None:
        with torch.inference_mode():
            target = int(model(x).argmax(-1))
    return x, int(target)


@preserves_model_state
def deletion(
    model: nn.Module,
    x: torch.Tensor,
    saliency: np.ndarray,
    target: int | None = None,
    step: int = DEFAULT_STEP,
    substrate_kind: str = D.faithfulness.substrate,
    blur_kernel: int = REFERENCE_BLUR_KERNEL,
    blur_sigma: float = REFERENCE_BLUR_SIGMA,
    batch_size: int = D.faithfulness.batch_size,
    seed: int = D.faithfulness.seed,
) -> Curve:
    """Deletion curve and AUC (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421). Lower AUC = more faithful.

    Hand-written (see the module docstring for how it follows the reference).

    Args:
        model: a classifier taking (B, 3, H, W) in [0, 1], returning logits.
        x: the image (1, 3, H, W) or (3, H, W) in [0, 1].
        saliency: a non-negative map (H, W) ranking the pixels.
        target: the class to track; None = the class the model predicts on ``x``.
            For an adversarial image pass the class predicted on the original.
        step: pixels deleted per step.
        substrate_kind: ``mean`` (default, the reference's), ``zero`` or ``blur``.
        blur_kernel, blur_sigma: the blur of the ``blur`` substrate.
        batch_size: images per forward pass.
        seed: tie-breaking seed.

    Returns:
        A :class:`Curve` from the image (fraction 0) to the substrate (fraction 1).
    """
    check_choice(substrate_kind, "substrate_kind", SUBSTRATES)
    x, target = _prepare(model, x, target)
    finish = substrate(model, x, substrate_kind, blur_kernel, blur_sigma)
    return causal_curve(model, x, finish, saliency, target, step, batch_size, seed)


@preserves_model_state
def insertion(  # deletion's arguments but the substrate, kept compact
    model: nn.Module, x: torch.Tensor, saliency: np.ndarray, target: int | None = None,
    step: int = DEFAULT_STEP, blur_kernel: int = REFERENCE_BLUR_KERNEL, blur_sigma: float = REFERENCE_BLUR_SIGMA,
    batch_size: int = D.faithfulness.batch_size, seed: int = D.faithfulness.seed,
) -> Curve:  # fmt: skip
    """Insertion curve and AUC (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421). Higher AUC = more faithful.

    Starts from the reference's blurred copy of ``x`` (:func:`blur`: ``gkern(blur_kernel, blur_sigma)``,
    mean-colour padding) and puts the original pixels back in order of decreasing saliency.
    Hand-written (see the module docstring). Arguments as for :func:`deletion`.

    Returns:
        A :class:`Curve` from the blurred image (fraction 0) to the image (fraction 1).
    """
    x, target = _prepare(model, x, target)
    _check_blur(blur_kernel, blur_sigma, ("blur_kernel", "blur_sigma"))
    start = blur(x, blur_kernel, blur_sigma, _mean_colour(model))
    return causal_curve(model, start, x, saliency, target, step, batch_size, seed)
