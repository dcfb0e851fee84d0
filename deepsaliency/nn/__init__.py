"""Network surgery for the explanation attack: reversible module swaps that keep a network's values.

* :mod:`~deepsaliency.nn.swap`: :class:`ModuleSwap`, the generic in-place swap and its restore;
* :mod:`~deepsaliency.nn.softplus`: ReLU-family activations → β-softplus (modules and functional
  calls), so that explanations have curvature (Dombrowski et al. 2019, https://arxiv.org/abs/1906.07983);
* :mod:`~deepsaliency.nn.smooth`: the β-softplus autograd Function with a cheap double backward;
* :mod:`~deepsaliency.nn.fastgrad`: convolutions with a cheap double backward.

Batch norms are folded once, at load time, by :func:`deepsaliency.models.fold_batchnorm`.
"""

from .fastgrad import FastGradConv2d, PointwiseConv2d, conv2d_first_order_backward, fast_double_backward
from .smooth import compile_enabled, compiled_kernels
from .softplus import (
    FunctionalSoftplus,
    SoftplusHandle,
    SoftplusHardsigmoid,
    SoftplusHardswish,
    SoftplusHardtanh,
    SoftplusLeakyReLU,
    SoftplusReLU,
    check_beta,
    functional_softplus,
    smooth_version,
    softplus_activations,
)
from .swap import ModuleSwap

__all__ = [
    "FastGradConv2d",
    "FunctionalSoftplus",
    "ModuleSwap",
    "PointwiseConv2d",
    "SoftplusHandle",
    "SoftplusHardsigmoid",
    "SoftplusHardswish",
    "SoftplusHardtanh",
    "SoftplusLeakyReLU",
    "SoftplusReLU",
    "check_beta",
    "compile_enabled",
    "compiled_kernels",
    "conv2d_first_order_backward",
    "fast_double_backward",
    "functional_softplus",
    "smooth_version",
    "softplus_activations",
]
