"""The explanation methods deep-saliency knows: one registry of names and facts, light to import.

Every place that needs to know WHICH methods exist or WHAT a method is (the params validation, the explain,
attack and sanity stages, the report) reads :data:`REGISTRY`; HOW a method attributes lives in
:mod:`deepsaliency.attribution` (the Captum, grad-cam, zennit and RISE calls, keyed by the same names — a test
checks the two agree) and, for the attacked methods, in :mod:`deepsaliency.differentiable`. This module imports
neither (nor torch), so reading params does not pay for them.

Map reduction (documented once, applied by :func:`deepsaliency.attribution.reduce_map`): an attribution
(C, H, W) becomes a non-negative map (H, W) by ``abs_sum`` (sum over channels of |attribution|, the
un-normalised ``h`` of Dombrowski et al. 2019), ``sum`` (RISE's one-channel saliency, already ≥ 0) or
``relu_sum`` (Grad-CAM and Grad-CAM++: ReLU of the upsampled class activation map, Selvaraju et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ._validate import check_int
from .errors import ParamError

Reduction = Literal["abs_sum", "sum", "relu_sum"]


@dataclass(frozen=True)
class Method:
    """What one explanation method is.

    Attributes:
        name: the method's name in ``params.yaml`` (``explain.methods``) and in every artifact.
        reduction: how an attribution becomes a map (module docstring).
        attackable: has a twice-differentiable version in :mod:`deepsaliency.differentiable`, so
            ``attack.methods`` may list it.
        smoothed_attack: the attack differentiates it on the softplus-β network, β annealed (gradient methods of
            ReLU networks have no curvature otherwise); RISE needs no second derivative.
        input_gradient: the input must require grad (gradient-based methods; not RISE or occlusion).
        source: where the implementation comes from, for the README and the report.
        fixed_beta: the explanation IS the map of the softplus-β network with the method's own fixed ``beta``
            (Dombrowski et al. 2019's defence): the attack explains on that network and keeps the class on the
            original one, with no annealing.
    """

    name: str
    reduction: Reduction
    attackable: bool
    smoothed_attack: bool
    input_gradient: bool
    source: str
    fixed_beta: bool = False


def _m(
    name: str,
    source: str,
    reduction: Reduction = "abs_sum",
    attackable: bool = False,
    smoothed_attack: bool = False,
    input_gradient: bool = True,
    fixed_beta: bool = False,
) -> Method:
    return Method(name, reduction, attackable, smoothed_attack, input_gradient, source, fixed_beta)


#: The β-smoothed defence's methods: attacked on their own fixed-β network (see :attr:`Method.fixed_beta`).
_DEFENDED: dict[str, Any] = {"attackable": True, "fixed_beta": True}

#: Every method, in the order tables and figures show them.
REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        _m("rise", "Petsiuk et al. 2018, written here", "sum", attackable=True, input_gradient=False),
        _m("integrated_gradients", "Captum IntegratedGradients", attackable=True, smoothed_attack=True),
        _m("saliency", "Captum Saliency", attackable=True, smoothed_attack=True),
        _m("input_x_gradient", "Captum InputXGradient", attackable=True, smoothed_attack=True),
        _m("smoothgrad", "Captum NoiseTunnel(Saliency)", attackable=True, smoothed_attack=True),
        _m("gradient_shap", "Captum GradientShap"),
        _m("occlusion", "Captum Occlusion", input_gradient=False),
        # Grad-CAM's map moves with x through the feature map A itself (its weights ∂f/∂A are piecewise
        # constant in x): attacked on the original network, as RISE.
        _m("gradcam", "Captum LayerGradCam", "relu_sum", attackable=True),
        _m("guided_backprop", "Captum GuidedBackprop"),
        _m("deeplift", "Captum DeepLift"),
        _m("gradcam_plus_plus", "grad-cam GradCAMPlusPlus", "relu_sum"),
        _m("lrp", "zennit EpsilonPlusFlat"),
        # Dombrowski et al. (2019)'s defence: the same explanations of the β-smoothed network (deepsaliency.defence).
        _m("saliency_smoothed", "Captum Saliency on the softplus-β network", **_DEFENDED),
        _m("input_x_gradient_smoothed", "Captum InputXGradient on the softplus-β network", **_DEFENDED),
        _m("integrated_gradients_smoothed", "Captum IntegratedGradients on the softplus-β network", **_DEFENDED),
    )
}

#: Every method name (``explain.methods`` may list any of them).
METHODS: tuple[str, ...] = tuple(REGISTRY)
#: The methods the manipulation attack can target (``attack.methods``), in table order.
ATTACK_METHODS: tuple[str, ...] = tuple(m for m, info in REGISTRY.items() if info.attackable)
#: The attacked methods differentiated on the softplus-β network, β annealed.
GRADIENT_METHODS: tuple[str, ...] = tuple(m for m, info in REGISTRY.items() if info.smoothed_attack)
#: The attacked methods whose explanation is their own fixed-β network's map (the defence).
FIXED_BETA_METHODS: tuple[str, ...] = tuple(m for m, info in REGISTRY.items() if info.fixed_beta)
#: The attacked methods whose explanation differentiates the model with respect to the input.
INPUT_GRADIENT_METHODS: tuple[str, ...] = tuple(m for m in ATTACK_METHODS if REGISTRY[m].input_gradient)


def method(name: str, what: str = "method") -> Method:
    """The registry entry of ``name``.

    Raises:
        ParamError: ``name`` is not a known method (one line naming ``what`` and the allowed names).
    """
    if name not in REGISTRY:
        raise ParamError(f"{what}: {name!r} is not a known method (allowed: {', '.join(METHODS)})")
    return REGISTRY[name]


def check_ig_steps(n_steps: Any, integration: str, name: str = "n_steps") -> int:
    """``n_steps`` for Captum's quadrature ``integration``: ≥ 1, and ≥ 2 for the ``riemann_*`` rules
    (Captum asserts "The number of steps has to be larger than one" for those).

    Raises:
        ParamError: one line naming ``name``.
    """
    low = 2 if str(integration).startswith("riemann") else 1
    return check_int(n_steps, name, low, why=f"integration {integration}" if low == 2 else "")


def check_occlusion(
    window: Any,
    stride: Any,
    size: tuple[int, int],
    names: tuple[str, str] = ("window", "stride"),
    size_name: str = "the input size",
) -> None:
    """What Captum's ``Occlusion`` requires of a square ``window`` and ``stride`` on an (H, W) input.

    Captum (``captum/attr/_core/occlusion.py``) asserts that the window fits the input and that the
    stride is ≤ the window in every dimension the window does not cover whole; with a full-size
    window any stride ≤ the input size is accepted here (one position either way).

    Raises:
        ParamError: one line naming ``names[0]`` (window) or ``names[1]`` (stride).
    """
    short = min(int(v) for v in size)
    window = check_int(window, names[0], 1, short, why=size_name)
    if window < max(int(v) for v in size):  # some dimension is not covered whole
        check_int(stride, names[1], 1, window, why=f"{names[0]} {window}; Captum's Occlusion needs stride ≤ window")
    else:
        check_int(stride, names[1], 1, short, why=size_name)
