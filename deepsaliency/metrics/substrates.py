"""What deleted pixels become in deletion / insertion (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421).

``mean`` (the model's normalisation mean colour: the reference's zero in normalised space), ``zero`` (black)
or ``blur``: the reference implementation's own blur (``eclique/RISE`` ``evaluation.py``: ``gkern`` applied
with zero padding in normalised space), rebuilt from ``scipy.ndimage.gaussian_filter`` and a convolution;
see :mod:`.faithfulness` for how it differs from a truncated Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage
import torch
from torch import nn

from .._validate import check_choice, check_float, check_int
from ..errors import ParamError

#: Deletion substrates: what a deleted pixel becomes.
SUBSTRATES = ("mean", "zero", "blur")

#: The reference's settings (eclique/RISE evaluation notebook: step 224, ``gkern(klen=11, nsig=5)``).
REFERENCE_BLUR_KERNEL = 11
REFERENCE_BLUR_SIGMA = 5.0


def _check_blur(kernel: int, sigma: float, names: tuple[str, str] = ("kernel", "sigma")) -> tuple[int, float]:
    """``kernel`` as an odd int ≥ 1 and ``sigma`` as a float > 0; errors name ``names`` (the caller's arguments)."""
    odd = "an odd integer ≥ 1"
    k = check_int(kernel, names[0], 1, allowed=odd)
    if k % 2 == 0:
        raise ParamError(f"{names[0]}: {k} is not allowed ({odd})")
    return k, check_float(sigma, names[1], 0, low_open=True, allowed="a number > 0")


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
    kernel, sigma = _check_blur(kernel, sigma)
    impulse = np.zeros((int(kernel), int(kernel)))
    impulse[kernel // 2, kernel // 2] = 1.0
    return scipy.ndimage.gaussian_filter(impulse, float(sigma), mode="reflect", truncate=4.0)


def blur(
    x: torch.Tensor,
    kernel: int = REFERENCE_BLUR_KERNEL,
    sigma: float = REFERENCE_BLUR_SIGMA,
    mean: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
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


def substrate(
    model: nn.Module,
    x: torch.Tensor,
    kind: str = "mean",
    blur_kernel: int = REFERENCE_BLUR_KERNEL,
    blur_sigma: float = REFERENCE_BLUR_SIGMA,
) -> torch.Tensor:
    """What deleted pixels become: ``mean`` (the model's normalisation mean colour, the reference's
    zero in normalised space), ``zero`` (black) or ``blur`` (the reference's blur, :func:`blur`)."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return _mean_colour(model).to(x).reshape(1, -1, 1, 1).expand_as(x).clone()
    check_choice(kind, "kind", SUBSTRATES)
    _check_blur(blur_kernel, blur_sigma, ("blur_kernel", "blur_sigma"))
    return blur(x, blur_kernel, blur_sigma, _mean_colour(model))
