"""Four more explanation methods: Guided Backprop, DeepLift, Grad-CAM++ and LRP.

Every function has the signature of the private methods of :mod:`deepsaliency.attribution`,
``(model, x, target, **params) -> attribution``, with ``x`` images (B, 3, H, W) in [0, 1]
and ``target`` one class index per image (a (B,) integer tensor), so each can be
registered in ``explain._DISPATCH`` with one line. The optional packages (``grad-cam``,
``zennit``) are imported inside the function that uses them.

=====================  ==========================================  =====================  =======================
method                 library                                     attribution            2-D map (``reduce_map``)
=====================  ==========================================  =====================  =======================
``guided_backprop``    Captum ``GuidedBackprop`` + ReLU6 hook      (B, 3, H, W), signed   sum over C of abs
``deeplift``           Captum ``DeepLift`` + ReLU6 Rescale rule    (B, 3, H, W), signed   sum over C of abs
``gradcam_plus_plus``  ``pytorch_grad_cam.GradCAMPlusPlus``        (B, 1, H, W), [0, 1]   the channel itself
``lrp``                ``zennit`` ``EpsilonPlusFlat`` + skip sums  (B, 3, H, W), signed   sum over C of abs
=====================  ==========================================  =====================  =======================

Why the ReLU6 additions: Captum's modified-backpropagation methods only rewrite the modules they
recognise. ``GuidedBackprop``/``Deconvolution`` hook ``isinstance(module, nn.ReLU)`` and
``DeepLift`` looks modules up by exact type in ``SUPPORTED_NON_LINEAR`` (ReLU, ELU, LeakyReLU,
Sigmoid, Tanh, Softplus, max-pools, Softmax). The embedded EfficientNet-Lite0 has no ``nn.ReLU``:
its 33 activations are ``nn.ReLU6`` (a ``Hardtanh``). Unpatched, Captum's ``GuidedBackprop``
returns the plain gradient exactly and ``DeepLift`` returns gradient × (x − baseline), i.e.
Input×Gradient (tests/test_methods_extra.py shows both). Here:

* Guided Backprop (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806) on ReLU6:
  the backward of ReLU6 is ``g · 1[0 < z < 6]``; the guided rule keeps only positive gradient
  signal, ``relu(g) · 1[0 < z < 6]``, which is exactly Captum's ReLU hook (``relu`` of the
  module's input gradient) applied to ReLU6 as well. Written here: a 3-line subclass.
* DeepLift (Shrikumar et al. 2017, https://arxiv.org/abs/1704.02685), Rescale rule: for any
  element-wise non-linearity the multiplier is Δout / Δin (the gradient where |Δin| < eps). That
  is Captum's ``nonlinear`` function, which we register for ReLU6 too. The result satisfies
  summation-to-delta: Σ attribution = f(x) − f(baseline) (checked in the tests).
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import DeepLift, GuidedBackprop
from torch import nn

from ._validate import check_float

#: The methods of this module, in report order.
METHODS_EXTRA = ("guided_backprop", "deeplift", "gradcam_plus_plus", "lrp")


class _GuidedBackpropReLU6(GuidedBackprop):
    """Captum's GuidedBackprop with its ReLU hook also on ``nn.ReLU6`` (see the module docstring)."""

    def _register_hooks(self, module: nn.Module) -> None:
        if isinstance(module, nn.ReLU6) and not isinstance(module, nn.ReLU):
            from captum._utils.common import _register_backward_hook

            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))
            return
        super()._register_hooks(module)


class _DeepLiftReLU6(DeepLift):
    """Captum's DeepLift with the Rescale rule (Captum's ``nonlinear``) on ``nn.ReLU6`` too."""

    def _is_non_linear(self, module: nn.Module) -> bool:
        return type(module) is nn.ReLU6 or super()._is_non_linear(module)

    def _backward_hook(self, module: nn.Module, grad_input: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        if type(module) is not nn.ReLU6:
            return super()._backward_hook(module, grad_input, grad_output)
        from captum.attr._core.deep_lift import nonlinear

        if not self.satisfies_attribute_criteria(module):  # same guard as Captum's: a module used twice
            raise RuntimeError(f"deeplift: {module} is used more than once in the network; DeepLift needs one use each")
        multipliers = nonlinear(module, module.input, module.output, grad_input, grad_output, eps=self.eps)
        del module.input, module.output
        return multipliers


def _needs_grad(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_(True)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided Backpropagation (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806).

    Captum's ``GuidedBackprop`` with its ReLU rule extended to ``nn.ReLU6`` (module docstring):
    the gradient of the target logit w.r.t. the pixels, where every ReLU/ReLU6 passes back only
    the positive part of its (masked) gradient.

    Args:
        model: a classifier in [0, 1] pixel space whose activations are ``nn.ReLU``/``nn.ReLU6`` modules.
        x: images (B, 3, H, W) in [0, 1].
        target: class index per image, (B,).

    Returns:
        The attribution (B, 3, H, W), signed, in logit units per pixel unit. Map: Σ_C |·|.
    """
    return _GuidedBackpropReLU6(model).attribute(_needs_grad(x), target=target)


def deeplift(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """DeepLift, Rescale rule, black baseline (Shrikumar et al. 2017, https://arxiv.org/abs/1704.02685).

    Captum's ``DeepLift`` (``multiply_by_inputs=True``) with the Rescale rule extended to ``nn.ReLU6``
    (module docstring). Baseline: a black image (0 in pixel space), as for Integrated Gradients here.
    Summation-to-delta holds: the attribution of each image sums to f_t(x) − f_t(0) (logits).

    Args:
        model: a classifier in [0, 1] pixel space; every non-linearity must be a module that is used
            once (ReLU6 or one of Captum's ``SUPPORTED_NON_LINEAR``).
        x: images (B, 3, H, W) in [0, 1].
        target: class index per image, (B,).
        eps: |Δin| below which a non-linearity's multiplier falls back to its gradient (> 0).

    Returns:
        The attribution (B, 3, H, W), signed, in logit units. Map: Σ_C |·|.

    Raises:
        ParamError: ``eps`` is not a positive number.
    """
    eps = check_float(eps, "eps", 0, low_open=True, allowed="a positive number, e.g. 1e-10")
    x = _needs_grad(x)
    return _DeepLiftReLU6(model, eps=float(eps)).attribute(x, baselines=torch.zeros_like(x), target=target)


def gradcam_plus_plus(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str = "auto") -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063) by the ``grad-cam`` package.

    ``pytorch_grad_cam.GradCAMPlusPlus`` on ``layer``: channel weights
    w_k = Σ_ij α_ij^k · relu(∂y/∂A_ij^k) with α = g² / (2g² + Σ_ab A_ab · g³) (the paper's eq. 19,
    gradients of the logit), CAM = relu(Σ_k w_k A^k), then — the package's convention — scaled to
    [0, 1] by its minimum and maximum, resized to the input with OpenCV (bilinear) and scaled again.
    The paper writes α with Y = exp(S); like the paper's own code, the package uses the logit S,
    which only rescales w. The package adds 1e-6 to α's denominator: at the embedded model's
    ``net.bn2`` the gradients are ~1e-3 (g² ~ 1e-6), so this shifts the map by up to 0.033 (max
    |Δ| on [0, 1], chelsea) from the ε-free formula (tests/test_methods_extra.py measures both).

    Args:
        model: a classifier in [0, 1] pixel space.
        x: images (B, 3, H, W) in [0, 1].
        target: class index per image, (B,).
        layer: the feature layer, as for Grad-CAM: ``auto`` (the last feature map before pooling,
            ``net.bn2`` for the embedded model) or a dotted submodule path.

    Returns:
        The map (B, 1, H, W), in [0, 1] (max 1 unless the CAM is all zero). Map: the channel itself.

    Raises:
        ParamError: ``layer`` is not a submodule of the model.
    """
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from .attribution import gradcam_layer

    feature = gradcam_layer(model, layer)
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    # The package back-propagates to the layer's activations; with frozen weights they only
    # need gradients if the input does.
    with GradCAMPlusPlus(model=model, target_layers=[feature]) as cam:
        maps = cam(input_tensor=_needs_grad(x), targets=targets)
    return torch.as_tensor(maps, dtype=torch.float32, device=x.device)[:, None]


_SKIP_BLOCKS = ("InvertedResidual", "DepthwiseSeparableConv")  # timm's residual blocks


def _skip_sum_canonizer() -> Any:
    """A zennit canonizer that routes timm's residual additions through a ``zennit.layer.Sum``.

    timm's ``InvertedResidual``/``DepthwiseSeparableConv`` add the shortcut with ``+``; the plain
    gradient of ``+`` copies the relevance to both branches (it is counted twice). zennit's
    composites give ``Sum`` modules the ``Norm`` rule, which splits relevance in proportion to
    each branch's contribution — what zennit's own ResNet canonizer does for torchvision's blocks.
    Written here because zennit has no canonizer for timm's blocks: the block's own forward runs
    with ``has_skip`` off, then the Sum adds the shortcut back (same output).
    """
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # Any: timm's block classes share no base with has_skip
        self.has_skip = False
        try:
            out = type(self).forward(self, x)
        finally:
            self.has_skip = True
        return self.canonizer_sum(torch.stack([self.drop_path(out), x], dim=-1))

    def attribute_map(name: str, module: nn.Module) -> dict | None:
        if type(module).__name__ in _SKIP_BLOCKS and getattr(module, "has_skip", False):
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return AttributeCanonizer(attribute_map)


def lrp(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, epsilon: float = 1e-6, canonize_skips: bool = True
) -> torch.Tensor:
    """Layer-wise relevance propagation with zennit's ``EpsilonPlusFlat`` composite.

    Bach et al. 2015 (https://doi.org/10.1371/journal.pone.0130140), rules as in Montavon et al.
    2019 / Kohlbrenner et al. 2020 (https://arxiv.org/abs/1910.09840): Flat for the first
    convolution, z⁺ for the other convolutions, ε for the dense layer; activations (ReLU6) pass
    relevance through, average pooling and the residual sums (see ``canonize_skips``) use the
    Norm rule. The batch norms of the embedded model are already folded into the convolutions, so
    no batch-norm canonizer is needed.

    Relevance starts as the target logit f_t (the one-hot output times the logit) and is
    propagated through ``model.net``, i.e. to the *normalised* pixels; it is reported on the
    [0, 1] pixels unchanged (the per-channel normalisation is a bijection and gets no rule, so
    the attribution is not divided by the standard deviation as a plain gradient would be).
    Conservation: the relevance at the input sums to f_t(x) minus what the layers' biases and the
    ε stabiliser absorb, and minus what z⁺ drops at units whose pre-activation has only negative
    contributions (EfficientNet's linear-bottleneck convolutions have such units); exact on a
    bias-free ReLU6 network (checked by hand in the tests). On the embedded model it is far from
    conserved: chelsea's relevance sums to 0.0055 for a logit of 9.51 (0.46 without the skip canonizer).

    Args:
        model: a :class:`deepsaliency.Model` (``net``, ``mean``, ``std``) with conv/linear layers.
        x: images (B, 3, H, W) in [0, 1].
        target: class index per image, (B,).
        epsilon: stabiliser of the ε rule (> 0).
        canonize_skips: route timm's residual additions through zennit ``Sum`` modules (Norm rule);
            False leaves them as plain additions (relevance is duplicated at every skip).

    Returns:
        The relevance (B, 3, H, W), signed, in logit units. Map: Σ_C |·|.

    Raises:
        ParamError: ``epsilon`` is not a positive number.
    """
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    epsilon = check_float(epsilon, "epsilon", 0, low_open=True, allowed="a positive number, e.g. 1e-6")
    net = model.net if hasattr(model, "net") else model
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    z = (x - mean) / std if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor) else x
    z = z.detach().requires_grad_(True)
    composite = EpsilonPlusFlat(epsilon=float(epsilon), canonizers=[_skip_sum_canonizer()] if canonize_skips else [])

    def seed(out: torch.Tensor) -> torch.Tensor:  # initial relevance: the target logit, zero elsewhere
        hot = torch.zeros_like(out)
        hot[torch.arange(len(out)), target.to(out.device).long()] = 1.0
        return out * hot

    with Gradient(model=net, composite=composite) as attributor:
        _, relevance = attributor(z, seed)
    return relevance
