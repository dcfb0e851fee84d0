"""Attribution methods by name: Captum for every method but RISE.

Map reduction (documented once, used by every stage and metric): an attribution
(C, H, W) becomes a non-negative 2-D map (H, W) by

* pixel-attribution methods (saliency, input_x_gradient, integrated_gradients,
  smoothgrad, gradient_shap, occlusion): the sum over channels of |attribution|
  — the un-normalised ``h`` of Dombrowski et al. (2019);
* ``rise``: the saliency itself (already non-negative, one channel);
* ``gradcam``: ReLU of the bilinearly upsampled class activation map, as in
  Selvaraju et al. (2017).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

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

from . import rise as rise_module
from .errors import AttributionError, ParamError

METHODS = (
    "rise",
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "smoothgrad",
    "gradient_shap",
    "occlusion",
    "gradcam",
)


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


def _saliency(model, x, target, abs: bool = True):
    return Saliency(model).attribute(x, target=target, abs=abs)


def _input_x_gradient(model, x, target):
    return InputXGradient(model).attribute(x, target=target)


def _integrated_gradients(model, x, target, n_steps: int = 50, integration: str = "gausslegendre", internal_batch_size: int = 16):
    # "integration" is Captum's ``method`` (renamed: ``method`` names the attribution method here).
    # Baseline: black image (zero in pixel space), the usual choice for ImageNet.
    return IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps, method=integration, internal_batch_size=internal_batch_size
    )


def _smoothgrad(model, x, target, nt_samples: int = 20, stdevs: float = 0.15, seed: int = 0, nt_samples_batch_size: int = 10):
    # stdevs is in [0, 1] pixel units (0.15 ≈ the 10–20 % noise level Smilkov et al. recommend).
    with seeded(seed, x.device):
        return NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=nt_samples, stdevs=stdevs, target=target,
            nt_samples_batch_size=nt_samples_batch_size, abs=True,
        )


def _gradient_shap(model, x, target, n_samples: int = 20, stdevs: float = 0.1, seed: int = 0):
    # Baseline distribution: a black and a white image (pixel space).
    baselines = torch.cat([torch.zeros_like(x), torch.ones_like(x)])
    with seeded(seed, x.device):
        return GradientShap(model).attribute(x, baselines=baselines, target=target, n_samples=n_samples, stdevs=stdevs)


def _occlusion(model, x, target, window: int = 32, stride: int = 16, baseline: float = 0.0, perturbations_per_eval: int = 8):
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride),
        baselines=baseline, target=target, perturbations_per_eval=perturbations_per_eval,
    )


def gradcam_layer(model: nn.Module, layer: str = "auto") -> nn.Module:
    """The layer Grad-CAM looks at: ``auto`` is the last feature map before pooling."""
    if layer != "auto":
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ParamError(f"gradcam.layer: {layer!r} is not a submodule of the model (use 'auto' or a dotted path like 'net.bn2')") from None
    for name in ("net.bn2", "net.layer4", "net.features"):  # timm EfficientNet, torchvision ResNet, VGG-style
        try:
            return model.get_submodule(name)
        except AttributeError:
            continue
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ParamError("gradcam.layer: 'auto' found no convolution in the model; name a layer")
    return convs[-1]


def _gradcam(model, x, target, layer: str = "auto"):
    cam = LayerGradCam(model, gradcam_layer(model, layer)).attribute(x, target=target)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")


def _rise(model, x, target, masks: "rise_module.RiseMasks", batch_size: int = 16, progress: bool = False):
    if masks is None:
        raise ParamError("rise: needs masks (generate_masks(...) or the masks stage's data/masks/masks.npz)")
    sal = [rise_module.explain(model, xi[None], masks, batch_size=batch_size, target=int(t), progress=progress) for xi, t in zip(x, target)]
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
}


def attribute(model: nn.Module, x: torch.Tensor, method: str, target: int | list[int] | torch.Tensor | None = None, **params: Any) -> torch.Tensor:
    """Attribution of ``method`` for a batch of images.

    Args:
        model: a classifier in pixel space (:class:`deepsaliency.Model`).
        x: images (B, 3, H, W) in [0, 1].
        method: one of :data:`METHODS`.
        target: class index (or one per image); None → the model's prediction.
        **params: the method's parameters (its ``params.yaml`` section); ``rise``
            needs ``masks``.

    Returns:
        The raw attribution, (B, 3, H, W) — or (B, 1, H, W) for ``rise`` and ``gradcam`` —
        detached, float32.
    """
    if method not in _DISPATCH:
        raise ParamError(f"explain.methods: {method!r} is not a known method (allowed: {', '.join(METHODS)})")
    # Gradient methods need a leaf that requires grad (Captum warns otherwise).
    x = x.detach().to(model.device).requires_grad_(method not in ("rise", "occlusion"))
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(-1)
    target = torch.as_tensor(target, device=x.device).reshape(-1).expand(len(x))
    try:
        out = _DISPATCH[method](model, x, target, **params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ParamError(f"{method}: {exc}".replace("_" + method + "()", "")) from None
        raise
    return out.detach().float()


def reduce_map(attribution: torch.Tensor, method: str) -> torch.Tensor:
    """Reduce an attribution (…, C, H, W) to a non-negative map (…, H, W) by the module's rule."""
    if method == "gradcam":
        return attribution.sum(-3).clamp_min(0)
    if method == "rise":
        return attribution.sum(-3)
    return attribution.abs().sum(-3)


def check_finite(values: torch.Tensor, method: str, image: str) -> None:
    """Raise :class:`AttributionError` if ``values`` holds NaN or infinite entries."""
    bad = (~torch.isfinite(values)).sum().item()
    if bad:
        raise AttributionError(f"{method}: {image}: attribution has {bad} NaN/infinite values (of {values.numel()}); refusing to use it")


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
    for xi, stem, target in tqdm(list(zip(x, stems, targets)), desc=method, unit="img"):
        attr = attribute(model, xi[None], method, target=int(target), **params)[0].cpu()
        check_finite(attr, method, stem)
        out.append((attr, reduce_map(attr, method)))
    return out
