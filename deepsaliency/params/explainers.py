"""The explanation methods' sections of ``params.yaml``: one pydantic model each, one default per key.

Each gives the keyword arguments of :func:`deepsaliency.attribution.attribute` (:meth:`Section.kwargs`) and,
for the attacked methods, those its differentiable version takes during the attack (``ATTACK_KEYS``). The
library's signatures take their defaults from these models (:func:`deepsaliency.params.section_defaults`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .types import NonEmpty, NonNegInt, NonNegNum, PosInt, PosNum, Section, Unit

Integration = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


class Saliency(Section):
    """Saliency (Simonyan et al. 2014), Captum."""

    ATTACK_KEYS: ClassVar[tuple[str, ...]] = ("abs",)
    abs: bool = Field(default=True, description="absolute gradient (Simonyan et al. 2014)")


class InputXGradient(Section):
    """Input × gradient (Shrikumar et al. 2016): no parameters."""


class IntegratedGradients(Section):
    """Integrated gradients (Sundararajan et al. 2017), Captum, black baseline."""

    ATTACK_KEYS: ClassVar[tuple[str, ...]] = ("integration",)
    n_steps: PosInt = Field(default=32, description="path points (Sundararajan et al. 2017)")
    integration: Integration = Field(default="gausslegendre", description="Captum's quadrature")
    internal_batch_size: PosInt = Field(default=16, description="path points per forward pass")


class SmoothGrad(Section):
    """SmoothGrad (Smilkov et al. 2017): Captum's ``NoiseTunnel(Saliency)``."""

    ATTACK_KEYS = ("stdevs", "seed")
    nt_samples: PosInt = Field(default=16, description="noisy copies (Smilkov et al. 2017)")
    stdevs: PosNum = Field(default=0.15, description="noise standard deviation in [0, 1] pixel units")
    seed: NonNegInt = Field(default=0, description="noise seed")
    nt_samples_batch_size: PosInt = Field(default=8, description="noisy copies per forward pass")


class GradientShap(Section):
    """GradientSHAP (Lundberg & Lee 2017), Captum, black and white baselines."""

    n_samples: PosInt = Field(default=16, description="GradientSHAP samples (Lundberg & Lee 2017), black baseline")
    stdevs: NonNegNum = Field(default=0.1, description="noise standard deviation in [0, 1] pixel units")
    seed: NonNegInt = Field(default=0, description="noise seed")


class Occlusion(Section):
    """Occlusion (Zeiler & Fergus 2014), Captum's ``Occlusion`` with square windows."""

    window: PosInt = Field(default=32, description="side of the occluding square (Zeiler & Fergus 2014)")
    stride: PosInt = Field(default=24, description="its stride (≤ `window`)")
    baseline: Unit = Field(default=0.0, description="value of the occluded pixels")
    perturbations_per_eval: PosInt = Field(default=8, description="occluded copies per forward pass")


class GradCam(Section):
    """Grad-CAM (Selvaraju et al. 2017), Captum's ``LayerGradCam``."""

    ATTACK_KEYS = ("layer",)
    layer: NonEmpty = Field(
        default="auto",
        description="layer name (`auto` = the last feature map, `net.bn2`; Selvaraju et al. 2017); its output "
        "must be a feature map (B, C, h, w), checked before any work",
    )


class GuidedBackprop(Section):
    """Guided Backprop (Springenberg et al. 2015), Captum's rule applied to ReLU6 too: no parameters."""


class DeepLift(Section):
    """DeepLift (Shrikumar et al. 2017), Captum, Rescale rule, black baseline."""

    eps: PosNum = Field(
        default=1e-10,
        description="DeepLift (Shrikumar et al. 2017), Rescale rule: guard of the multipliers' denominator",
    )


class GradCamPlusPlus(Section):
    """Grad-CAM++ (Chattopadhay et al. 2018), the ``grad-cam`` package."""

    layer: NonEmpty = Field(
        default="auto", description="Grad-CAM++ (Chattopadhay et al. 2018, `grad-cam`) on this layer"
    )


class Lrp(Section):
    """LRP (Bach et al. 2015), zennit's ``EpsilonPlusFlat`` composite."""

    epsilon: PosNum = Field(default=1e-6, description="LRP (Bach et al. 2015, zennit EpsilonPlusFlat): ε of the ε rule")
    canonize_skips: bool = Field(default=True, description="route timm's residual sums through zennit's `Sum` rule")


class Beta(Section):
    """The softplus-β network of the defence (Dombrowski et al. 2019, section 5; ``deepsaliency.defence``)."""

    beta: PosNum = Field(
        default=10.0, description="softplus β of the defence (Dombrowski et al. 2019, *Defence*); smaller is smoother"
    )


class SaliencySmoothed(Saliency, Beta):
    """Saliency of the softplus-β network."""

    ATTACK_KEYS = ("beta", "abs")


class InputXGradientSmoothed(InputXGradient, Beta):
    """Input × gradient of the softplus-β network."""

    ATTACK_KEYS = ("beta",)


class IntegratedGradientsSmoothed(IntegratedGradients, Beta):
    """Integrated gradients of the softplus-β network (the other keys as ``integrated_gradients``)."""

    ATTACK_KEYS = ("beta", "integration")
