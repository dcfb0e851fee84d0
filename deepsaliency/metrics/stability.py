"""Stability of explanations: max-sensitivity and infidelity (Yeh et al. 2019), computed by Captum.

Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the (In)fidelity and Sensitivity of Explanations",
NeurIPS 2019, https://arxiv.org/abs/1901.09392. Both numbers come from ``captum.metrics``; this module
only supplies the explanation, seeded perturbations and the per-image loop.

* ``sensitivity_max`` — :func:`captum.metrics.sensitivity_max`: the largest relative change
  ``‖Φ(x + δ) − Φ(x)‖_F / ‖Φ(x)‖_F`` of the raw attribution Φ (the method's Captum-shaped output,
  (1, C, H, W)) over ``n_perturb_samples`` draws of δ uniform in the L∞ ball of ``radius`` ([0, 1] pixel
  units). Unitless, ≥ 0; 0 for an explanation that does not move. Lower is more stable.
  As in Captum's ``default_perturb_func``, x + δ is not clamped to [0, 1] (a ≤ ``radius`` overshoot).
* ``infidelity`` — :func:`captum.metrics.infidelity` with ``normalize=True``:
  ``E_I[(β·Φ(x)·I − (f(x) − f(x − I)))²]`` with the same δ-distribution for I, f the target class's
  logit and β the least-squares scale of Φ (so methods in different units compare). Units: logit².
  Lower is more faithful. An attribution with one channel (RISE, Grad-CAM) is applied to every colour
  channel of its pixel.

Seeding: Captum's own ``default_perturb_func`` draws from torch's *global* generator. Here every call
gets a fresh ``torch.Generator`` on the CPU seeded with ``seed`` (noise drawn on the CPU, then moved to
the model's device), so a number does not depend on what ran before it, reruns are identical on any
device, and every method is scored on the *same* perturbations of an image (a paired comparison). The
caller's global random state is never used. Methods that draw noise themselves (SmoothGrad, GradientSHAP)
are seeded by their own ``seed`` parameter inside :func:`deepsaliency.attribution.attribute`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from ..attribution import attribute
from ..errors import ParamError
from ..methods import METHODS
from ..params import DEFAULTS as D  # the one default of each parameter: the params section's

#: Per-image metrics, in table order.
STABILITY_METRICS = ("sensitivity_max", "infidelity")


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ParamError(f"{name}: {value!r} is not allowed ({allowed})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_stability_args(radius: Any, n_perturb_samples: Any, seed: Any, batch_size: Any) -> None:
    """Validate the shared arguments; each error names the argument, its value and what is allowed."""
    real = isinstance(radius, (int, float)) and not isinstance(radius, bool)
    _check("radius", radius, real and 0 < radius <= 1, "a number in (0, 1], L∞ radius in [0, 1] pixel units")
    _check(
        "n_perturb_samples", n_perturb_samples, _is_int(n_perturb_samples) and n_perturb_samples >= 1, "an integer ≥ 1"
    )
    _check("seed", seed, _is_int(seed) and seed >= 0, "an integer ≥ 0")
    _check("batch_size", batch_size, _is_int(batch_size) and batch_size >= 1, "an integer ≥ 1")


def uniform_noise(shape: torch.Size, radius: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """δ uniform in [−radius, radius]^shape, drawn on the CPU from ``generator`` (device-independent numbers)."""
    noise = (torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1) * radius
    return noise.to(device)


def _first(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return inputs[0] if isinstance(inputs, tuple) else inputs


def sensitivity_perturbation(radius: float, seed: int) -> Callable[..., torch.Tensor]:
    """A ``perturb_func`` for :func:`captum.metrics.sensitivity_max`: x + δ from its own seeded generator."""
    generator = torch.Generator().manual_seed(seed)

    def perturb(inputs: torch.Tensor | tuple[torch.Tensor, ...], perturb_radius: float = radius) -> torch.Tensor:
        x = _first(inputs)
        return x + uniform_noise(x.shape, perturb_radius, generator, x.device)

    return perturb


def infidelity_perturbation(radius: float, seed: int) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A ``perturb_func`` for :func:`captum.metrics.infidelity`: (I, x − I) from its own seeded generator."""
    generator = torch.Generator().manual_seed(seed)

    def perturb(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x = _first(inputs)
        noise = uniform_noise(x.shape, radius, generator, x.device)
        return noise, x - noise

    return perturb


def _explanation_func(model: nn.Module, method: str, params: Mapping[str, Any]) -> Callable[..., tuple[torch.Tensor]]:
    def explain(inputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> tuple[torch.Tensor]:
        with torch.enable_grad():  # sensitivity_max runs the explanation under no_grad
            attr = attribute(model, _first(inputs), method, target=target, **params)
        # a tuple: Captum 0.9 iterates the first call's result without wrapping it; contiguous: it uses .view,
        # and a channels_last model gives channels_last gradients
        return (attr.contiguous(),)

    return explain


def stability_scores(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: int,
    params: Mapping[str, Any] | None = None,
    radius: float = D.stability.radius,
    n_perturb_samples: int = D.stability.n_perturb_samples,
    seed: int = D.stability.seed,
    batch_size: int = D.stability.batch_size,
) -> dict[str, float]:
    """Max-sensitivity and infidelity of one method on one image (see the module docstring).

    Args:
        model: a classifier in [0, 1] pixel space returning logits (never modified).
        x: one image (1, 3, H, W) in [0, 1].
        method: one of :data:`deepsaliency.attribution.METHODS`.
        target: the class explained and scored, in [0, K).
        params: the method's parameters (its params.yaml section; ``rise`` needs ``masks``).
        radius: L∞ radius of the perturbations in [0, 1] pixel units, in (0, 1].
        n_perturb_samples: perturbations per metric, ≥ 1.
        seed: seed of the perturbations (the same for both metrics and every method).
        batch_size: perturbed copies per explanation / forward call, ≥ 1.

    Returns:
        ``{"sensitivity_max": float ≥ 0, "infidelity": float ≥ 0}``.

    Raises:
        ParamError: an argument out of range, an unknown method, or ``x`` not one image.
    """
    check_stability_args(radius, n_perturb_samples, seed, batch_size)
    if method not in METHODS:
        raise ParamError(f"method: {method!r} is not allowed (one of {', '.join(METHODS)})")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ParamError(f"x: shape {tuple(x.shape)} is not allowed (one image, (1, 3, H, W))")
    params = dict(params or {})
    x = x.detach().to(getattr(model, "device", x.device))
    explain = _explanation_func(model, method, params)
    target_t = torch.tensor([target], device=x.device)
    sens = sensitivity_max(
        explain,
        x,
        perturb_func=sensitivity_perturbation(radius, seed),
        perturb_radius=radius,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=batch_size,
        target=target_t,
    )
    attr = explain(x, target_t)[0].to(x.device).expand_as(x)  # one-channel maps count for each colour channel

    def logits(inp: torch.Tensor) -> torch.Tensor:
        return model(inp)

    infid = infidelity(
        logits,
        infidelity_perturbation(radius, seed),
        x,
        attr,
        target=target_t,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=batch_size,
        normalize=True,
    )
    return {"sensitivity_max": float(sens.item()), "infidelity": float(infid.item())}


def stability_table(
    model: nn.Module,
    x: torch.Tensor,
    methods: Mapping[str, Mapping[str, Any]],
    targets: Sequence[int],
    images: Sequence[str],
    radius: float = D.stability.radius,
    n_perturb_samples: int = D.stability.n_perturb_samples,
    seed: int = D.stability.seed,
    batch_size: int = D.stability.batch_size,
) -> pd.DataFrame:
    """:func:`stability_scores` of every method on every image, as a long table.

    Args:
        x: images (B, 3, H, W) in [0, 1]; ``targets`` and ``images`` give each one's class and name.
        methods: ``{method: params}``.
        Others: as :func:`stability_scores`; every image uses the same ``seed``.

    Returns:
        Columns ``image, method, sensitivity_max, infidelity``, one row per image × method.

    Raises:
        ParamError: as :func:`stability_scores`, or ``targets``/``images`` not one per image.
    """
    if len(targets) != len(x) or len(images) != len(x):
        raise ParamError(
            f"targets/images: {len(targets)}/{len(images)} entries are not allowed (one per image, {len(x)})"
        )
    rows = []
    for xi, target, name in zip(x, targets, images, strict=True):
        for method, params in methods.items():
            scores = stability_scores(
                model,
                xi[None],
                method,
                int(target),
                params,
                radius=radius,
                n_perturb_samples=n_perturb_samples,
                seed=seed,
                batch_size=batch_size,
            )
            rows.append({"image": name, "method": method, **scores})
    return pd.DataFrame(rows, columns=["image", "method", *STABILITY_METRICS])
