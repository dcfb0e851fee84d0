"""The network as the explanation attack sees it: smoothed activations, fast double backward.

Gradients of gradient explanations of ReLU networks carry no curvature, so during the attack
every ReLU-family activation is replaced by softplus_β (:mod:`deepsaliency.nn.softplus`), β
annealed geometrically (:func:`beta_schedule`), as Dombrowski et al. (2019),
https://arxiv.org/abs/1906.07983, do; :mod:`deepsaliency.nn.fastgrad` makes the double
backward cheap. :meth:`AttackNetwork.original` suspends every swap to evaluate the original network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from ..differentiable import differentiable_attribution, unit_sum_map
from ..errors import ParamError
from ..nn import (
    FunctionalSoftplus,
    ModuleSwap,
    SoftplusHandle,
    check_beta,
    compiled_kernels,
    fast_double_backward,
    softplus_activations,
)


class AttackNetwork:
    """The network as the attack sees it; from :func:`attack_network`.

    Attributes:
        softplus: the module swap (None: no smoothing).
        fast: the :mod:`~deepsaliency.nn.fastgrad` swap (None: off).
        functional: the :class:`~deepsaliency.nn.softplus.FunctionalSoftplus` mode smoothing
            ``F.relu``-style calls, or None when the probe found none (no dispatch overhead then).
    """

    def __init__(
        self, softplus: SoftplusHandle | None, fast: ModuleSwap | None, functional: FunctionalSoftplus | None = None
    ) -> None:
        self.softplus, self.fast, self.functional = softplus, fast, functional

    def set_beta(self, beta: float) -> None:
        """Set β of every smoothed activation (modules and functional calls)."""
        if self.softplus is not None:
            self.softplus.set_beta(beta)
        if self.functional is not None:
            self.functional.beta = check_beta(beta)

    @property
    def smoothed(self) -> str:
        """How many activations are smoothed, in words (for messages)."""
        modules = self.softplus.count if self.softplus is not None else 0
        calls = "no" if self.functional is None else "some"
        return f"{modules} activation modules swapped, {calls} functional activation calls smoothed"

    @contextmanager
    def original(self) -> Iterator[None]:
        """Inside this block the model is exactly the original network."""
        with ExitStack() as stack:
            if self.fast is not None:
                stack.enter_context(self.fast.suspended())
            if self.softplus is not None:
                stack.enter_context(self.softplus.suspended())
            if self.functional is not None:
                was, self.functional.enabled = self.functional.enabled, False
                stack.callback(setattr, self.functional, "enabled", was)
            yield


@contextmanager
def attack_network(
    model: nn.Module,
    beta: float | None = 10.0,
    fast: bool = True,
    probe: torch.Tensor | None = None,
    compiled: bool = True,
) -> Iterator[AttackNetwork]:
    """Softplus activations (``beta`` None → none) and fast double backward swapped into ``model``.

    Args:
        model: changed in place inside the block; originals restored on exit.
        beta: initial softplus β; None → no smoothing at all.
        fast: swap in :mod:`deepsaliency.nn.fastgrad`'s modules.
        compiled: run the softplus activations' element-wise kernels compiled on CPU
            (:func:`deepsaliency.nn.smooth.compiled_kernels`; falls back to eager where compilation fails).
        probe: an input (B, 3, H, W); when given (and ``beta`` is), one forward pass of it is run
            under a :class:`~deepsaliency.nn.softplus.FunctionalSoftplus` mode, and if the network
            calls ReLU-family functions (``F.relu`` ...) the mode stays active for the block.

    Yields:
        An :class:`AttackNetwork`; ``net.original()`` suspends every swap.
    """
    with ExitStack() as stack:
        stack.enter_context(compiled_kernels(compiled))
        sp = stack.enter_context(softplus_activations(model, beta)) if beta is not None else None
        fs = stack.enter_context(fast_double_backward(model)) if fast else None
        functional = None
        if beta is not None and probe is not None:
            mode = FunctionalSoftplus(beta)
            with torch.no_grad(), mode:
                model(probe[:1])
            if mode.calls:  # only then: the mode routes every torch call through Python
                functional = stack.enter_context(mode)
                functional.calls = 0
        yield AttackNetwork(sp, fs, functional)


def beta_schedule(step: int, num_iter: int, beta_start: float, beta_end: float) -> float:
    """Geometric annealing of the softplus β: β_0 = beta_start, β_{num_iter−1} = beta_end."""
    if num_iter <= 1:
        return float(beta_end)
    t = step / (num_iter - 1)
    return float(math.exp((1 - t) * math.log(beta_start) + t * math.log(beta_end)))


def model_name(model: nn.Module) -> str:
    """The model's ``name`` (a :class:`~deepsaliency.models.Model`), else its class name."""
    return str(getattr(model, "name", None) or type(model).__name__)


def check_curvature(
    model: nn.Module, x: torch.Tensor, method: str, cls: torch.Tensor, params: dict, smoothed: str = ""
) -> None:
    """Stop before any step when the explanation does not depend (differentiably) on the input.

    Probes the double backward the attack relies on: the gradient, with respect to ``x``, of a
    random projection of the normalised map on the CURRENT (smoothed) network. If it is
    identically zero for an image (e.g. a network whose activations could not be smoothed: the
    second derivative of a ReLU network is zero almost everywhere), gradient descent could only
    return the clean image, so a one-line :class:`ParamError` naming the model is raised instead.

    Args:
        model: the attacked network (with its smoothing swapped in).
        x: the images (B, 3, H, W) in [0, 1]; method, cls, params: as the attack uses them.
        smoothed: what was smoothed, in words, for the message.

    Raises:
        ParamError: the map's input gradient is zero for some image.
    """
    xx = x.detach().clone().requires_grad_()
    h = unit_sum_map(differentiable_attribution(model, xx, method, cls, create_graph=True, **params))
    w = torch.randn(h.shape, generator=torch.Generator().manual_seed(0)).to(h.device)
    # No graph at all (h.requires_grad False) is the extreme case: nothing connects the map to x.
    (g,) = torch.autograd.grad((h * w).sum(), xx, allow_unused=True) if h.requires_grad else (None,)
    dead = [i for i in range(len(x)) if g is None or not bool(g[i].abs().max() > 0)]
    if dead:
        raise ParamError(
            f"attack: the {method} map of model {model_name(model)!r} does not change with the input "
            f"(its gradient is exactly zero for image(s) {dead}; {smoothed or 'nothing smoothed'}): "
            "the network's activations are piecewise linear and could not be smoothed, so the attack cannot move it"
        )
