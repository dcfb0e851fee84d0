"""How each explanation method attributes: Captum for every method but RISE, Grad-CAM++ and LRP.

Which methods exist, and what each one is (its map reduction, whether it can be attacked), is the registry
:mod:`deepsaliency.methods`; this module maps the same names to the calls (a test checks the two agree).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from captum.attr import (
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from . import defence, methods_extra
from . import rise as rise_module
from ._validate import check_int, check_target, num_classes
from .errors import AttributionError, ParamError
from .methods import check_ig_steps, check_occlusion
from .methods import method as _method
from .models import model_device, preserves_model_state
from .params import DEFAULTS as D  # the one default of each parameter: the params section's
from .params import section_defaults


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch and numpy for a block, restoring the global generators afterwards.

    Captum draws SmoothGrad noise from torch and GradientSHAP's baselines and
    path points from numpy's global generator; both must be fixed for
    byte-identical artifacts, without leaking state into the caller.
    """
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)


@section_defaults(D.saliency)
def _saliency(model, x, target, abs: bool):
    return Saliency(model).attribute(x, target=target, abs=abs)


def _input_x_gradient(model, x, target):
    return InputXGradient(model).attribute(x, target=target)


@section_defaults(D.integrated_gradients)
def _integrated_gradients(model, x, target, n_steps: int, integration: str, internal_batch_size: int):
    # "integration" is Captum's ``method`` (renamed: ``method`` names the attribution method here).
    # Baseline: black image (zero in pixel space), the usual choice for ImageNet.
    check_ig_steps(n_steps, integration)
    return IntegratedGradients(model).attribute(
        x,
        baselines=torch.zeros_like(x),
        target=target,
        n_steps=n_steps,
        method=integration,
        internal_batch_size=internal_batch_size,
    )


@section_defaults(D.smoothgrad)
def _smoothgrad(model, x, target, nt_samples: int, stdevs: float, seed: int, nt_samples_batch_size: int):
    # stdevs is in [0, 1] pixel units (0.15 ≈ the 10–20 % noise level Smilkov et al. recommend).
    with seeded(seed, x.device):
        return NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=nt_samples,
            stdevs=stdevs,
            target=target,
            nt_samples_batch_size=nt_samples_batch_size,
            abs=True,
        )


@section_defaults(D.gradient_shap)
def _gradient_shap(model, x, target, n_samples: int, stdevs: float, seed: int):
    # Baseline distribution: a black and a white image (pixel space).
    baselines = torch.cat([torch.zeros_like(x), torch.ones_like(x)])
    with seeded(seed, x.device):
        return GradientShap(model).attribute(x, baselines=baselines, target=target, n_samples=n_samples, stdevs=stdevs)


@section_defaults(D.occlusion)
def _occlusion(model, x, target, window: int, stride: int, baseline: float, perturbations_per_eval: int):
    check_occlusion(window, stride, tuple(x.shape[-2:]))
    check_int(perturbations_per_eval, "perturbations_per_eval", 1)
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(x.shape[1], window, window),
        strides=(x.shape[1], stride, stride),
        baselines=baseline,
        target=target,
        perturbations_per_eval=perturbations_per_eval,
    )


def gradcam_layer(model: nn.Module, layer: str = "auto", name: str = "layer") -> nn.Module:
    """The layer Grad-CAM looks at: ``auto`` is the last feature map before pooling.

    Args:
        layer: ``auto`` or a dotted submodule path such as ``net.bn2``.
        name: the argument's name in messages (``layer``; the explain stage passes ``gradcam.layer``).

    Raises:
        ParamError: ``layer`` is not a submodule of ``model`` (or ``auto`` finds no convolution).
    """
    if not isinstance(layer, str) or not layer:
        raise ParamError(f"{name}: {layer!r} is not allowed ('auto' or a dotted submodule path like 'net.bn2')")
    if layer != "auto":
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ParamError(
                f"{name}: {layer!r} is not a submodule of the model (use 'auto' or a dotted path like 'net.bn2')"
            ) from None
    for candidate in ("net.bn2", "net.layer4", "net.features"):  # timm EfficientNet, torchvision ResNet, VGG-style
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ParamError(f"{name}: 'auto' found no convolution in the model; name a layer")
    return convs[-1]


@contextlib.contextmanager
def require_feature_map(module: nn.Module, layer: str, name: str = "layer") -> Iterator[None]:
    """Within the block, a forward pass through ``module`` raises :class:`ParamError` (from a forward
    hook, before any backward) unless its output is a 4-D tensor (B, C, h, w), what Grad-CAM needs."""

    def hook(_module, _inputs, output):
        if not (isinstance(output, torch.Tensor) and output.dim() == 4):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ParamError(f"{name}: {layer!r} outputs shape {shape}; Grad-CAM needs a feature map (B, C, h, w)")

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def check_gradcam_layer(
    model: nn.Module, layer: str = "auto", name: str = "layer", input_size: tuple[int, int] | None = None
) -> nn.Module:
    """Resolve ``layer`` and probe it with one forward pass of a black image (1, 3, H, W).

    ``input_size`` (H, W) defaults to ``model.input_size`` (224 × 224 for the embedded model); the
    probe runs under ``no_grad``. The explain stage calls this before any explanation.

    Returns:
        The layer module.

    Raises:
        ParamError: not a submodule, or its output is not a feature map (B, C, h, w) — one line
            naming ``name`` and the output shape.
    """
    module = gradcam_layer(model, layer, name)
    h, w = input_size if input_size is not None else getattr(model, "input_size", (224, 224))
    device = model_device(model)
    with require_feature_map(module, layer, name), torch.no_grad():
        model(torch.zeros(1, 3, h, w, device=device))
    return module


@section_defaults(D.gradcam)
def _gradcam(model, x, target, layer: str):
    module = gradcam_layer(model, layer)
    # The hook stops a layer with no spatial output (net.classifier, net.global_pool, net) during
    # Captum's forward pass, instead of an interpolate traceback after it.
    with require_feature_map(module, layer):
        cam = LayerGradCam(model, module).attribute(x, target=target)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")


def _rise(model, x, target, masks: rise_module.RiseMasks, batch_size: int | str = D.rise.batch_size, progress=False):
    if masks is None:
        raise ParamError("rise: needs masks (generate_masks(...) or the masks stage's data/masks/masks.npz)")
    sal = [
        rise_module.rise_saliency(model, xi[None], masks, batch_size=batch_size, target=int(t), progress=progress)
        for xi, t in zip(x, target, strict=True)
    ]
    return torch.stack(sal).unsqueeze(1)


_DISPATCH: dict[str, Callable[..., torch.Tensor]] = {
    "rise": _rise,
    "integrated_gradients": _integrated_gradients,
    "saliency": _saliency,
    "input_x_gradient": _input_x_gradient,
    "smoothgrad": _smoothgrad,
    "gradient_shap": _gradient_shap,
    "occlusion": _occlusion,
    "gradcam": _gradcam,
    "guided_backprop": methods_extra.guided_backprop,
    "deeplift": methods_extra.deeplift,
    "gradcam_plus_plus": methods_extra.gradcam_plus_plus,
    "lrp": methods_extra.lrp,
    "saliency_smoothed": defence.saliency_smoothed,
    "input_x_gradient_smoothed": defence.input_x_gradient_smoothed,
    "integrated_gradients_smoothed": defence.integrated_gradients_smoothed,
}


@preserves_model_state
def attribute(
    model: nn.Module, x: torch.Tensor, method: str, target: int | list[int] | torch.Tensor | None = None, **params: Any
) -> torch.Tensor:
    """Attribution of ``method`` for a batch of images.

    Args:
        model: a classifier in pixel space (:class:`deepsaliency.Model`).
        x: images (B, 3, H, W) in [0, 1].
        method: one of :data:`deepsaliency.methods.METHODS`.
        target: class index in [0, K) for a K-class model — an int, a sequence or a 0-d/1-d integer
            tensor, one for all images or one per image; None → the model's prediction.
        **params: the method's parameters (its ``params.yaml`` section); ``rise``
            needs ``masks``; ``gradcam`` takes ``layer`` (a feature map (B, C, h, w)); the ``*_smoothed``
            methods take ``beta`` (> 0, :mod:`deepsaliency.defence`).

    Returns:
        The raw attribution, (B, 3, H, W) — or (B, 1, H, W) for ``rise`` and ``gradcam`` —
        detached, float32.

    Raises:
        ParamError: an unknown method or parameter, a ``target`` outside [0, K) or with neither one
            nor B entries, an occlusion ``window``/``stride`` Captum cannot run, ``n_steps`` < 2 with a
            ``riemann_*`` integration, a Grad-CAM ``layer`` that is not a feature map.
    """
    info = _method(method, "method")
    # Gradient methods need a leaf that requires grad (Captum warns otherwise).
    x = x.detach().to(model_device(model)).requires_grad_(info.input_gradient)
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(-1)
    else:  # one shared check for every method: -1 must not quietly mean class 999
        target = check_target(target, len(x), num_classes(model, x)).to(x.device)
    try:
        out = _DISPATCH[method](model, x, target, **params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ParamError(f"{method}: {exc}".replace("_" + method + "()", "")) from None
        raise
    return out.detach().float()


def reduce_map(attribution: torch.Tensor, method: str) -> torch.Tensor:
    """Reduce an attribution (…, C, H, W) to a non-negative map (…, H, W) by the method's
    :attr:`~deepsaliency.methods.Method.reduction` (see :mod:`deepsaliency.methods`)."""
    reduction = _method(method, "method").reduction
    if reduction == "relu_sum":
        return attribution.sum(-3).clamp_min(0)
    if reduction == "sum":
        return attribution.sum(-3)
    return attribution.abs().sum(-3)


def check_finite(values: torch.Tensor, method: str, image: str) -> None:
    """Raise :class:`AttributionError` if ``values`` holds NaN or infinite entries."""
    bad = (~torch.isfinite(values)).sum().item()
    if bad:
        raise AttributionError(
            f"{method}: {image}: attribution has {bad} NaN/infinite values (of {values.numel()}); refusing to use it"
        )


def explain_images(
    model: nn.Module, x: torch.Tensor, method: str, stems: list[str], targets: list[int], **params: Any
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Attribution and reduced map of ``method`` for each image, with a progress bar.

    Args:
        x: images (B, 3, H, W) in [0, 1].
        stems: image names, for progress and error messages.
        targets: the class to explain for each image.
        **params: the method's parameters (see :func:`attribute`).

    Returns:
        One ``(attribution (C, H, W), map (H, W))`` pair per image, on the CPU.

    Raises:
        AttributionError: an attribution has NaN or infinite values.
    """
    from tqdm.auto import tqdm

    out = []
    for xi, stem, target in tqdm(list(zip(x, stems, targets, strict=True)), desc=method, unit="img"):
        attr = attribute(model, xi[None], method, target=int(target), **params)[0].cpu()
        check_finite(attr, method, stem)
        out.append((attr, reduce_map(attr, method)))
    return out


def check_model_params(params: dict, model: Any) -> None:
    """The params cross-checks that need the loaded model, run by a stage before any explanation.

    ``gradcam.layer`` (and ``gradcam_plus_plus.layer``) must name a submodule whose output is a feature map
    (B, C, h, w) — probed with one forward pass of a black image at ``model.input_size`` — and
    ``explain.target`` must be a class of the model ([0, K) for its K outputs). The checks without a model
    are :func:`deepsaliency.params.validate`'s.

    Raises:
        ParamError: one line naming ``gradcam.layer``, ``gradcam_plus_plus.layer`` or ``explain.target``.
    """
    for section in ("gradcam", "gradcam_plus_plus"):  # both look at one layer's feature map
        check_gradcam_layer(model, params[section]["layer"], f"{section}.layer")
    if params["explain"]["target"] is not None:
        probe = torch.zeros(1, 3, *model.input_size, device=model_device(model))
        check_target(params["explain"]["target"], 1, num_classes(model, probe), "explain.target")
