"""The β-softplus activation as one autograd Function with a hand-written, cheap double backward.

Dombrowski et al. (2019), https://arxiv.org/abs/1906.07983, replace ReLU by
``softplus_β(x) = log(1 + exp(βx)) / β`` so that explanations have curvature.
The attack differentiates a gradient, so it needs this function's first AND second
derivatives, many times per step; autograd's generic ``F.softplus`` double backward
costs several times more than the closed forms below. No library provides it, so it
is written here; :mod:`deepsaliency.nn.softplus` builds the activation modules on it.
"""

from __future__ import annotations

import torch

#: β·(half the clamp width) above which a smooth clamp is folded into ONE softplus:
#: the dropped term is below e^-20 ≈ 2e-9, PyTorch's own softplus threshold.
_FOLD = 20.0


def _softplus_parts(w: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, e, r, σ)`` with e = exp(−β|w|), r = 1/(1 + e), L = log(1 + e)/β, σ = σ(βw).

    Then softplus_β(w) = max(w, 0) + L, σ(βw) = ½ + sign(w)(r − ½) and
    σ(1 − σ) = e·r². One ``exp`` and one ``log`` of a number in (1, 2] (accurate to
    6e-8/β), no overflow, no branches: PyTorch's CPU ``softplus`` (a scalar
    ``log1p``) and ``torch.where`` each cost several times more here.
    """
    e = torch.exp(w.abs().mul_(-beta))
    d = e + 1.0
    r = torch.reciprocal(d)
    L = d.log_().div_(beta)
    sig = torch.copysign(r - 0.5, w).add_(0.5)
    return L, e, r, sig


class _SmoothActivation(torch.autograd.Function):
    """A β-softplus activation (spec below) with a hand-written, cheap double backward.

    ``spec`` is ``("relu", lin)``: ``y = lin·z + (1 − lin)·softplus_β(z)``, or
    ``("clamp", a, b, scale, offset)``: ``y = offset + scale·(a + softplus_β(z − a) − softplus_β(z − b))``,
    a smooth ``clamp(z, a, b)``; when β(b − a)/2 ≥ 20 it is folded into one softplus of
    ``w = min(z − a, b − z)`` (the other term is < e^-20): ``y = z ± (softplus_β(w) − w)``,
    + below the midpoint, − above.

    The attack needs second derivatives and no more, so the backward is itself
    a Function (:class:`_SmoothActivationGrad`) whose own backward is
    ``once_differentiable``. The slope y'(z) is computed in the forward and the
    curvature y''(z) at the first backward, both cached on the node, which the
    double backward visits again.
    """

    @staticmethod
    def forward(ctx, z, beta, spec):
        kind = spec[0]
        sign = None
        if kind == "relu":
            lin = spec[1]
            L, e, r, sig = _softplus_parts(z, beta)
            y = L.add_(z.clamp_min(0))
            if lin:
                y.mul_(1.0 - lin).add_(z, alpha=lin)
                sig.mul_(1.0 - lin).add_(lin)
            parts, factor = (e, r), 1.0 - lin
        else:
            _, a, b, scale, offset = spec
            if beta * (b - a) / 2 >= _FOLD:
                sign = (a + b) / 2 - z  # > 0 below the midpoint
                w = sign.abs().neg_().add_((b - a) / 2)  # min(z − a, b − z)
                L, e, r, sig = _softplus_parts(w, beta)
                excess = L.add_(w.neg_().clamp_min_(0))  # softplus_β(w) − w ≥ 0
                y = torch.copysign(excess, sign).add_(z)
                parts = (e, r)
            else:
                L1, e1, r1, sig1 = _softplus_parts(z - a, beta)
                L2, e2, r2, sig2 = _softplus_parts(z - b, beta)
                y = L1.add_((z - a).clamp_min_(0)).sub_(L2).sub_((z - b).clamp_min_(0)).add_(a)
                sig = sig1.sub_(sig2)
                parts = (e1, r1, e2, r2)
            factor = scale
            if scale != 1.0:
                y.mul_(scale)
                sig.mul_(scale)
            if offset:
                y.add_(offset)
        ctx.save_for_backward(z)
        ctx.beta, ctx.slope, ctx.parts, ctx.factor, ctx.sign, ctx.curv = beta, sig, parts, factor, sign, None
        return y

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        if ctx.curv is None:
            ctx.curv = _curvature(ctx.parts, ctx.sign, ctx.beta * ctx.factor)
            ctx.parts = ctx.sign = None
        return _SmoothActivationGrad.apply(grad, z, ctx.slope, ctx.curv), None, None


def _curvature(parts, sign, factor: float) -> torch.Tensor:
    """y''(z) = factor · σ(1 − σ) = factor · e·r² (signed for a fold; a difference for two terms)."""
    if len(parts) == 4:
        e1, r1, e2, r2 = parts
        return (e1 * r1 * r1).sub_(e2 * r2 * r2).mul_(factor)
    e, r = parts
    curv = (e * r).mul_(r).mul_(factor)
    if sign is not None:  # folded clamp: the upper half enters with a minus sign
        curv = torch.copysign(curv, sign)
    return curv


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
        g_grad = gg * slope if ctx.needs_input_grad[0] else None
        g_z = (gg * grad).mul_(curv) if ctx.needs_input_grad[1] else None
        return g_grad, g_z, None, None
