"""Convolutions whose second derivative stays cheap (grouped → grouped, 1×1 → matrix products).

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
uses :class:`deepsaliency.nn.swap.ModuleSwap` and restores the original modules on exit.

Batch norms are not handled here: the one folding path is
:func:`deepsaliency.models.fold_batchnorm`, which the embedded model applies at load time,
so the attacked network has no batch norm left (a network that keeps its batch norms is
attacked through autograd's own batch-norm double backward: correct, slower).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .swap import ModuleSwap


def _output_padding(in_size, out_size, kernel, stride, padding, dilation) -> tuple[int, ...]:
    """The ``output_padding`` that makes conv_transpose2d return exactly ``in_size``."""
    return tuple(
        i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for i, o, k, s, p, d in zip(in_size, out_size, kernel, stride, padding, dilation, strict=True)
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


def _swappable(module: nn.Module, grouped_only: bool) -> bool:
    return (
        type(module) is nn.Conv2d  # subclasses (timm's Conv2dSame, ...) pad in their own forward
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and (module.groups > 1 or not grouped_only)
    )


@contextmanager
def fast_double_backward(model: nn.Module, grouped_only: bool = False) -> Iterator[ModuleSwap]:
    """Swap modules of ``model`` for ones with the same values and gradients but a cheap double backward.

    * 1×1 stride-1 ``nn.Conv2d`` → :class:`PointwiseConv2d` (matrix products);
    * other zero-padded ``nn.Conv2d`` → :class:`FastGradConv2d`: second derivatives of
      grouped ones become grouped convolutions instead of a loop over groups (dense
      ones gain a little too).

    Values agree with the originals to float rounding, first and second derivatives likewise.
    Batch norms stay as they are (fold them first with :func:`deepsaliency.models.fold_batchnorm`).

    Args:
        model: changed in place inside the ``with`` block; originals restored on exit.
        grouped_only: give :class:`FastGradConv2d` only to convolutions with ``groups > 1``.

    Yields:
        The :class:`~deepsaliency.nn.swap.ModuleSwap` (``len(swap.replaced)`` = number swapped).
    """
    swap = ModuleSwap()
    try:

        def make(m: nn.Module) -> nn.Module | None:
            if not isinstance(m, nn.Conv2d):
                return None
            if _pointwise(m):
                return PointwiseConv2d(m)
            if _swappable(m, grouped_only):
                return FastGradConv2d(m)
            return None

        swap.swap(model, make)
        yield swap
    finally:
        swap.restore()
