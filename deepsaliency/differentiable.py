"""Differentiable explanations: attributions that can themselves be differentiated.

Dombrowski et al. (2019), https://arxiv.org/abs/1906.07983, manipulate an
explanation by gradient descent on the input, which needs the explanation as a
differentiable function of the input (``create_graph=True``). Captum returns
detached attributions, so the methods the attack targets are written again
here, each equal to its Captum (or :func:`deepsaliency.rise.explain`) value on
the same inputs (tests/test_diffexplain.py checks 1e-4 relative error):

* ``saliency``: ``|∇_x f_c(x)|`` — Captum ``Saliency(abs=True)``;
* ``input_x_gradient``: ``x · ∇_x f_c(x)`` — Captum ``InputXGradient``;
* ``integrated_gradients``: ``x · Σ_k w_k ∇f_c(α_k x)`` with a black (zero)
  baseline and Captum's quadrature (``integration='gausslegendre'`` by default);
* ``smoothgrad``: ``mean_k |∇f_c(x + ε_k)|``, ``ε_k ~ N(0, stdevs²)`` in pixel units,
  drawn from a generator seeded with ``seed`` exactly as Captum's
  ``NoiseTunnel(Saliency)`` draws them after ``torch.manual_seed(seed)``, so the
  noise is fixed and the map deterministic and differentiable;
* ``rise``: ``Σ_i softmax_c(f(x ⊙ M_i)) · M_i / (k · p1)`` over k masks of a
  :class:`~deepsaliency.rise.RiseMasks` (all, or a fixed random subset);
* ``gradcam``: ``ReLU(up(Σ_k mean_ij(∂f_c/∂A_k) · A_k))`` for the feature map A of ``layer``
  (Selvaraju et al. 2017) — Captum ``LayerGradCam``, upsampled bilinearly, then the registry's
  ``relu_sum``; it depends on x through A and through ∂f_c/∂A (the second derivative of f: zero almost
  everywhere for a ReLU network, and exactly zero after its last activation, where ∂f_c/∂A is constant);
* ``saliency_smoothed``, ``input_x_gradient_smoothed``, ``integrated_gradients_smoothed``: the method on the
  softplus-β network with the method's own fixed ``beta`` (Dombrowski et al. 2019, sec. 5;
  :mod:`deepsaliency.defence` computes them with Captum). They return no logits: the classifier is the original.

Each returns the raw attribution (B, 3, H, W) — (B, 1, H, W) for ``rise`` and ``gradcam`` (already ≥ 0) —
and :func:`unit_sum_map` gives the paper's ``h = Σ_c |attr| / total`` (each map sums to 1; not to be
confused with :func:`deepsaliency.metrics.similarity.normalize_map`, a map divided by its maximum).

Public names: :func:`differentiable_attribution` (alias :func:`explanation`, the seed project's
name) and :func:`unit_sum_map` (alias :func:`normalized_map`, the name before issue 13).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters
from torch import nn
from torch.nn import functional as F

from ._validate import check_choice, check_float, check_int, check_target, num_classes
from .errors import ParamError
from .methods import ATTACK_METHODS, check_ig_steps
from .models import preserves_model_state
from .params import DEFAULTS as D  # the one default of each parameter: the params section's
from .params import section_defaults
from .params.types import Section

#: The methods written here twice-differentiably: the registry's attackable ones (:mod:`deepsaliency.methods`).
DIFF_METHODS = ATTACK_METHODS


def _gradient(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇_inputs Σ_b f_{target_b}(inputs_b), logits): gradient of each image's target logit."""
    with torch.enable_grad():
        if not inputs.requires_grad:
            inputs = inputs.requires_grad_()
        logits = model(inputs)
        selected = logits.gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(selected, inputs, create_graph=create_graph)
    return grad, logits


def _batched_gradient(model, inputs, target, create_graph, batch_size) -> torch.Tensor:
    """:func:`_gradient` in chunks of ``batch_size`` images (None = one chunk)."""
    if batch_size is None or batch_size >= len(inputs):
        return _gradient(model, inputs, target, create_graph)[0]
    return torch.cat(
        [
            _gradient(model, inputs[i : i + batch_size], target[i : i + batch_size], create_graph)[0]
            for i in range(0, len(inputs), batch_size)
        ]
    )


@section_defaults(D.saliency)
def _saliency(model, x, target, create_graph, abs: bool):
    grad, logits = _gradient(model, x, target, create_graph)
    return (grad.abs() if abs else grad), logits


def _input_x_gradient(model, x, target, create_graph):
    grad, logits = _gradient(model, x, target, create_graph)
    return x * grad, logits


@section_defaults(D.integrated_gradients)
def _integrated_gradients(
    model,
    x,
    target,
    create_graph,
    n_steps: int,
    integration: str,
    internal_batch_size: int | None,
    alpha_seed: int | None = None,
):
    n_steps = check_int(n_steps, "n_steps", 1)
    if alpha_seed is None:
        integration = check_choice(integration, "integration", SUPPORTED_METHODS)
        n_steps = check_ig_steps(n_steps, integration)  # ≥ 2 for riemann_*: Captum asserts it
        step_sizes_fn, alphas_fn = approximation_parameters(integration)
        step_sizes, alphas = step_sizes_fn(n_steps), alphas_fn(n_steps)
    else:
        # Stratified random path points α_k = (k + u_k)/n: an unbiased estimate of the integral
        # (used by the attack to redraw the points every step instead of over-fitting a fixed few).
        u = torch.rand(n_steps, generator=torch.Generator().manual_seed(int(alpha_seed)), dtype=torch.float64)
        alphas = [float((k + u[k]) / n_steps) for k in range(n_steps)]
        step_sizes = [1.0 / n_steps] * n_steps
    # Step-major stacking of the path points, as Captum does: (n_steps·B, 3, H, W).
    scaled = torch.cat([alpha * x for alpha in alphas])
    grads = _batched_gradient(model, scaled, target.repeat(n_steps), create_graph, internal_batch_size)
    weights = torch.tensor(step_sizes, dtype=x.dtype, device=x.device).view(n_steps, 1, 1, 1, 1)
    total = (grads.view(n_steps, *x.shape) * weights).sum(0)
    return total * x, None  # baseline 0: attribution = (x − 0) · Σ w_k ∇f(α_k x)


def smoothgrad_noise(
    shape: torch.Size, nt_samples: int, stdevs: float, seed: int, nt_samples_batch_size: int | None, device
) -> torch.Tensor:
    """The noise of :func:`_smoothgrad`, (nt_samples·B, C, H, W), image-major.

    Drawn in Captum's order — one ``torch.normal`` per partition of
    ``nt_samples_batch_size`` samples, each image's samples adjacent — from a
    CPU generator seeded with ``seed``, so it equals Captum's draws after
    ``torch.manual_seed(seed)`` on the CPU.
    """
    b = shape[0]
    part = nt_samples if nt_samples_batch_size is None else min(nt_samples, nt_samples_batch_size)
    sizes = [part] * (nt_samples // part) + ([nt_samples % part] if nt_samples % part else [])
    gen = torch.Generator().manual_seed(int(seed))
    chunks = [
        torch.normal(0.0, float(stdevs), (b * k, *shape[1:]), generator=gen).view(b, k, *shape[1:]) for k in sizes
    ]
    return torch.cat(chunks, dim=1).reshape(b * nt_samples, *shape[1:]).to(device)


@section_defaults(D.smoothgrad)
def _smoothgrad(
    model,
    x,
    target,
    create_graph,
    nt_samples: int,
    stdevs: float,
    seed: int,
    nt_samples_batch_size: int | None,
    abs: bool = True,
):
    nt_samples = check_int(nt_samples, "nt_samples", 1)
    if nt_samples_batch_size is not None:  # 0 would mean partitions of no samples
        nt_samples_batch_size = check_int(nt_samples_batch_size, "nt_samples_batch_size", 1)
    stdevs = check_float(stdevs, "stdevs", 0.0, allowed="a finite number ≥ 0, pixel units")
    noise = smoothgrad_noise(x.shape, nt_samples, stdevs, seed, nt_samples_batch_size, x.device)
    noisy = x.repeat_interleave(nt_samples, dim=0) + noise.to(x.dtype)
    grads = _batched_gradient(
        model,
        noisy,
        target.repeat_interleave(nt_samples),
        create_graph,
        nt_samples_batch_size and nt_samples_batch_size * len(x),
    )
    grads = grads.abs() if abs else grads
    return grads.view(len(x), nt_samples, *x.shape[1:]).mean(1), None


def rise_subset(n_masks: int, k: int | None, seed: int = 0, name: str = "k") -> np.ndarray:
    """Indices of the fixed random subset of ``k`` of ``n_masks`` masks (sorted; None → all).

    ``name``: the argument's name in messages (``k``; the differentiable RISE passes ``rise_masks``).
    """
    if k is None or k >= n_masks:
        return np.arange(n_masks)
    k = check_int(k, name, 1)
    return np.sort(np.random.default_rng(seed).choice(n_masks, size=k, replace=False))


def _rise(
    model,
    x,
    target,
    create_graph,
    masks=None,
    rise_masks: int | None = None,
    mask_seed: int = 0,
    batch_size: int = 16,
    p1: float | None = None,
):
    if masks is None:
        raise ParamError("rise: needs masks (generate_masks(...) or the masks stage's data/masks/masks.npz)")
    idx = rise_subset(len(masks), rise_masks, mask_seed, name="rise_masks")
    m = masks.take(idx, device=x.device).to(x.dtype)  # (k, 1, H, W)
    k, p1 = len(m), masks.p1 if p1 is None else float(p1)
    h, w = x.shape[-2:]
    batch_size = check_int(batch_size, "batch_size", 1)
    sal = []
    with torch.set_grad_enabled(create_graph):
        for xi, t in zip(x, target, strict=True):
            acc = torch.zeros(h * w, dtype=x.dtype, device=x.device)
            for i in range(0, k, batch_size):
                mi = m[i : i + batch_size]
                probs = model((xi[None] * mi).contiguous(memory_format=torch.channels_last)).softmax(-1)[:, t]
                acc = acc + probs @ mi.view(len(mi), h * w)
            sal.append((acc / (k * p1)).view(1, h, w))
    return torch.stack(sal), None


@section_defaults(D.gradcam)
def _gradcam(model, x, target, create_graph, layer: str):
    from .attribution import gradcam_layer, require_feature_map  # the explain stage's layer choice and check

    module = gradcam_layer(model, layer)
    feats: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: feats.append(out))
    try:
        with torch.enable_grad(), require_feature_map(module, layer):
            logits = model(x if x.requires_grad else x.requires_grad_())
    finally:
        handle.remove()
    a = feats[-1]
    (grad,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), a, create_graph=create_graph)
    # Captum's LayerGradCam: channel weights = spatial mean of ∂f_c/∂A; its attribution is then upsampled
    # bilinearly (LayerAttribution.interpolate) and the registry's relu_sum reduction takes the ReLU.
    cam = (grad.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True)
    return F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear").clamp_min(0), logits


def _on_smoothed_network(plain: Callable[..., Any], section: Section) -> Callable[..., Any]:
    """``plain`` computed on the softplus-β network (:func:`deepsaliency.defence.smoothed_network`), β fixed;
    ``beta`` defaults to ``section.beta`` (``DEFAULTS.<method>_smoothed``)."""

    @section_defaults(section)
    def smoothed(model, x, target, create_graph, beta: float, **params):
        from .defence import smoothed_network

        with smoothed_network(model, beta):
            attr, _ = plain(model, x, target, create_graph, **params)
        return attr, None  # the β-network's logits are not the classifier's: the caller runs the original

    return smoothed


_DISPATCH: dict[str, Callable[..., Any]] = {
    "saliency": _saliency,
    "input_x_gradient": _input_x_gradient,
    "integrated_gradients": _integrated_gradients,
    "smoothgrad": _smoothgrad,
    "rise": _rise,
    "gradcam": _gradcam,
    "saliency_smoothed": _on_smoothed_network(_saliency, D.saliency_smoothed),
    "input_x_gradient_smoothed": _on_smoothed_network(_input_x_gradient, D.input_x_gradient_smoothed),
    "integrated_gradients_smoothed": _on_smoothed_network(_integrated_gradients, D.integrated_gradients_smoothed),
}


def method_default(method: str, name: str) -> Any:
    """The default of parameter ``name`` of ``method``'s explanation (read from its signature: one default)."""
    return inspect.signature(_DISPATCH[method]).parameters[name].default


def check_method(method: str, name: str = "method") -> str:
    """``method`` if it has a differentiable explanation, else a one-line :class:`ParamError` naming ``name``."""
    if method not in _DISPATCH:
        raise ParamError(f"{name}: {method!r} cannot be attacked (allowed: {', '.join(DIFF_METHODS)})")
    return method


def explanation_and_logits(
    model: nn.Module, x: torch.Tensor, method: str, target, create_graph: bool = True, **params: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like :func:`explanation`, also returning the logits of ``model(x)`` when the method computed them
    on ``x`` itself (saliency, input_x_gradient), else None — so an attack can reuse that forward pass."""
    check_method(method)
    # The shared check (the attack's class targets come through here too); -1 must not mean class 999.
    target = check_target(target, len(x), num_classes(model, x)).to(x.device)
    try:
        return _DISPATCH[method](model, x, target, create_graph, **params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ParamError(f"{method}: {exc}".replace("_" + method + "()", "")) from None
        raise


@preserves_model_state
def differentiable_attribution(
    model: nn.Module, x: torch.Tensor, method: str, target: Any, create_graph: bool = True, **params: Any
) -> torch.Tensor:
    """The raw attribution of ``method``, differentiable with respect to ``x`` (alias :func:`explanation`).

    Args:
        model: a classifier in pixel space returning logits.
        x: images (B, 3, H, W) in [0, 1]; for gradients with respect to ``x`` it
            should require grad (it is made to, if it is a leaf that does not).
        method: one of :data:`DIFF_METHODS`.
        target: the class to explain, in [0, K) for a K-class model: an int, a sequence or a 0-d/1-d
            integer tensor, one for all images or exactly one per image.
        create_graph: keep the graph of the gradient computation so the result
            can be differentiated again (False: a cheaper first-order value).
        **params: the method's parameters — integrated_gradients: ``n_steps`` (32),
            ``integration`` ('gausslegendre'), ``internal_batch_size`` (16), ``alpha_seed``
            (None; an int → stratified random path points instead of the quadrature);
            smoothgrad: ``nt_samples`` (16), ``stdevs`` (0.15), ``seed`` (0),
            ``nt_samples_batch_size`` (8); saliency: ``abs`` (True); rise:
            ``masks`` (required), ``rise_masks`` (k, None = all), ``mask_seed`` (0),
            ``batch_size`` (16); gradcam: ``layer`` ('auto': the last feature map); the ``*_smoothed``
            methods: ``beta`` (10.0) and their plain method's parameters.

    Returns:
        (B, 3, H, W) — (B, 1, H, W) for ``rise`` and ``gradcam``.

    Raises:
        ParamError: a method that cannot be attacked, an unknown parameter, a ``target`` outside
            [0, K) or with neither one nor B entries, ``n_steps`` < 2 with a ``riemann_*`` integration.
    """
    return explanation_and_logits(model, x, method, target, create_graph, **params)[0]


#: The seed project's name of :func:`differentiable_attribution` (public API, kept).
explanation = differentiable_attribution


def unit_sum_map(attribution: torch.Tensor) -> torch.Tensor:
    """``h = Σ_c |attr| / Σ_{c,i,j} |attr|`` per image: (B, C, H, W) → (B, H, W), each summing to 1.

    Dombrowski et al.'s normalisation; for RISE (non-negative) it is the saliency over its total.
    """
    h = attribution.abs().sum(1)
    return h / h.sum((1, 2), keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)


#: The name of :func:`unit_sum_map` before issue 13 (public API, kept).
normalized_map = unit_sum_map
