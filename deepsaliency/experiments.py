"""Dataset-level steps the attack stages share: choosing targets, attacking, re-explaining.

The algorithms live in :mod:`deepsaliency.attack` and :mod:`deepsaliency.attribution`;
this module only applies them to every prepared image and gathers what the
stages write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .attribution import explain_images
from .errors import ParamError
from .params import SECTIONS, Attack
from .params.sections import Rise
from .rise import resolve_batch_size


def choose_targets(stems: list[str], target_image: str) -> list[str]:
    """The target image of each image's manipulation.

    Args:
        stems: the prepared images, in manifest order.
        target_image: ``next`` (each image toward the next one, cyclically) or the
            name (stem or file name) of one prepared image that all others are
            attacked toward; that image itself is attacked toward the next one.
    """
    if len(stems) < 2:
        raise ParamError(
            "attack.target_image: the manipulation attack needs at least two images in prepare.images "
            f"(found {len(stems)})"
        )
    following = {s: stems[(i + 1) % len(stems)] for i, s in enumerate(stems)}
    if target_image == "next":
        return [following[s] for s in stems]
    name = target_image.rsplit(".", 1)[0] if target_image not in stems else target_image
    if name not in stems:
        raise ParamError(
            f"attack.target_image: {target_image!r} is not a prepared image (one of {', '.join(stems)}, or 'next')"
        )
    return [name if s != name else following[s] for s in stems]


def method_kwargs(params: dict, method: str, model=None, masks=None) -> dict[str, Any]:
    """Keyword arguments for :func:`deepsaliency.attribution.attribute` from a method's params section
    (:meth:`deepsaliency.params.sections.Section.kwargs`).

    ``rise`` takes the loaded masks and ``rise.batch_size``, with ``auto`` measured here once on ``model``
    (:func:`deepsaliency.rise.resolve_batch_size`): the explain path calls RISE once per image.
    """
    if method != "rise":
        return SECTIONS[method].model_validate(params[method]).kwargs()
    batch = Rise.model_validate(params["rise"]).batch_size
    return {"masks": masks, "batch_size": resolve_batch_size(model, batch, model.input_size, "rise.batch_size")}


def attack_explanation_params(params: dict, method: str, masks=None) -> dict[str, Any]:
    """The explanation's parameters DURING the attack: from ``attack.<method>`` the samples per step,
    fewer than the explain stage's where each costs a double backward (``n_steps``, ``nt_samples``,
    ``masks``); from the method's own section the keys its differentiable version takes
    (:attr:`~deepsaliency.params.sections.Section.ATTACK_KEYS`, e.g. ``integration``, ``beta``)."""
    attack = Attack.model_validate(params["attack"])
    kwargs = SECTIONS[method].model_validate(params[method]).attack_kwargs()
    kwargs.update(attack.run(method).explanation_kwargs())
    if method == "rise":
        kwargs.update(masks=masks, mask_seed=attack.seed)
    return kwargs


def attack_run_params(params: dict, method: str) -> dict[str, Any]:
    """Keyword arguments of :func:`deepsaliency.attack.run_attack` for ``method`` (without the
    explanation's own parameters): the shared ``attack`` keys (``b``, ``beta_start``, ``beta_end``,
    ``eps``, ``tol``: the convergence tolerance, None → all ``num_iter`` steps) and ``attack.<method>``
    (:meth:`~deepsaliency.params.Attack.shared_kwargs`, :meth:`~deepsaliency.params.AttackRun.run_kwargs`)."""
    attack = Attack.model_validate(params["attack"])
    return attack.run(method).run_kwargs() | attack.shared_kwargs() | {"eps": attack.eps}


def explain_all(
    model, x: torch.Tensor, stems: list[str], targets: list[int], params: dict, masks=None
) -> dict[str, np.ndarray]:
    """Maps of every method in ``explain.methods`` for images ``x``, keyed ``map_<method>``, each (B, H, W)."""
    out = {}
    for method in params["explain"]["methods"]:
        maps = explain_images(model, x, method, stems, targets, **method_kwargs(params, method, model, masks))
        out[f"map_{method}"] = np.stack([m.numpy() for _, m in maps]).astype(np.float32)
    return out


def class_probabilities(model, x: torch.Tensor, classes: list[int]) -> tuple[list[int], list[float]]:
    """Top-1 class of each image and the probability of ``classes[i]`` on image i."""
    with torch.inference_mode():
        probs = model(x.to(model.device)).softmax(-1).cpu()
    return probs.argmax(-1).tolist(), [float(probs[i, c]) for i, c in enumerate(classes)]
