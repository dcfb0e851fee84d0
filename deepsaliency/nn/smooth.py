"""The β-softplus activation as one autograd Function with a hand-written, cheap double backward.

Dombrowski et al. (2019), https://arxiv.org/abs/1906.07983, replace ReLU by
``softplus_β(x) = log(1 + exp(βx)) / β`` so that explanations have curvature.
The attack differentiates a gradient, so it needs this function's first AND second
derivatives, many times per step; autograd's generic ``F.softplus`` double backward
costs several times more than the closed forms below. No library provides it, so it
is written here; :mod:`deepsaliency.nn.softplus` builds the activation modules on it.

The element-wise work (value, slope and curvature in one pass; the double backward's two
products) is written as plain functions of tensors (the *kernels* below). Inside
:func:`compiled_kernels` (which the attack enters) they run compiled by ``torch.compile``
(inductor: one fused, vectorised loop instead of ≈ 12 passes over memory) on CPU tensors;
elsewhere, on other devices, with ``DEEPSALIENCY_COMPILE=0`` (or false/no/off), or where compilation fails (no C++
compiler: one warning), the same functions run eagerly. Compiled and eager values agree to float32
rounding (≈ 1e-7 relative); each path is deterministic on its own.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

#: β·(half the clamp width) above which a smooth clamp is folded into ONE softplus:
#: the dropped term is below e^-20 ≈ 2e-9, PyTorch's own softplus threshold.
_FOLD = 20.0


def _softplus_terms(w: torch.Tensor, beta: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(softplus_β(w), σ(βw), β·σ(βw)(1 − σ(βw)))``: value, slope and curvature of softplus_β at ``w``.

    With e = exp(−β|w|) and r = 1/(1 + e): softplus_β(w) = max(w, 0) + log(1 + e)/β,
    σ(βw) = ½ + sign(w)(r − ½) and σ(1 − σ) = e·r². One ``exp`` and one ``log`` of a number in
    (1, 2] (accurate to 6e-8/β), no overflow, no branches. ``beta`` is a float or a 0-d tensor
    (the compiled kernels take tensors, :func:`_run`).
    """
    e = torch.exp(w.abs() * -beta)
    d = e + 1.0
    r = torch.reciprocal(d)
    value = torch.log(d) / beta + w.clamp_min(0)
    slope = torch.copysign(r - 0.5, w) + 0.5
    return value, slope, e * r * r * beta


def _relu_kernel(z: torch.Tensor, beta: Any, lin: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``y = lin·z + (1 − lin)·softplus_β(z)``, 0 < lin < 1 (a smooth leaky ReLU): (y, y', y'').
    ``lin`` = 0 is :func:`_softplus_terms` itself (a separate kernel: ``0·z`` would turn z = ±inf into NaN)."""
    value, slope, curv = _softplus_terms(z, beta)
    return value * (1.0 - lin) + z * lin, slope * (1.0 - lin) + lin, curv * (1.0 - lin)


def _clamp_kernel(
    z: torch.Tensor, beta: Any, a: Any, b: Any, scale: Any, offset: Any, fold: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``y = offset + scale·(a + softplus_β(z − a) − softplus_β(z − b))``, a smooth ``clamp(z, a, b)``: (y, y', y'').

    ``fold`` (β(b − a)/2 ≥ 20): one softplus of ``w = min(z − a, b − z)``, ``y = z ± (softplus_β(w) − w)``,
    + below the midpoint, − above; the other term is < e^-20. Slope σ(βw) on both halves; the curvature
    changes sign with the side.
    """
    if fold:
        side = (a + b) / 2 - z  # > 0 below the midpoint
        w = (b - a) / 2 - side.abs()  # min(z − a, b − z)
        value, slope, curv = _softplus_terms(w, beta)
        y = torch.copysign(value - w, side) + z
        curv = torch.copysign(curv, side)
    else:
        v1, s1, c1 = _softplus_terms(z - a, beta)
        v2, s2, c2 = _softplus_terms(z - b, beta)
        y, slope, curv = v1 - v2 + a, s1 - s2, c1 - c2
    return y * scale + offset, slope * scale, curv * scale


def _double_backward_kernel(
    gg: torch.Tensor, grad: torch.Tensor, slope: torch.Tensor, curv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward of ``grad · slope(z)``: ``(gg · slope, gg · grad · curv)``."""
    return gg * slope, gg * grad * curv


#: Whether the kernels run compiled in the current context (thread, task): :func:`compiled_kernels` sets it.
_COMPILING: ContextVar[bool] = ContextVar("deepsaliency_compiling", default=False)
_failed = False  # a compilation failed in this process: every later block runs eagerly
_compiled: dict[Callable, Callable] = {}
#: Values of ``DEEPSALIENCY_COMPILE`` (case-insensitive): on, off.
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def compile_enabled() -> bool:
    """Whether ``DEEPSALIENCY_COMPILE`` allows compiled kernels (unset or empty: yes).

    Raises:
        ParamError: a value other than 1/true/yes/on or 0/false/no/off (case-insensitive).
    """
    from ..errors import ParamError

    value = os.environ.get("DEEPSALIENCY_COMPILE", "").strip().lower() or "1"  # unset or empty: on
    if value not in _ON + _OFF:
        raise ParamError(
            f"DEEPSALIENCY_COMPILE: {os.environ['DEEPSALIENCY_COMPILE']!r} is not allowed (one of {', '.join(_ON)} "
            f"to compile the attack's activation kernels, {', '.join(_OFF)} to run them eagerly)"
        )
    return value in _ON


@contextmanager
def compiled_kernels(enabled: bool = True) -> Iterator[bool]:
    """Run the activation kernels compiled (``torch.compile``, CPU tensors) inside the block.

    Yields whether they will be (False with ``enabled`` False, ``DEEPSALIENCY_COMPILE`` off, or after a
    compilation failed in this process). The setting is a context variable: other threads are not affected,
    and the previous setting is restored on exit.

    Raises:
        ParamError: ``DEEPSALIENCY_COMPILE`` has a value :func:`compile_enabled` does not allow.
    """
    allowed = compile_enabled()  # a bad value is refused even where compilation is not asked for
    token = _COMPILING.set(enabled and allowed and not _failed)
    try:
        yield _COMPILING.get()
    finally:
        _COMPILING.reset(token)


def _run(kernel: Callable, z: torch.Tensor, *args: Any) -> Any:
    """``kernel(z, *args)``, compiled when :func:`compiled_kernels` says so and ``z`` is on the CPU.

    The compiled kernel sees every tensor as one flat vector in ``z``'s memory order and its float
    arguments (β, the clamp's bounds) as 0-d tensors: one graph per kernel, branch and dtype, whatever the
    shape, batch size, memory format or β (annealed every step), and an element's value never depends on
    where in a batch it sits (a kernel specialised to a shape could round differently).
    """
    global _failed
    if _COMPILING.get() and not _failed and z.device.type == "cpu" and z.dim() > 0:
        try:
            fn = _compiled.get(kernel) or _compiled.setdefault(kernel, torch.compile(kernel, dynamic=True))
            order = sorted(range(z.dim()), key=lambda d: -z.stride()[d])  # z's memory order, outermost first
            shape = [z.shape[d] for d in order]
            back = sorted(range(z.dim()), key=order.__getitem__)

            def flat(a: Any) -> Any:
                if isinstance(a, float):
                    return torch.tensor(a, dtype=z.dtype)
                # detached last: not a view (dynamo would guard on the base's strides) and no autograd flag
                return a.permute(order).reshape(-1).detach() if isinstance(a, torch.Tensor) else a

            out = fn(flat(z), *(flat(a) for a in args))
            return tuple(o.view(shape).permute(back) for o in out)
        except Exception as exc:  # no C++ compiler, an unsupported build: the eager kernel is the same function
            _failed = True
            warnings.warn(f"torch.compile unavailable ({type(exc).__name__}); activations run eagerly", stacklevel=2)
    return kernel(z, *args)


class _SmoothActivation(torch.autograd.Function):
    """A β-softplus activation (spec below) with a hand-written, cheap double backward.

    ``spec`` is ``("relu", lin)``: ``y = lin·z + (1 − lin)·softplus_β(z)``, or
    ``("clamp", a, b, scale, offset)``: ``y = offset + scale·(a + softplus_β(z − a) − softplus_β(z − b))``,
    a smooth ``clamp(z, a, b)`` (folded into one softplus when β(b − a)/2 ≥ 20, :func:`_clamp_kernel`).

    The attack needs second derivatives and no more, so the backward is itself
    a Function (:class:`_SmoothActivationGrad`) whose own backward is
    ``once_differentiable``. The slope y'(z) and the curvature y''(z) come from the forward's one pass
    and are kept on the node, which the double backward visits again.
    """

    @staticmethod
    def forward(ctx, z, beta, spec):
        if spec[0] == "relu":
            y, slope, curv = _run(_relu_kernel, z, beta, spec[1]) if spec[1] else _run(_softplus_terms, z, beta)
        else:
            _, a, b, scale, offset = spec
            y, slope, curv = _run(_clamp_kernel, z, beta, a, b, scale, offset, beta * (b - a) / 2 >= _FOLD)
        ctx.save_for_backward(z)
        ctx.slope, ctx.curv = slope, curv
        return y

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return _SmoothActivationGrad.apply(grad, z, ctx.slope, ctx.curv), None, None


class _SmoothActivationGrad(torch.autograd.Function):
    """``grad · slope``; its backward is ``(gg · slope, gg · grad · curv)``."""

    @staticmethod
    def forward(ctx, grad, z, slope, curv):
        if any(ctx.needs_input_grad[:2]):
            ctx.save_for_backward(grad, slope, curv)
        return grad * slope

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gg):
        grad, slope, curv = ctx.saved_tensors
        g_grad, g_z = _run(_double_backward_kernel, gg, grad, slope, curv)
        return g_grad if ctx.needs_input_grad[0] else None, g_z if ctx.needs_input_grad[1] else None, None, None
