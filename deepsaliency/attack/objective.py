"""What the attack loop minimises: the objective's terms, each step's samples, evaluations, projection.

The objective (Dombrowski et al. 2019, https://arxiv.org/abs/1906.07983) is
``a·map_loss(h(x_adv)) + b·MSE(softmax(x_adv), softmax(x))`` with ``h`` the unit-sum map of the
attacked method (:mod:`deepsaliency.differentiable`); all of it is written per image, so a batch of
images is a sum of independent problems.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..differentiable import explanation_and_logits, unit_sum_map
from .params import INPUT_GRADIENT_METHODS

#: (maps (b, H, W) of the active images, their indices (b,) in the batch) → explanation term (b,).
MapLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _output_loss(probs: torch.Tensor, probs_0: torch.Tensor) -> torch.Tensor:
    """Per-image MSE of the softmax vectors, (B,)."""
    return ((probs - probs_0) ** 2).mean(1)


def objective_terms(
    model: nn.Module, x: torch.Tensor, method: str, cls: torch.Tensor, params: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised map (B, H, W), softmax (B, K)) of ``x`` on the current network, differentiable."""
    attr, logits = explanation_and_logits(model, x, method, cls, create_graph=True, **params)
    if logits is None:  # the explanation did not run the model on x itself
        logits = model(x)
    return unit_sum_map(attr), logits.softmax(-1)


def resampled(method: str, params: dict, step: int) -> dict:
    """``params`` with the step's fresh samples (see ``resample`` in :func:`~deepsaliency.attack.run_attack`)."""
    if method in ("integrated_gradients", "integrated_gradients_smoothed"):
        return {**params, "alpha_seed": step}
    if method == "smoothgrad":
        return {**params, "seed": int(params.get("seed", 0)) + step}
    if method == "rise":
        return {**params, "mask_seed": int(params.get("mask_seed", 0)) + step}
    return params


@dataclass
class Problem:
    """What one attack run optimises (fixed for the run)."""

    model: nn.Module
    x: torch.Tensor
    method: str
    cls: torch.Tensor
    probs_0: torch.Tensor
    params: dict
    map_loss: MapLoss
    a: float
    b: float
    eps: float | None

    def evaluate(self, x_adv: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses, map and kept class of the active iterates on the current (original) network, no graph."""
        x_adv = x_adv.detach().requires_grad_(self.method in INPUT_GRADIENT_METHODS)
        attr, logits = explanation_and_logits(
            self.model, x_adv, self.method, self.cls[idx], create_graph=False, **self.params
        )
        with torch.no_grad():
            if logits is None:
                logits = self.model(x_adv.detach())
            h = unit_sum_map(attr.detach())
            probs = logits.detach().softmax(-1)
            expl, out = self.map_loss(h, idx), _output_loss(probs, self.probs_0[idx])
        return {
            "h": h,
            "expl": expl,
            "out": out,
            "loss": self.a * expl + self.b * out,
            "kept": probs.argmax(-1) == self.cls[idx],
        }

    def step_loss(self, x_adv: torch.Tensor, idx: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The optimised terms (explanation, output), (b,) each, on the current (smoothed) network."""
        h, probs = objective_terms(self.model, x_adv, self.method, self.cls[idx], params)
        return self.map_loss(h, idx), _output_loss(probs, self.probs_0[idx])

    def project(self, x_adv: torch.Tensor, idx: torch.Tensor) -> None:
        """In place: onto the L∞ ball around the clean images (eps 0: exactly them), then the pixel range."""
        with torch.no_grad():
            if self.eps is not None:
                x0 = self.x[idx]
                x_adv.copy_(torch.minimum(torch.maximum(x_adv, x0 - self.eps), x0 + self.eps))
            x_adv.clamp_(0.0, 1.0)
