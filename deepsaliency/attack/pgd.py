"""Untargeted L∞ PGD on the prediction (Madry et al. 2018), with Captum's ``PGD``, in pixel space."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..models import preserves_model_state
from .params import check, is_number


@preserves_model_state
def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    seed: int = 0,
    random_start: bool = True,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Untargeted L∞ PGD (Madry et al. 2018, https://arxiv.org/abs/1706.06083) with Captum's ``PGD``.

    Args:
        model: a classifier in pixel space returning logits.
        x: images (B, 3, H, W) in [0, 1].
        eps: L∞ radius in pixel units, in (0, 1].
        step_size: per-step change in pixel units, in (0, 1].
        steps: number of steps (≥ 1).
        seed: seed of the random start (the only randomness).
        random_start: start from a uniform point of the ε-ball, as Madry et al.
        target: the labels to move away from (default: the model's prediction on ``x``).

    Returns:
        x_adv (B, 3, H, W) in [0, 1] with ‖x_adv − x‖∞ ≤ eps.
    """
    from captum.robust import PGD

    check("eps", eps, is_number(eps) and 0 < eps <= 1, "a number in (0, 1], L∞ pixel units")
    check("step_size", step_size, is_number(step_size) and 0 < step_size <= 1, "a number in (0, 1], pixel units")
    check("steps", steps, isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1, "an integer ≥ 1")
    device: torch.device = getattr(model, "device", None) or x.device
    x = x.detach().to(device=device, dtype=torch.float32)
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(-1)
    # Captum's default loss is −log(output), meant for probabilities; the model returns logits.
    pgd = PGD(
        model, loss_func=lambda out, y: F.cross_entropy(out, y, reduction="none"), lower_bound=0.0, upper_bound=1.0
    )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
        # Captum re-enables gradients on each step's fresh input and warns each time; expected here.
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        torch.manual_seed(seed)
        x_adv = pgd.perturb(
            x,
            radius=eps,
            step_size=step_size,
            step_num=steps,
            target=torch.as_tensor(target, device=device),
            random_start=random_start,
            norm="Linf",
        )
    return x_adv.detach()
