"""The targeted explanation-manipulation attack (Dombrowski et al. 2019).

Method: "Explanations can be manipulated and geometry is to blame" (Dombrowski, Alber, Anders,
Ackermann, Müller, Kessel; NeurIPS 2019), https://arxiv.org/abs/1906.07983: find ``x_adv`` near
``x`` whose explanation ``h(x_adv)`` looks like a chosen target map ``h_t`` while the output
``g(x_adv)`` (softmax) stays ``g(x)``, by minimising with Adam

    a · MSE(h(x_adv), h_t) + b · MSE(g(x_adv), g(x)),

where ``h = Σ_c |attr| / total`` is the unit-sum map (:func:`~deepsaliency.differentiable.unit_sum_map`).
During the attack every ReLU-family activation is replaced by softplus_β, β annealed geometrically
from ``beta_start`` to ``beta_end`` (:mod:`deepsaliency.attack.network`). No library implements this
attack, so it is written here after the authors' reference code
(https://github.com/pankessel/adv_explanation_ref), in [0, 1] pixel space, batched.

Choices (the measurements behind them are in benchmarks/README.md):

* Learning rate in PIXEL units, cosine-decayed from ``lr`` = 2e-3 to ``lr_end`` = 5e-5: Adam moves a
  pixel by ≈ lr per step; the decay lets the last steps, with β near the original network, refine.
* The returned iterate is chosen on the ORIGINAL network: every ``eval_every`` steps the iterate's
  map and softmax are evaluated there, and per image the lowest-loss iterate that keeps the top-1
  class is kept. Every number reported about the result is computed there; the per-step losses in
  the history are the optimised objective (smoothed network).
* Each image runs until its best evaluated loss has converged (``tol``) or ``num_iter`` steps
  (:mod:`deepsaliency.attack.loop`); the result records per image whether it converged, its steps
  and its network passes, so that methods are compared at equal effort.
* Sampled methods use fewer samples during the attack than in the explain stage
  (:data:`~deepsaliency.attack.params.ATTACK_METHOD_DEFAULTS`): an iteration costs a double backward
  per sample. Integrated gradients redraws its path points every step (stratified).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..differentiable import differentiable_attribution, unit_sum_map
from ..errors import ParamError
from ..models import preserves_model_state
from ..params import ATTACK
from .loop import AttackResult, attack_loop
from .objective import MapLoss
from .params import INPUT_GRADIENT_METHODS, as_batch, start_attack


def map_mse(h_t: torch.Tensor) -> MapLoss:
    """The targeted explanation term: per-image MSE between maps (b, H, W) and their rows of ``h_t``."""
    return lambda h, idx: ((h - h_t[idx]) ** 2).mean((1, 2))


def _target_maps(
    model: nn.Module, x: torch.Tensor, method: str, target: Any, target_map: Any, params: dict
) -> torch.Tensor:
    """The unit-sum target maps h_t (B, H, W), on the original network."""
    n, device = len(x), x.device
    if target_map is None:
        xt = as_batch(target, n, "target", 4).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            cls_t = model(xt).argmax(-1)
        xt = xt.detach().requires_grad_(method in INPUT_GRADIENT_METHODS)
        attr = differentiable_attribution(model, xt, method, cls_t, create_graph=False, **params)
        return unit_sum_map(attr.detach()).detach()
    tm = as_batch(target_map, n, "target_map", 3).to(device=device, dtype=torch.float32)
    if tm.shape[-2:] != x.shape[-2:] or not torch.isfinite(tm).all() or (tm < 0).any():
        raise ParamError(f"target_map: must be finite, non-negative and of the image size {tuple(x.shape[-2:])}")
    return unit_sum_map(tm.unsqueeze(1))


@preserves_model_state
def run_attack(
    model: nn.Module,
    x: torch.Tensor,
    exp_method: str = "integrated_gradients",
    num_iter: int = 100,
    target: torch.Tensor | None = None,
    target_map: torch.Tensor | None = None,
    a: float = ATTACK.saliency.a,
    eps: float | None = None,
    **options: Any,
) -> AttackResult:
    """Manipulate the explanation of ``x`` toward a target map (Dombrowski et al. 2019).

    The optimiser's keyword arguments (``lr``, ``lr_end``, ``b``, ``beta_start``, ``beta_end``, ``eval_every``,
    ``resample``, ``fast``, ``callback``, ``progress``, ``tol``) are :class:`~deepsaliency.attack.params.LoopSettings`
    fields, shared with the untargeted attack and defaulting there; every other keyword is the method's.

    Args:
        model: a classifier in pixel space returning logits (weights frozen).
        x: images (B, 3, H, W) in [0, 1].
        exp_method: one of :data:`deepsaliency.methods.ATTACK_METHODS`: ``saliency``, ``input_x_gradient``,
            ``integrated_gradients``, ``smoothgrad``, ``rise``, ``gradcam`` (``layer``) and the defence's
            ``saliency_smoothed``, ``input_x_gradient_smoothed``, ``integrated_gradients_smoothed`` (``beta``).
        num_iter: the most Adam steps per image (≥ 1).
        target: target images (B, 3, H, W) or one (3, H, W); ``h_t`` is the same method's
            unit-sum map of each, for its own predicted class, on the original network.
        target_map: instead of ``target``, the target maps (B, H, W) or (H, W), any
            non-negative scale (normalised to sum 1 here), e.g. the explain stage's maps.
        lr: Adam learning rate in [0, 1] pixel units (≈ the per-step change of a pixel).
        lr_end: the learning rate at the last step, reached by cosine decay (None: constant lr;
            values above ``lr`` are capped at ``lr``).
        a, b: weights of the explanation and output terms (≥ 0).
        beta_start, beta_end: softplus β at the first and last step (geometric in between).
            Not used for ``rise`` (it needs no second derivative, so the original
            activations are attacked directly) nor for the ``*_smoothed`` methods: their map is that of
            the softplus-``beta`` network with their own FIXED ``beta`` (the map being defended), while
            the output term and the kept class are the ORIGINAL network's.
        eps: L∞ budget around ``x`` in pixel units, in [0, 1] (None: no budget; 0: x_adv = x exactly).
            x_adv is always clamped to [0, 1].
        eval_every: evaluate the iterate on the ORIGINAL network every this many steps
            (and after the last); the returned iterate is, per image, the evaluated one with the
            lowest a·expl + b·output loss among those that keep the top-1 class (the clean
            image, step 0, included) — or the lowest overall if none keeps it (with a warning).
        resample: for the sampled methods, draw new samples at every step so that the attack
            follows the full explanation instead of over-fitting a few fixed samples:
            integrated_gradients → stratified random path points (seed = step), smoothgrad →
            noise (``seed + step``), rise → mask subset (``mask_seed + step``). Evaluations
            always use the fixed samples (``integration`` quadrature, ``seed``, ``mask_seed``).
            None: :data:`~deepsaliency.attack.params.RESAMPLE_DEFAULT` (only integrated_gradients).
        fast: swap in :mod:`deepsaliency.nn.fastgrad`'s modules (same values, faster double backward).
        callback: called as ``callback(step, record)`` for every history record.
        progress: show a tqdm bar.
        tol: stop an image once, over the last 20 % of its steps, the relative improvement of its best
            evaluated loss is below ``tol`` and every iterate evaluated there kept the class within ``tol`` of
            the best (rule: :mod:`deepsaliency.attack.loop`), in [0, 1); None or 0: run all ``num_iter`` steps.
        **options: the :class:`~deepsaliency.attack.params.LoopSettings` above, and the method's explanation
            parameters during the attack (see
            :func:`deepsaliency.differentiable.differentiable_attribution`); missing ones come from
            :data:`~deepsaliency.attack.params.ATTACK_METHOD_DEFAULTS`. ``rise`` needs ``masks``.

    Returns:
        An :class:`~deepsaliency.attack.loop.AttackResult` (with ``converged``, ``steps``, ``passes``).

    Raises:
        ParamError: a bad argument (named), or a map that does not depend on the input
            (:func:`~deepsaliency.attack.network.check_curvature`).
    """
    x, probs_0, params, run = start_attack(model, x, exp_method, num_iter, a, eps, options)
    if (target is None) == (target_map is None):
        raise ParamError("target: give exactly one of target (images) and target_map (maps)")
    # Everything about the clean and target images: on the original network.
    cls = probs_0.argmax(-1)
    h_t = _target_maps(model, x, exp_method, target, target_map, params)
    return attack_loop(model, x, exp_method, cls, probs_0, params, map_mse(h_t), h_t, a=a, eps=eps, run=run)


def perform_attack(  # the model's state is kept by the attack it calls (preserves_model_state)
    model: nn.Module,
    x: Tensor,
    exp_method: str = "integrated_gradients",
    num_iter: int = 100,
    target: Tensor | None = None,
    history: list | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """The explanation attack with the reference code's signature.

    With ``target`` (images) or ``target_map`` (maps): Dombrowski et al.'s targeted attack,
    :func:`run_attack`. With neither — the seed's ``perform_attack(model, x, exp_method=...,
    num_iter=100)`` — Ghorbani et al.'s untargeted top-k attack,
    :func:`deepsaliency.attack.untargeted.untargeted_attack` (L∞ budget ``eps`` = 8/255 by default;
    ``k``, ``kind`` and its other arguments pass through ``kwargs``).

    Args:
        model, x, exp_method, num_iter, target: see :func:`run_attack`.
        history: a list to which the per-step loss records are appended (optional).
        **kwargs: the other arguments of :func:`run_attack` (or of ``untargeted_attack``).

    Returns:
        ``(x_adv, adv_expl)``: the adversarial images (B, 3, H, W) in [0, 1] and their unit-sum
        maps (B, H, W, each summing to 1) on the original network.

    Raises:
        ParamError: a bad argument, named.
    """
    if target is None and kwargs.get("target_map") is None:
        from .untargeted import untargeted_attack

        kwargs.pop("target_map", None)
        res = untargeted_attack(model, x, exp_method, num_iter, **kwargs)
    else:
        res = run_attack(model, x, exp_method, num_iter, target=target, **kwargs)
    if history is not None:
        history.extend(res.history)
    return res.x_adv, res.adv_expl
