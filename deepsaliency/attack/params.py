"""The attacks' shared defaults and argument checks (one default per parameter, one check per rule)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ParamError

#: Methods whose attack needs second derivatives (and so the softplus network).
from ..methods import GRADIENT_METHODS as GRADIENT_METHODS  # the attacked methods smoothed by softplus-β

#: Explanation parameters used DURING the attack when the caller gives none (cheaper than the
#: explain stage's: each sample costs a double backward per step). The only defaults of these
#: parameters in the attack; the measured settings behind them are in benchmarks/README.md.
ATTACK_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 4, "integration": "gausslegendre"},
    "smoothgrad": {"nt_samples": 3, "stdevs": 0.15, "seed": 0},
    "rise": {"rise_masks": 16, "mask_seed": 0, "batch_size": 16},
}

#: Which methods redraw their samples every step by default (``resample=None``): measured,
#: redrawing helped integrated gradients but hurt smoothgrad and rise (benchmarks/README.md).
RESAMPLE_DEFAULT = {"integrated_gradients": True, "smoothgrad": False, "rise": False}


def check(name: str, value: Any, ok: bool, allowed: str) -> Any:
    """``value`` if ``ok``, else a one-line :class:`ParamError` naming the argument ``name``."""
    if not ok:
        raise ParamError(f"{name}: {value!r} is not allowed ({allowed})")
    return value


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_attack_params(
    num_iter: Any,
    lr: Any,
    a: Any,
    b: Any,
    beta_start: Any,
    beta_end: Any,
    eps: Any,
    eval_every: Any,
    lr_end: Any = None,
    tol: Any = None,
) -> None:
    """Validate the attack's scalar parameters.

    Raises:
        ParamError: one line naming the first bad parameter, its value and what is allowed.
    """
    from ..nn import check_beta

    check("num_iter", num_iter, _is_int(num_iter, 1), "an integer ≥ 1")
    check("lr", lr, is_number(lr) and 0 < lr <= 1, "a number in (0, 1], pixel units per Adam step")
    check(
        "lr_end",
        lr_end,
        lr_end is None or (is_number(lr_end) and 0 <= lr_end <= 1),
        "null (constant lr) or a number in [0, 1]",
    )
    check("a", a, is_number(a) and a >= 0, "a number ≥ 0, the explanation term's weight")
    check("b", b, is_number(b) and b >= 0, "a number ≥ 0, the output term's weight")
    check_beta(beta_start, "beta_start")
    check_beta(beta_end, "beta_end")
    check(
        "eps",
        eps,
        eps is None or (is_number(eps) and 0 <= eps <= 1),
        "null (no budget) or a number in [0, 1], L∞ pixel units",
    )
    check("eval_every", eval_every, _is_int(eval_every, 1), "an integer ≥ 1")
    check(
        "tol",
        tol,
        tol is None or (is_number(tol) and 0 <= tol < 1),
        "null or 0 (run all num_iter steps) or a number in (0, 1), relative improvement",
    )


def prepare_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` detached, float32, batched (B, 3, H, W), on the model's device."""
    device: torch.device = getattr(model, "device", None) or torch.as_tensor(x).device
    x = torch.as_tensor(x).detach().to(device=device, dtype=torch.float32)
    return x.unsqueeze(0) if x.dim() == 3 else x


def as_batch(t: torch.Tensor, n: int, what: str, ndim: int) -> torch.Tensor:
    """``t`` with ``ndim`` dimensions and ``n`` entries (one given entry is repeated)."""
    t = torch.as_tensor(t)
    if t.dim() == ndim - 1:
        t = t.unsqueeze(0)
    if t.dim() != ndim or t.shape[0] not in (1, n):
        raise ParamError(f"{what}: shape {tuple(t.shape)} is not allowed (one per image: ({n}, ...) or a single one)")
    return t.expand(n, *t.shape[1:])


def samples_per_image(method: str, params: dict) -> int:
    """Network inputs per image of one explanation of ``method`` with ``params`` (the unit of
    :attr:`~deepsaliency.attack.AttackResult.passes`): 1 for saliency and input×gradient, ``n_steps``
    for integrated gradients, ``nt_samples`` for SmoothGrad, the masks used for RISE."""
    from ..differentiable import method_default

    if method == "integrated_gradients":
        return int(params.get("n_steps", method_default(method, "n_steps")))
    if method == "smoothgrad":
        return int(params.get("nt_samples", method_default(method, "nt_samples")))
    if method == "rise":
        masks, k = params.get("masks"), params.get("rise_masks")
        total = len(masks) if masks is not None else 0
        return total if k is None else min(int(k), total)
    return 1
