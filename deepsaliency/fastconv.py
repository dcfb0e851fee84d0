"""Grouped convolutions whose second derivative stays a grouped convolution.

An explanation attack (Dombrowski et al. 2019, https://arxiv.org/abs/1906.07983)
differentiates a gradient: the backward pass of the network is itself
differentiated. PyTorch's double backward of a grouped (e.g. depthwise)
``conv2d`` (``_convolution_double_backward``) falls back to one small
convolution per group — 9,075 convolution calls per attack iteration on
EfficientNet-Lite0, 5.5× the cost of a forward+backward.

Here the backward of a grouped convolution is written as the first-order op it
is — ``grad_input = conv_transpose2d(grad_output, weight, groups=g)`` — with
differentiable torch ops, so that ``create_graph=True`` records a
``conv_transpose2d`` whose own backward is an ordinary grouped ``conv2d``
(native, one call). No library offers this, so it is written here; the swap
mirrors :func:`deepsaliency.softplus.softplus_activations` and restores the
original modules on exit.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .softplus import ModuleSwap


def _output_padding(in_size, out_size, kernel, stride, padding, dilation) -> tuple[int, ...]:
    """The ``output_padding`` that makes conv_transpose2d return exactly ``in_size``."""
    return tuple(
        i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for i, o, k, s, p, d in zip(in_size, out_size, kernel, stride, padding, dilation)
    )


class _Conv2dFirstOrderBackward(torch.autograd.Function):
    """``conv2d`` whose backward is built from differentiable first-order ops."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            out_pad = _output_padding(x.shape[-2:], grad.shape[-2:], weight.shape[-2:], stride, padding, dilation)
            grad_x = F.conv_transpose2d(grad, weight, None, stride, padding, out_pad, groups, dilation)
        if ctx.needs_input_grad[1]:  # skipped in attacks: model weights do not require grad
            grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad, stride, padding, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


def conv2d_first_order_backward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` with the same value and gradient, but a fast double backward for grouped convolutions.

    Args:
        x: input (B, C_in, H, W).
        weight, bias, stride, padding, dilation, groups: as for ``F.conv2d``
            (``padding`` numeric: ints or a pair).

    Returns:
        ``F.conv2d(x, weight, bias, stride, padding, dilation, groups)``.
    """
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return _Conv2dFirstOrderBackward.apply(x, weight, bias, pair(stride), pair(padding), pair(dilation), int(groups))


class FastGradConv2d(nn.Module):
    """Wraps an ``nn.Conv2d`` (sharing its weights) with :func:`conv2d_first_order_backward`.

    Args:
        conv: the convolution to wrap; must use zero padding given as numbers.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return conv2d_first_order_backward(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)

    def extra_repr(self) -> str:
        return "wraps the conv above; first-order backward"


class PointwiseConv2d(nn.Module):
    """A 1×1, stride-1, ungrouped ``nn.Conv2d`` as a matrix product over channels (sharing its weights).

    On channels-last tensors ``x.permute(0, 2, 3, 1)`` is a free view, so forward,
    backward and double backward are all single BLAS matrix products; PyTorch's
    CPU convolution takes a slower im2col path (and ``slow_conv_transpose2d`` in
    the double backward) for these.

    Args:
        conv: the convolution to wrap.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        y = F.linear(x.permute(0, 2, 3, 1), w.view(w.shape[0], w.shape[1]), self.conv.bias)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return "wraps the conv above as a matrix product"


def _pointwise(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.groups == 1
        and module.dilation == (1, 1)
        and module.padding in ((0, 0), 0)
    )


class FrozenBatchNorm2d(nn.Module):
    """An eval-mode ``BatchNorm2d`` as the per-channel affine map it is: ``x · scale + shift``.

    Autograd's batch-norm double backward handles training-mode statistics and
    costs ~15 % of an attack iteration; the affine map's is one multiply. timm's
    ``BatchNormAct2d`` (norm, then its ``drop`` and ``act`` children) is kept
    whole: the same children follow the affine map.

    Args:
        bn: a ``BatchNorm2d`` (or subclass) in eval mode with running statistics.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        with torch.no_grad():
            inv = torch.rsqrt(bn.running_var + bn.eps)
            scale = inv * bn.weight if bn.weight is not None else inv
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
        self.register_buffer("scale", scale.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.detach().view(1, -1, 1, 1).clone())
        # timm's BatchNormAct2d: the same drop/act modules run after the norm.
        self.drop = getattr(bn, "drop", None)
        self.act = getattr(bn, "act", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, x, self.scale)
        if self.drop is not None:
            x = self.drop(x)
        if self.act is not None:
            x = self.act(x)
        return x


def _frozen_bn(module: nn.Module) -> bool:
    from_timm = type(module).__name__ == "BatchNormAct2d"
    return (
        (type(module) is nn.BatchNorm2d or from_timm)
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
        # the model's own BN parameters must not be trained through this copy
        and not any(p.requires_grad for p in module.parameters(recurse=False))
    )


def _swappable(module: nn.Module, grouped_only: bool) -> bool:
    return (
        type(module) is nn.Conv2d  # subclasses (timm's Conv2dSame, ...) pad in their own forward
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and (module.groups > 1 or not grouped_only)
    )


@contextmanager
def fast_double_backward(model: nn.Module, grouped_only: bool = False, batchnorm: bool = True) -> Iterator[ModuleSwap]:
    """Swap modules of ``model`` for ones with the same values and gradients but a cheap double backward.

    * 1×1 stride-1 ``nn.Conv2d`` → :class:`PointwiseConv2d` (matrix products);
    * other zero-padded ``nn.Conv2d`` → :class:`FastGradConv2d`: second derivatives of
      grouped ones become grouped convolutions instead of a loop over groups (dense
      ones gain a little too);
    * eval-mode ``BatchNorm2d`` (and timm's ``BatchNormAct2d``) with frozen
      parameters → :class:`FrozenBatchNorm2d`, a per-channel affine map.

    Values agree with the originals to float rounding (the batch norm is
    re-associated), first and second derivatives likewise.

    Args:
        model: changed in place inside the ``with`` block; originals restored on exit.
        grouped_only: give :class:`FastGradConv2d` only to convolutions with ``groups > 1``.
        batchnorm: also swap frozen batch norms.

    Yields:
        The :class:`~deepsaliency.softplus.ModuleSwap` (``len(swap.replaced)`` = number swapped).
    """
    swap = ModuleSwap()
    try:
        def make(m: nn.Module) -> nn.Module | None:
            if _pointwise(m):
                return PointwiseConv2d(m)
            if _swappable(m, grouped_only):
                return FastGradConv2d(m)
            if batchnorm and _frozen_bn(m):
                return FrozenBatchNorm2d(m)
            return None

        swap.swap(model, make)
        yield swap
    finally:
        swap.restore()
