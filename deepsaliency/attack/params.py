"""The attacks' shared defaults and argument checks (one default per parameter, one check per rule).

:class:`LoopSettings` holds the optimiser's settings and their ONE set of defaults; both attacks
(:func:`~deepsaliency.attack.run_attack`, :func:`~deepsaliency.attack.untargeted.untargeted_attack`) take
them as keyword arguments and start through :func:`start_attack`. Every default is read from the params models
(:data:`deepsaliency.params.ATTACK`), the one place that defines it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..errors import ParamError

# Methods whose attack needs second derivatives (and so the softplus network); those whose map is a fixed-β
# network's (the defence); those whose input must require grad.
from ..methods import ATTACK_METHODS, FIXED_BETA_METHODS, GRADIENT_METHODS, INPUT_GRADIENT_METHODS
from ..params import ATTACK, SECTIONS

__all__ = ["FIXED_BETA_METHODS", "GRADIENT_METHODS", "INPUT_GRADIENT_METHODS"]  # re-exported for the attack

#: Explanation parameters used DURING the attack when the caller gives none (cheaper than the
#: explain stage's: each sample costs a double backward per step): the params models' defaults,
#: ``attack.<m>``'s samples per step over the method's own section (:mod:`deepsaliency.params`).
ATTACK_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    m: SECTIONS[m]().attack_kwargs() | ATTACK.run(m).explanation_kwargs() for m in ATTACK_METHODS
}
ATTACK_METHOD_DEFAULTS["rise"]["mask_seed"] = ATTACK.seed

#: Which methods redraw their samples every step by default (``resample=None``): measured,
#: redrawing helped integrated gradients but hurt smoothgrad and rise (benchmarks/README.md).
RESAMPLE_DEFAULT = {
    "integrated_gradients": True,
    "integrated_gradients_smoothed": True,
    "smoothgrad": False,
    "rise": False,
}


@dataclass
class LoopSettings:
    """The optimiser's settings, the same for both attacks; the field defaults are the attacks' defaults.

    Attributes (each described in :func:`~deepsaliency.attack.run_attack`): ``num_iter`` (Adam steps, ≥ 1),
    ``lr`` and ``lr_end`` (pixel units per step, cosine decay), ``beta_start``/``beta_end`` (softplus β,
    annealed), ``eval_every`` (steps between evaluations on the original network), ``resample``, ``fast``,
    ``tol`` (convergence, relative), ``callback``, ``progress``, ``b`` (weight of the output term, ≥ 0).
    """

    num_iter: int = 100  # the seed project's documented perform_attack(..., num_iter=100)
    lr: float = ATTACK.saliency.lr
    lr_end: float | None = ATTACK.saliency.lr_end
    beta_start: float = ATTACK.beta_start
    beta_end: float = ATTACK.beta_end
    eval_every: int = ATTACK.saliency.eval_every
    resample: bool | None = None
    fast: bool = True
    tol: float | None = None  # a library call runs all num_iter steps unless asked; the stages pass attack.tol
    callback: Callable[[int, dict], None] | None = None
    progress: bool = False
    b: float = ATTACK.b


#: The keyword arguments of the attacks that are :class:`LoopSettings` (the rest are the method's parameters).
SETTINGS = frozenset(f.name for f in fields(LoopSettings))


def start_attack(
    model: nn.Module, x: torch.Tensor, exp_method: str, num_iter: Any, a: Any, eps: Any, options: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], LoopSettings]:
    """What both attacks do first: check the arguments, split ``options`` into the loop's settings and the
    method's parameters (missing ones from :data:`ATTACK_METHOD_DEFAULTS`), and evaluate the clean images.

    Returns:
        ``(x, probs_0, params, run)``: the images (B, 3, H, W) float32 on the model's device, their softmax
        (B, K) on the original network, the method's attack-time parameters and the :class:`LoopSettings`.

    Raises:
        ParamError: a method that cannot be attacked (naming ``exp_method``) or a bad setting (named).
    """
    from ..differentiable import check_method

    check_method(exp_method, "exp_method")
    run = LoopSettings(num_iter, **{k: v for k, v in options.items() if k in SETTINGS})
    check_attack_params(
        num_iter, run.lr, a, run.b, run.beta_start, run.beta_end, eps, run.eval_every, run.lr_end, run.tol
    )
    params = {**ATTACK_METHOD_DEFAULTS[exp_method], **{k: v for k, v in options.items() if k not in SETTINGS}}
    x = prepare_input(model, x)
    with torch.no_grad():
        probs_0 = model(x).softmax(-1)
    return x, probs_0, params, run


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

    if method in ("integrated_gradients", "integrated_gradients_smoothed"):
        return int(params.get("n_steps", method_default("integrated_gradients", "n_steps")))
    if method == "smoothgrad":
        return int(params.get("nt_samples", method_default(method, "nt_samples")))
    if method == "rise":
        masks, k = params.get("masks"), params.get("rise_masks")
        total = len(masks) if masks is not None else 0
        return total if k is None else min(int(k), total)
    return 1


def stage_arguments(
    argv: list[str], script: str, section: str, methods: list[str], budgets: list[float]
) -> tuple[str, float]:
    """``<method> <eps>`` of an attack stage's command line, each checked against ``<section>.methods`` / ``.eps``.

    Returns:
        The method and the budget in /255 units.

    Raises:
        ParamError: one line naming ``script``, the bad value and the allowed ones.
    """
    from ..artifacts import eps_name

    if len(argv) != 2:
        got = " ".join(argv) or "none"
        raise ParamError(f"{script}: the arguments are <method> <eps> [<shard>] (got: {got})")
    if argv[0] not in methods:
        raise ParamError(f"{script}: method {argv[0]!r} is not allowed (one of {section}.methods: {methods})")
    try:
        eps = float(argv[1])
    except ValueError:
        eps = float("nan")  # matches no budget below
    if not any(eps_name(e) == eps_name(eps) for e in budgets):
        raise ParamError(f"{script}: budget {argv[1]!r} is not allowed (one of {section}.eps: {budgets})")
    return argv[0], eps
