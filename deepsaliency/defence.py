"""β-smoothed explanations: the defence of Dombrowski et al. (2019), section 5, as methods of their own.

Dombrowski et al., "Explanations can be manipulated and geometry is to blame", NeurIPS 2019,
https://arxiv.org/abs/1906.07983, bound how far an explanation can be manipulated by the curvature of
the network's output manifold, and propose to explain the *β-smoothed* network instead: every ReLU
becomes ``softplus_β(x) = log(1 + exp(βx)) / β`` (ReLU6 its two-sided analogue), whose curvature is
bounded by β. The classifier itself is unchanged; only the explanation is computed on the smoothed copy.
Smaller β is smoother (more robust, further from the original explanation); as β → ∞ the smoothed
explanation tends to the original one.

=================================  =======================================  =====================
method                             Captum on the softplus-β network          attribution
=================================  =======================================  =====================
``saliency_smoothed``              ``Saliency`` (``abs``)                     (B, 3, H, W)
``input_x_gradient_smoothed``      ``InputXGradient``                         (B, 3, H, W), signed
``integrated_gradients_smoothed``  ``IntegratedGradients``, black baseline    (B, 3, H, W), signed
=================================  =======================================  =====================

Each has the signature of :mod:`deepsaliency.attribution`'s private methods,
``(model, x, target, beta=..., **params) -> attribution``, and is reached through
``attribute(model, x, "<method>", target, beta=...)``; maps reduce like the unsmoothed methods
(sum over channels of ``|·|``). The activation swap is :func:`~deepsaliency.nn.softplus.softplus_activations`
(module activations) plus :func:`~deepsaliency.nn.softplus.functional_softplus` (``F.relu``-style calls
inside ``forward``); both are undone on exit, even by an exception. Only this glue is written here.

:data:`DEFENCES` pairs each defended method with the method it defends, SmoothGrad (Smilkov et al.
2017, the other smoothing defence) included, for the report's with/without-defence table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from captum.attr import InputXGradient, Saliency
from torch import nn

from ._validate import check_float, check_int
from .errors import ParamError
from .nn.softplus import functional_softplus, softplus_activations
from .params import DEFAULTS as D  # the one default of each parameter: the params section's
from .params import section_defaults

#: The β-smoothed methods of this module, in report order.
DEFENCE_METHODS = ("saliency_smoothed", "input_x_gradient_smoothed", "integrated_gradients_smoothed")

#: defended method → the unsmoothed method it defends (SmoothGrad smooths saliency by noise instead of β).
DEFENCES = {
    "saliency_smoothed": "saliency",
    "input_x_gradient_smoothed": "input_x_gradient",
    "integrated_gradients_smoothed": "integrated_gradients",
    "smoothgrad": "saliency",
}


def check_beta(beta: Any, name: str = "beta") -> float:
    """``beta`` as a float: a finite number > 0 (not a bool).

    Raises:
        ParamError: one line naming ``name``, the value and what is allowed.
    """
    allowed = "a finite number > 0, the softplus sharpness; larger is closer to ReLU"
    return check_float(beta, name, 0.0, low_open=True, allowed=allowed)


@contextmanager
def smoothed_network(model: nn.Module, beta: float, name: str = "beta") -> Iterator[nn.Module]:
    """Inside the block ``model`` is its β-smoothed network; on exit (even by an exception) the original.

    Args:
        model: a classifier; its ReLU-family activation modules are swapped in place for the block.
        beta: the softplus sharpness, a finite number > 0.
        name: the argument's name in messages.

    Yields:
        ``model``.

    Raises:
        ParamError: a bad ``beta``; or, after the block, a network that has no ReLU-family activation
            (module or functional call) to smooth, where the "defence" would silently be the plain method.
    """
    beta = check_beta(beta, name)
    with softplus_activations(model, beta) as swap, functional_softplus(beta) as calls:
        swapped = swap.count  # read now: the restore on exit empties the record
        yield model
    if swapped == 0 and calls.calls == 0:
        label = getattr(model, "name", type(model).__name__)
        raise ParamError(
            f"model: {label!r} is not allowed (the β-smoothing defence needs a ReLU-family activation "
            "to smooth: ReLU, ReLU6, Hardtanh, LeakyReLU, Hardsigmoid, Hardswish; none was found)"
        )


@section_defaults(D.saliency_smoothed)
def saliency_smoothed(model: nn.Module, x: torch.Tensor, target: torch.Tensor, beta: float, abs: bool) -> torch.Tensor:
    """Saliency (Simonyan et al. 2014) of the β-smoothed network (Dombrowski et al. 2019, section 5).

    Args:
        model: a classifier in pixel space; unchanged afterwards.
        x: images (B, 3, H, W) in [0, 1], a leaf that requires grad.
        target: one class index per image, a (B,) integer tensor.
        beta: softplus sharpness, a finite number > 0.
        abs: absolute gradient (as ``saliency``).

    Returns:
        ∂ logit_target / ∂x of the smoothed network, (B, 3, H, W) (≥ 0 when ``abs``).

    Raises:
        ParamError: a bad ``beta``, or a network with nothing to smooth.
    """
    with smoothed_network(model, beta):
        return Saliency(model).attribute(x, target=target, abs=abs)


@section_defaults(D.input_x_gradient_smoothed)
def input_x_gradient_smoothed(model: nn.Module, x: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Input × Gradient (Shrikumar et al. 2016) of the β-smoothed network (Dombrowski et al. 2019, section 5).

    Args, Raises: as :func:`saliency_smoothed`.

    Returns:
        x · ∂ logit_target / ∂x of the smoothed network, (B, 3, H, W), signed.
    """
    with smoothed_network(model, beta):
        return InputXGradient(model).attribute(x, target=target)


@section_defaults(D.integrated_gradients_smoothed)
def integrated_gradients_smoothed(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    beta: float,
    n_steps: int,
    integration: str,
    internal_batch_size: int,
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) of the β-smoothed network, black baseline.

    Args:
        model, x, target, beta: as :func:`saliency_smoothed`.
        n_steps: path points (≥ 1; ≥ 2 for the ``riemann_*`` rules).
        integration: Captum's quadrature, ``gausslegendre`` or ``riemann_{left,right,middle,trapezoid}``.
        internal_batch_size: path points per forward pass (≥ 1).

    Returns:
        The attribution, (B, 3, H, W), signed; it sums to about f_β(x) − f_β(0) of the smoothed network.

    Raises:
        ParamError: a bad ``beta``, ``n_steps`` or ``internal_batch_size``, or nothing to smooth.
    """
    from .attribution import _integrated_gradients  # the plain method's Captum call, on the smoothed network

    check_int(internal_batch_size, "internal_batch_size", 1)
    with smoothed_network(model, beta):
        return _integrated_gradients(model, x, target, n_steps, integration, internal_batch_size)
