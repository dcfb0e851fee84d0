"""What one batch of an attack stage does, as a task for :func:`deepsaliency.backend.map_batches`.

The attack stages stream the prepared images in batches of ``compute.batch_size`` (:mod:`deepsaliency.stream`);
each batch is attacked, re-explained and scored by one call here, in this process or on a Ray worker. The
payloads and results are plain dicts of tensors, arrays and lists, so Ray can ship them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from .manipulation import run_attack
from .pgd import pgd_attack


def _scored(model: Any, payload: dict[str, Any], x_adv: torch.Tensor) -> dict[str, Any]:
    """Every method's map on ``x_adv``, the top-1 class and the kept class's probability, and the L∞ used."""
    from ..experiments import class_probabilities, explain_all

    maps = explain_all(model, x_adv, payload["stems"], payload["classes"], payload["params"], payload["masks"])
    labels, probs = class_probabilities(model, x_adv, payload["classes"])
    return {
        "stems": payload["stems"],
        "classes": payload["classes"],
        "x_adv": x_adv.numpy(),
        "maps": maps,
        "labels": labels,
        "probs": probs,
        "linf": float((x_adv - payload["x"]).abs().amax()) if len(x_adv) else 0.0,
    }


def manipulation_batch(model: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Task of the ``attack@<method>-<eps>`` stage: Dombrowski et al.'s attack (:func:`run_attack`) on a batch.

    Args:
        model: the worker's classifier.
        payload: ``method``, ``x`` (B, 3, H, W) in [0, 1], ``stems``, ``classes`` (B class indices),
            ``target_maps`` (B, H, W), ``run`` (keyword arguments of :func:`run_attack`, with ``eps`` in pixel
            units and the explanation's parameters), ``params`` (all params, for the maps on x_adv), ``masks``.

    Returns:
        What :func:`_scored` returns (``x_adv`` (B, 3, H, W), ``maps``, ``labels``, ``probs``, ``linf`` in pixel
        units), plus ``converged``, ``steps``, ``passes`` per image and ``history`` (a DataFrame of the per-step
        losses with the image's stem).
    """
    result = run_attack(
        model,
        payload["x"],
        payload["method"],
        target_map=torch.as_tensor(payload["target_maps"]),
        progress=True,
        **payload["run"],
    )
    history = pd.DataFrame(result.history)
    history["image"] = [payload["stems"][i] for i in history["image"]]
    return _scored(model, payload, result.x_adv.detach().cpu()) | {
        "converged": list(result.converged),
        "steps": list(result.steps),
        "passes": list(result.passes),
        "history": history[["step", "image", "expl_loss", "output_loss", "beta"]],
    }


def pgd_batch(model: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Task of the ``pgd`` stage: :func:`pgd_attack` on a batch, then every method's map on the adversarial images.

    Args:
        model: the worker's classifier.
        payload: ``x`` (B, 3, H, W) in [0, 1], ``stems``, ``classes`` (B class indices), ``pgd`` (the params
            section: eps, step_size, steps, seed), ``params`` (all params, for the maps) and ``masks`` (RISE's).

    Returns:
        What :func:`_scored` returns.
    """
    cfg = payload["pgd"]
    x_adv = pgd_attack(
        model,
        payload["x"].to(model.device),
        eps=cfg["eps"],
        step_size=cfg["step_size"],
        steps=cfg["steps"],
        seed=cfg["seed"],
    ).cpu()
    return _scored(model, payload, x_adv)
