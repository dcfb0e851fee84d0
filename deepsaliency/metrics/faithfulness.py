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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import torch
from torch import nn

from ..errors import ParamError
from ..models import preserves_model_state
from .similarity import check_map

#: Deletion substrates: what a deleted pixel becomes.
SUBSTRATES = ("mean", "zero", "blur")

#: The reference's settings (eclique/RISE evaluation notebook: step 224, ``gkern(klen=11, nsig=5)``).
REFERENCE_BLUR_KERNEL = 11
REFERENCE_BLUR_SIGMA = 5.0

#: Default pixels per step: 224·8, i.e. 28 steps (29 model calls) per curve at 224².
DEFAULT_STEP = 224 * 8


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


def random_map(shape: tuple[int, int], seed: int = 0, key: str = "", cell: int = 1) -> np.ndarray:
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
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or not 1 <= cell <= min(shape):
        raise ParamError(f"faithfulness.random_cell: {cell!r} is not allowed (an integer in [1, {min(shape)}], the map's shorter side)")
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
    if cell == 1:
        return rng.random(tuple(shape), dtype=np.float64).astype(np.float32)
    h, w = shape
    grid = torch.from_numpy(rng.random((-(-h // cell), -(-w // cell)))).float()[None, None]
    return torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def pixel_ranks(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
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


def reference_kernel(kernel: int = REFERENCE_BLUR_KERNEL, sigma: float = REFERENCE_BLUR_SIGMA) -> np.ndarray:
    """The reference's 2-D blur kernel: ``gkern(klen=kernel, nsig=sigma)`` of eclique/RISE ``evaluation.py``.

    ``scipy.ndimage.gaussian_filter`` (σ = ``sigma``, its defaults ``mode="reflect"``,
    ``truncate=4``) of a unit impulse at the centre of a ``kernel``×``kernel`` grid
    (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421, evaluation code). When the
    Gaussian's support (radius ``round(4σ)``) exceeds the grid, the reflections fold its
    tails back in: at (11, 5) the kernel is nearly flat (corner/centre = 0.876), not the
    truncated Gaussian (corner/centre e⁻¹ = 0.37) that, e.g., torchvision's ``gaussian_blur`` uses.

    Args:
        kernel: side of the kernel, an odd integer ≥ 1 (the reference centres the impulse at ``kernel // 2``).
        sigma: σ of ``gaussian_filter`` in pixels, > 0.

    Returns:
        A float64 (kernel, kernel) array, non-negative, summing to 1 (reflection keeps the impulse's mass).

    Raises:
        ParamError: ``kernel`` is not an odd integer ≥ 1 or ``sigma`` is not a number > 0.
    """
    if isinstance(kernel, bool) or not isinstance(kernel, (int, np.integer)) or kernel < 1 or kernel % 2 == 0:
        raise ParamError(f"faithfulness.blur_kernel: {kernel!r} is not allowed (an odd integer ≥ 1)")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not np.isfinite(sigma) or sigma <= 0:
        raise ParamError(f"faithfulness.blur_sigma: {sigma!r} is not allowed (a number > 0)")
    impulse = np.zeros((int(kernel), int(kernel)))
    impulse[kernel // 2, kernel // 2] = 1.0
    return scipy.ndimage.gaussian_filter(impulse, float(sigma), mode="reflect", truncate=4.0)


def blur(x: torch.Tensor, kernel: int = REFERENCE_BLUR_KERNEL, sigma: float = REFERENCE_BLUR_SIGMA,
         mean: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """The insertion start: the reference's blurred copy of images (B, C, H, W) in [0, 1] pixels.

    The reference (eclique/RISE, ``Evaluation.ipynb``) blurs the ImageNet-*normalised* image
    ``(x − mean) / std`` by ``conv2d(·, gkern(kernel, sigma), padding=kernel // 2)``: each channel
    with :func:`reference_kernel`, zero padding. The kernel sums to 1 and acts per channel, so in pixel
    space that is ``mean + conv(x − mean)`` with zero padding — a blur whose border is padded with
    the mean colour — and ``std`` cancels. Computed here in that form with ``torch.nn.functional.conv2d``.

    Args:
        x: images (B, C, H, W) (or (C, H, W)) in [0, 1].
        kernel, sigma: see :func:`reference_kernel` (the reference's 11 and 5 by default).
        mean: the per-channel colour of the model's normalisation (C values), the padding colour;
            None = ImageNet's (0.485, 0.456, 0.406).

    Returns:
        A tensor shaped like ``x``, values within [0, 1] (convex combinations of pixels and ``mean``).

    Raises:
        ParamError: a bad ``kernel`` or ``sigma`` (see :func:`reference_kernel`), or ``mean`` not one value per channel.
    """
    k = torch.from_numpy(reference_kernel(kernel, sigma)).to(dtype=x.dtype, device=x.device)
    c = x.shape[-3]
    m = torch.as_tensor(_imagenet_mean() if mean is None else mean).to(dtype=x.dtype, device=x.device)
    if m.numel() != c:
        raise ParamError(f"mean: {m.numel()} values are not allowed (one per channel of x, {c})")
    m = m.reshape(-1, 1, 1)
    batch = x.reshape(-1, *x.shape[-3:])
    out = torch.nn.functional.conv2d(batch - m, k.expand(c, 1, *k.shape), padding=int(kernel) // 2, groups=c) + m
    return out.reshape(x.shape)


def _imagenet_mean() -> tuple[float, ...]:
    from ..models import IMAGENET_MEAN  # imported here: metrics must not load the model code at import

    return IMAGENET_MEAN


def _mean_colour(model: nn.Module) -> torch.Tensor:
    """The model's normalisation mean (C,), or ImageNet's for a model without one."""
    mean = getattr(model, "mean", None)
    return (mean if isinstance(mean, torch.Tensor) else torch.tensor(_imagenet_mean())).reshape(-1)


def substrate(model: nn.Module, x: torch.Tensor, kind: str = "mean", blur_kernel: int = REFERENCE_BLUR_KERNEL,
              blur_sigma: float = REFERENCE_BLUR_SIGMA) -> torch.Tensor:
    """What deleted pixels become: ``mean`` (the model's normalisation mean colour, the reference's
    zero in normalised space), ``zero`` (black) or ``blur`` (the reference's blur, :func:`blur`)."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return _mean_colour(model).to(x).reshape(1, -1, 1, 1).expand_as(x).clone()
    if kind == "blur":
        return blur(x, blur_kernel, blur_sigma, _mean_colour(model))
    raise ParamError(f"faithfulness.substrate: {kind!r} is not allowed (one of {', '.join(SUBSTRATES)})")


def _device(model: nn.Module) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer ≥ {lo}"
        raise ParamError(f"faithfulness.{name}: {value!r} is not allowed ({rng})")
    return int(value)


def causal_curve(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    saliency: np.ndarray,
    target: int,
    step: int = DEFAULT_STEP,
    batch_size: int = 16,
    seed: int = 0,
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
    step = _check_int("step", step, 1, hw)
    batch_size = _check_int("batch_size", batch_size, 1)
    device = _device(model)
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
    x = torch.as_tensor(x).float().reshape(1, *x.shape[-3:]).to(_device(model))
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
    substrate_kind: str = "mean",
    blur_kernel: int = REFERENCE_BLUR_KERNEL,
    blur_sigma: float = REFERENCE_BLUR_SIGMA,
    batch_size: int = 16,
    seed: int = 0,
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
    x, target = _prepare(model, x, target)
    finish = substrate(model, x, substrate_kind, blur_kernel, blur_sigma)
    return causal_curve(model, x, finish, saliency, target, step, batch_size, seed)


@preserves_model_state
def insertion(
    model: nn.Module,
    x: torch.Tensor,
    saliency: np.ndarray,
    target: int | None = None,
    step: int = DEFAULT_STEP,
    blur_kernel: int = REFERENCE_BLUR_KERNEL,
    blur_sigma: float = REFERENCE_BLUR_SIGMA,
    batch_size: int = 16,
    seed: int = 0,
) -> Curve:
    """Insertion curve and AUC (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421). Higher AUC = more faithful.

    Starts from the reference's blurred copy of ``x`` (:func:`blur`: ``gkern(blur_kernel, blur_sigma)``,
    mean-colour padding) and puts the original pixels back in order of decreasing saliency.
    Hand-written (see the module docstring). Arguments as for :func:`deletion`.

    Returns:
        A :class:`Curve` from the blurred image (fraction 0) to the image (fraction 1).
    """
    x, target = _prepare(model, x, target)
    start = blur(x, blur_kernel, blur_sigma, _mean_colour(model))
    return causal_curve(model, start, x, saliency, target, step, batch_size, seed)
