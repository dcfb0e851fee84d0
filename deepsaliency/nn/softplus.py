"""Smooth stand-ins for piecewise-linear activations (β-softplus), swapped in and out.

Dombrowski et al. (2019), "Explanations can be manipulated and geometry is to
blame", https://arxiv.org/abs/1906.07983: the gradient of an explanation of a
ReLU network with respect to its input is almost everywhere blind to the
explanation's geometry (ReLU'' = 0), so the attack replaces every ReLU by
``softplus_β(x) = log(1 + exp(βx)) / β``, which tends to ReLU as β → ∞.

No library swaps activations in place like this (and restores them), so it is
written here. Each ReLU-family module becomes its β-softplus analogue:

* ``ReLU``       → ``softplus_β(x)``
* ``ReLU6``      → ``softplus_β(x) − softplus_β(x − 6)``
* ``Hardtanh(a, b)`` (ReLU6's parent class) → ``a + softplus_β(x − a) − softplus_β(x − b)``
* ``LeakyReLU(s)`` → ``s·x + (1 − s)·softplus_β(x)``
* ``Hardsigmoid`` → ``(softplus_β(x + 3) − softplus_β(x − 3)) / 6``
* ``Hardswish``   → ``x · (softplus_β(x + 3) − softplus_β(x − 3)) / 6``

Smooth activations (SiLU, GELU, ELU, ...) are left alone. timm's
``BatchNormAct2d`` keeps its activation as the child ``.act``, which the module
walk finds like any other child. ``inplace=True`` is irrelevant to the module
replacements (they never write into their input).

Activations called as functions inside ``forward`` (``F.relu`` in torchvision's
GoogLeNet and Inception-v3) are not modules; :class:`FunctionalSoftplus`, a
``torch.overrides.TorchFunctionMode``, maps those calls (``F.relu``, ``torch.relu``,
``Tensor.relu``, ``F.relu6``, ``F.hardtanh``, ``F.leaky_relu``, ``F.hardsigmoid``,
``F.hardswish`` and their in-place variants) to the same β-softplus functions
while it is active.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ParamError
from .smooth import _SmoothActivation
from .swap import ModuleSwap


class _BetaActivation(nn.Module):
    """A β-softplus activation (see :class:`_SmoothActivation`); β can change between steps.

    Args:
        beta: the softplus sharpness (> 0).
        spec: ``("relu", lin)`` or ``("clamp", a, b, scale, offset)``.
        fused: use the hand-written double backward (False: plain ``F.softplus`` and
            autograd, the slower reference).
    """

    def __init__(self, beta: float, spec: tuple, fused: bool = True) -> None:
        super().__init__()
        self.beta = float(beta)
        self.spec = (spec[0], *(float(v) for v in spec[1:]))
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return self.reference(x)
        return _SmoothActivation.apply(x, self.beta, self.spec)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same function from ``F.softplus`` and plain autograd (for tests and benchmarks)."""
        sp = lambda v: F.softplus(v, beta=self.beta, threshold=20.0)  # noqa: E731
        if self.spec[0] == "relu":
            lin = self.spec[1]
            return lin * x + (1.0 - lin) * sp(x)
        _, a, b, scale, offset = self.spec
        return offset + scale * (a + sp(x - a) - sp(x - b))

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}"


class SoftplusReLU(_BetaActivation):
    """``softplus_β(x)``, the smooth ReLU."""

    def __init__(self, beta: float) -> None:
        super().__init__(beta, ("relu", 0.0))


class SoftplusLeakyReLU(_BetaActivation):
    """``s·x + (1 − s)·softplus_β(x)``: smooth LeakyReLU with negative slope s."""

    def __init__(self, beta: float, negative_slope: float = 0.01) -> None:
        super().__init__(beta, ("relu", negative_slope))


class SoftplusHardtanh(_BetaActivation):
    """``a + softplus_β(x − a) − softplus_β(x − b)``: smooth clamp to [a, b] (ReLU6: a=0, b=6)."""

    def __init__(self, beta: float, min_val: float = 0.0, max_val: float = 6.0) -> None:
        super().__init__(beta, ("clamp", min_val, max_val, 1.0, 0.0))


class SoftplusHardsigmoid(_BetaActivation):
    """``(softplus_β(x + 3) − softplus_β(x − 3)) / 6`` = ``1/2 + smooth_clamp(x, −3, 3)/6``."""

    def __init__(self, beta: float) -> None:
        super().__init__(beta, ("clamp", -3.0, 3.0, 1 / 6, 0.5))


class SoftplusHardswish(SoftplusHardsigmoid):
    """``x · (softplus_β(x + 3) − softplus_β(x − 3)) / 6``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * super().forward(x)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return x * super().reference(x)


def smooth_version(module: nn.Module, beta: float) -> _BetaActivation | None:
    """The β-softplus replacement of an activation module, or None if it has none."""
    if isinstance(module, nn.ReLU):
        return SoftplusReLU(beta)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
        return SoftplusHardtanh(beta, module.min_val, module.max_val)
    if isinstance(module, nn.LeakyReLU):
        return SoftplusLeakyReLU(beta, module.negative_slope)
    if isinstance(module, nn.Hardsigmoid):
        return SoftplusHardsigmoid(beta)
    if isinstance(module, nn.Hardswish):
        return SoftplusHardswish(beta)
    return None


def _unfused(module: _BetaActivation | None) -> _BetaActivation | None:
    if module is not None:
        module.fused = False
    return module


def check_beta(beta: float, name: str = "beta") -> float:
    """β must be a finite positive number."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ParamError(f"{name}: {beta!r} is not allowed (a positive number)") from None
    if not (value > 0 and value < float("inf")):
        raise ParamError(f"{name}: {beta!r} is not allowed (a positive number)")
    return value


class SoftplusHandle(ModuleSwap):
    """What :func:`softplus_activations` yields: the swap plus :meth:`set_beta`."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = check_beta(beta)

    def set_beta(self, beta: float) -> None:
        """Change β of every swapped-in activation (e.g. to anneal it during an attack)."""
        self.beta = check_beta(beta)
        for module in self.replacements:
            module.beta = self.beta  # type: ignore[assignment]  # a _BetaActivation

    @property
    def count(self) -> int:
        """How many activation modules were replaced."""
        return len(self.replaced)


@contextmanager
def softplus_activations(model: nn.Module, beta: float = 10.0, fused: bool = True) -> Iterator[SoftplusHandle]:
    """Replace every ReLU-family activation module of ``model`` by its β-softplus analogue.

    Args:
        model: any ``nn.Module``; changed in place inside the ``with`` block.
        beta: the initial β (> 0); larger is closer to the original activation.
        fused: use the hand-written, faster double backward (False: plain autograd).

    Yields:
        A :class:`SoftplusHandle`; ``handle.set_beta(b)`` changes β, ``handle.count``
        says how many modules were swapped (0 → the network has no swappable activation).

    On exit, even by an exception, the ORIGINAL module objects are put back.

    Example::

        with softplus_activations(model, beta=10) as sp:
            for i in range(steps):
                sp.set_beta(10 * 10 ** (i / steps))
                ...
    """
    handle = SoftplusHandle(beta)
    try:
        make = (
            (lambda m: smooth_version(m, handle.beta))
            if fused
            else (lambda m: _unfused(smooth_version(m, handle.beta)))
        )
        handle.swap(model, make)
        yield handle
    finally:
        handle.restore()


#: Functional ReLU-family calls → (positional index of the first option, in-place always?).
_RELU_FUNCS = {F.relu: False, torch.relu: False, torch.Tensor.relu: False, torch.relu_: True, torch.Tensor.relu_: True}
_LEAKY_FUNCS = {F.leaky_relu: False, F.leaky_relu_: True}
_HARDTANH_FUNCS = {F.hardtanh: False, F.hardtanh_: True}


def _option(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    """Argument ``name`` of a call given as ``args[index]`` or ``kwargs[name]``."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def functional_spec(func: Any, args: tuple, kwargs: dict) -> tuple[tuple, bool, bool] | None:
    """``(spec, inplace, times_input)`` of the smooth stand-in for a functional activation call, or None.

    ``spec`` is :class:`_SmoothActivation`'s; ``times_input`` marks Hardswish (x · hardsigmoid).
    """
    if func in _RELU_FUNCS:
        return ("relu", 0.0), _RELU_FUNCS[func] or bool(_option(args, kwargs, 1, "inplace", False)), False
    if func is F.relu6:
        return ("clamp", 0.0, 6.0, 1.0, 0.0), bool(_option(args, kwargs, 1, "inplace", False)), False
    if func in _LEAKY_FUNCS:
        slope = float(_option(args, kwargs, 1, "negative_slope", 0.01))
        return ("relu", slope), _LEAKY_FUNCS[func] or bool(_option(args, kwargs, 2, "inplace", False)), False
    if func in _HARDTANH_FUNCS:
        lo, hi = float(_option(args, kwargs, 1, "min_val", -1.0)), float(_option(args, kwargs, 2, "max_val", 1.0))
        inplace = _HARDTANH_FUNCS[func] or bool(_option(args, kwargs, 3, "inplace", False))
        return ("clamp", lo, hi, 1.0, 0.0), inplace, False
    if func is F.hardsigmoid or func is F.hardswish:
        spec = ("clamp", -3.0, 3.0, 1 / 6, 0.5)
        return spec, bool(_option(args, kwargs, 1, "inplace", False)), func is F.hardswish
    return None


class FunctionalSoftplus(TorchFunctionMode):
    """While active (and :attr:`enabled`), functional ReLU-family calls compute their β-softplus analogue.

    Torchvision's GoogLeNet and Inception-v3 call ``F.relu`` inside ``forward``; a module swap
    cannot reach those calls, and without them the attack's second derivatives are zero almost
    everywhere. This ``torch.overrides.TorchFunctionMode`` intercepts them (the list is in the
    module docstring) and returns the same function the module swap uses (fused double backward).
    In-place calls write the smooth value into their input, as the originals do.

    Attributes:
        beta: the softplus β (> 0), changeable between steps.
        enabled: False passes every call through unchanged (to evaluate the original network).
        calls: how many calls were smoothed so far.
    """

    def __init__(self, beta: float = 10.0) -> None:
        super().__init__()
        self.beta = check_beta(beta)
        self.enabled = True
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        found = functional_spec(func, args, kwargs) if self.enabled else None
        if found is None:
            return func(*args, **kwargs)
        (spec, inplace, times_input), z = found, args[0]
        self.calls += 1
        # _SmoothActivation keeps its input for the backward: smooth a copy when writing in place.
        src = z.clone() if inplace else z
        y = _SmoothActivation.apply(src, self.beta, spec)
        if times_input:
            y = src * y
        return z.copy_(y) if inplace else y


@contextmanager
def functional_softplus(beta: float = 10.0) -> Iterator[FunctionalSoftplus]:
    """Activate a :class:`FunctionalSoftplus` mode for the ``with`` block (on this thread).

    Example::

        with softplus_activations(model, 10.0) as sp, functional_softplus(10.0) as fn:
            logits = model(x)   # modules swapped AND F.relu calls smoothed
    """
    with FunctionalSoftplus(beta) as mode:
        yield mode
