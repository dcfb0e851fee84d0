"""The optimisation shared by the targeted and untargeted explanation attacks, run to convergence.

Adam on ``a·map_loss(h(x_adv)) + b·MSE(softmax(x_adv), softmax(x))`` in [0, 1] pixel space, with
projection onto the L∞ ball and the pixel range after every step (the method and its choices are in
:mod:`deepsaliency.attack.manipulation`). Every ``eval_every`` steps the iterates are evaluated on the
ORIGINAL network; per image the best evaluated iterate (class kept, then lowest loss) is returned.

Convergence (issue 15: a method must not look robust because its attack stopped early). The loss of
the chosen iterate, ``best_i(t)``, is tracked per image. At an evaluation at step t ≥ ``t_min`` =
max(⌈num_iter/4⌉, 3·eval_every), image i has converged when its chosen iterate keeps the class (now
and at t − w) and (best_i(t − w) − best_i(t)) / |best_i(t − w)| < ``tol``, with w = ⌈0.2·t⌉ and
best_i(t − w) the value at the latest evaluation at or before step t − w, the window holds at least
:data:`MIN_WINDOW_EVALUATIONS` evaluations after it (one or two evaluations that happen not to improve
stopped a still-improving input×gradient attack at step 80 of 200), and every iterate evaluated in the window
was at rest: it kept the class and its loss was within ``tol`` (relative) of best_i(t) (:func:`has_converged`).
The last condition tells a minimum from an excursion: in a default run before it, saliency at 4/255 on
rocket and integrated gradients at 8/255 on coffee left their best iterate at step 80 (the loss of the
iterates rose by up to 2× and was still above the best at step 110), the window saw no improvement, and
the rule stopped both at step 110, at r(adv, target) 0.73 and 0.79; run to their last step, the same
attacks reach 0.76 and 0.83. Checking the whole window, not only the iterate at t, keeps an iterate that
passes near the best on its way down from ending the attack.
A converged image leaves the active batch (its returned iterate is final and it costs nothing more);
the loop ends when every image has converged or at ``num_iter``. ``tol`` None or 0: all ``num_iter``
steps, as before issue 15. The bookkeeping is written here; no optimisation library tracks this.
Every term is per image and Adam is elementwise, so the images still running follow the trajectory they
would follow in the full batch; one exception: SmoothGrad draws its noise for the whole active batch (in
Captum's order), so an image leaving the batch changes the others' noise draws (not their distribution).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .network import AttackNetwork, attack_network, beta_schedule, check_curvature
from .objective import MapLoss, Problem, resampled
from .params import FIXED_BETA_METHODS, GRADIENT_METHODS, RESAMPLE_DEFAULT, LoopSettings, samples_per_image


@dataclass
class AttackResult:
    """What :func:`~deepsaliency.attack.run_attack` and the untargeted attack return.

    Attributes:
        x_adv: the chosen iterate per image, (B, 3, H, W) in [0, 1].
        adv_expl: its normalised map h on the original network, (B, H, W), each summing to 1.
        target_map: the normalised target maps h_t (the original maps for the untargeted attack), (B, H, W).
        history: one dict per (step, active image): ``step`` (1-based), ``image`` (index),
            ``expl_loss`` and ``output_loss`` (the optimised objective's terms, on the
            smoothed network, before the step's update), ``beta`` (NaN when no smoothing).
        evaluations: one dict per evaluated iterate and active image, on the ORIGINAL network:
            ``step`` (0 = the clean image), ``image``, ``expl_loss``, ``output_loss``,
            ``loss`` (a·expl + b·output), ``class_kept``.
        best_step: per image, the step of the returned iterate.
        original_class: per image, the top-1 class of ``x`` (explained and kept).
        converged: per image, whether the stopping rule of :mod:`deepsaliency.attack.loop` held
            (False when ``tol`` is None or 0, or when ``num_iter`` ran out first).
        steps: per image, the Adam steps taken on it (≤ num_iter).
        passes: per image, network passes spent on it: k per step (one forward and double backward
            through the k inputs of the method's explanation: 1 for saliency and input×gradient,
            ``n_steps`` for integrated gradients, ``nt_samples`` for SmoothGrad, the masks for RISE) plus
            k per evaluation (the clean image's included). Not counted, the same for every method: the
            target map, the output term's extra forward and the curvature probe.
    """

    x_adv: torch.Tensor
    adv_expl: torch.Tensor
    target_map: torch.Tensor
    history: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    best_step: list[int] = field(default_factory=list)
    original_class: list[int] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)


def convergence_start(num_iter: int, eval_every: int) -> int:
    """The first step at which an image may converge: max(⌈num_iter/4⌉, 3·eval_every)."""
    return max(math.ceil(0.25 * num_iter), 3 * eval_every)


#: Evaluations a convergence window must hold (after its starting evaluation) before the rule may fire.
MIN_WINDOW_EVALUATIONS = 3


def has_converged(trace: Sequence[tuple[int, float, bool, float, bool]], tol: float | None, start: int) -> bool:
    """The stopping rule (module docstring) for one image.

    Args:
        trace: ``(step, best loss, best keeps the class, loss of the iterate evaluated at this step, it keeps the
            class)`` after each evaluation so far, steps increasing; the last entry is the evaluation at the current
            step t.
        tol: relative improvement below which the loss has converged; None or 0 → never.
        start: no convergence before this step (:func:`convergence_start`).

    Returns:
        True when t ≥ ``start`` and, over the window from the latest evaluation at or before t − ⌈0.2·t⌉ to t
        (holding at least :data:`MIN_WINDOW_EVALUATIONS` evaluations after its start): the best loss improved
        by less than ``tol`` (relative), the chosen iterate kept the class at both ends, and every iterate
        evaluated after the start was at rest (kept the class, loss within ``tol`` of the best at t).
    """
    t, now, kept_now, _, _ = trace[-1]
    if not tol or t < start or not kept_now:
        return False
    earlier = [rec for rec in trace if rec[0] <= t - math.ceil(0.2 * t)]
    if not earlier or not earlier[-1][2]:
        return False
    window = [rec for rec in trace if rec[0] > earlier[-1][0]]
    if len(window) < MIN_WINDOW_EVALUATIONS:
        return False
    at_rest = all(kept and _within(loss, now, tol) for *_, loss, kept in window)
    return at_rest and _within(now, earlier[-1][1], tol)


def _within(value: float, reference: float, tol: float) -> bool:
    """|value − reference| / |reference| < tol (equal values always are; a zero reference admits only itself)."""
    return value == reference or abs(value - reference) < tol * abs(reference)


class _Tracker:
    """Per-image bookkeeping: the chosen iterate, the convergence traces and the cost."""

    def __init__(self, result: AttackResult, n: int, device: torch.device) -> None:
        self.result = result
        self.loss = torch.full((n,), math.inf, device=device)
        self.kept = torch.zeros(n, dtype=torch.bool, device=device)
        self.h = torch.zeros_like(result.target_map)
        self.traces: list[list[tuple[int, float, bool, float, bool]]] = [[] for _ in range(n)]

    def consider(self, step: int, ev: dict, x_adv: torch.Tensor, idx: torch.Tensor) -> None:
        """Record an evaluation of the active iterates; keep each one that beats the image's best."""
        res = self.result
        for j, i in enumerate(idx.tolist()):
            kept, loss = bool(ev["kept"][j]), ev["loss"][j]
            res.evaluations.append(
                {
                    "step": step,
                    "image": i,
                    "expl_loss": float(ev["expl"][j]),
                    "output_loss": float(ev["out"][j]),
                    "loss": float(loss),
                    "class_kept": kept,
                }
            )
            # Prefer class-keeping iterates, then lower loss.
            if (kept and not self.kept[i]) or (kept == bool(self.kept[i]) and bool(loss < self.loss[i])):
                res.x_adv[i] = x_adv.detach()[j]
                self.h[i], self.loss[i], self.kept[i] = ev["h"][j], loss, kept
                res.best_step[i] = step
            self.traces[i].append((step, float(self.loss[i]), bool(self.kept[i]), float(loss), kept))

    def charge(self, idx: torch.Tensor, passes: int, step: int | None = None) -> None:
        for i in idx.tolist():
            self.result.passes[i] += passes
            if step is not None:
                self.result.steps[i] = step


def _optimizer(x_adv: torch.Tensor, lr: float, lr_end: float | None, num_iter: int) -> tuple[Any, Any]:
    opt = torch.optim.Adam([x_adv], lr=lr)
    # Cosine decay from lr to lr_end: large early steps, fine ones as β nears the original network.
    eta_min = lr if lr_end is None else min(lr, lr_end)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=num_iter, eta_min=eta_min)


def _keep_active(opt: torch.optim.Optimizer, x_adv: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A new leaf with the rows ``keep`` of ``x_adv``, swapped into ``opt`` with the same rows of its state.

    Adam is elementwise and the objective a sum of per-image terms, so the remaining images follow
    exactly the trajectory they would have followed in the full batch.
    """
    new = x_adv.detach()[keep].contiguous(memory_format=torch.channels_last).requires_grad_()
    state = opt.state.pop(x_adv, {})
    opt.param_groups[0]["params"] = [new]
    opt.state[new] = {k: v[keep].clone() if torch.is_tensor(v) and v.dim() > 0 else v for k, v in state.items()}
    return new


def _step(
    prob: Problem,
    run: LoopSettings,
    net: AttackNetwork,
    opt: Any,
    x_adv: torch.Tensor,
    idx: torch.Tensor,
    step: int,
    result: AttackResult,
) -> None:
    """One Adam step on the active images; appends their history records."""
    if prob.method in GRADIENT_METHODS:
        beta = beta_schedule(step - 1, run.num_iter, run.beta_start, run.beta_end)
        net.set_beta(beta)
    else:  # the defence's own fixed β, or no smoothing at all (RISE)
        beta = float(prob.params.get("beta", math.nan))
    opt.zero_grad(set_to_none=True)
    resample = RESAMPLE_DEFAULT.get(prob.method, False) if run.resample is None else run.resample
    expl, out = prob.step_loss(x_adv, idx, resampled(prob.method, prob.params, step) if resample else prob.params)
    # A sum of per-image losses: each image's gradient is its own (Adam is per-pixel).
    (prob.a * expl + prob.b * out).sum().backward()
    opt.step()
    prob.project(x_adv, idx)
    for j, i in enumerate(idx.tolist()):
        rec = {
            "step": step,
            "image": i,
            "expl_loss": float(expl[j].detach()),
            "output_loss": float(out[j].detach()),
            "beta": beta,
        }
        result.history.append(rec)
        if run.callback is not None:
            run.callback(step, rec)


def _optimise(prob: Problem, run: LoopSettings, net: AttackNetwork, track: _Tracker) -> None:
    """The steps, evaluations and convergence checks, until every image converged or ``num_iter``."""
    from tqdm.auto import tqdm

    result, k = track.result, samples_per_image(prob.method, prob.params)
    idx = torch.arange(len(prob.x), device=prob.x.device)
    x_adv = prob.x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    opt, sched = _optimizer(x_adv, run.lr, run.lr_end, run.num_iter)
    start = convergence_start(run.num_iter, run.eval_every)
    for step in tqdm(range(1, run.num_iter + 1), desc=f"attack {prob.method}", disable=not run.progress, leave=False):
        _step(prob, run, net, opt, x_adv, idx, step, result)
        sched.step()
        track.charge(idx, k, step)
        if step % run.eval_every and step != run.num_iter:
            continue
        with net.original():
            track.consider(step, prob.evaluate(x_adv, idx), x_adv, idx)
        track.charge(idx, k)
        done = torch.tensor([has_converged(track.traces[i], run.tol, start) for i in idx.tolist()], dtype=torch.bool)
        for i in idx[done.to(idx.device)].tolist():
            result.converged[i] = True
        if done.all():
            break
        if done.any():  # converged images leave the batch: their iterate is final, their cost stops
            keep = (~done).to(idx.device)
            x_adv, idx = _keep_active(opt, x_adv, keep), idx[keep]


def attack_loop(
    model: nn.Module,
    x: torch.Tensor,
    exp_method: str,
    cls: torch.Tensor,
    probs_0: torch.Tensor,
    params: dict,
    map_loss: MapLoss,
    reference_map: torch.Tensor,
    *,
    a: float,
    eps: float | None,
    run: LoopSettings,
) -> AttackResult:
    """Minimise ``a·map_loss + b·output MSE`` over x_adv from ``x`` (the targeted and untargeted attacks' loop).

    Args:
        model: the network (in :func:`~deepsaliency.models.library_state`).
        x: clean images (B, 3, H, W) in [0, 1] on the model's device.
        exp_method, params: the attacked method and its attack-time parameters.
        cls: the kept classes (B,); probs_0: softmax of ``x`` (B, K), original network.
        map_loss: see :data:`MapLoss`; differentiable, to minimise.
        reference_map: stored as :attr:`AttackResult.target_map` (B, H, W).
        a: the explanation term's weight; eps: L∞ budget in pixel units (None: none; 0: x_adv = x).
        run: the optimiser's settings (the output term's weight is ``run.b``).

    Returns:
        An :class:`AttackResult`; ``expl_loss`` in its records is ``map_loss``.

    Raises:
        ParamError: the map does not depend on the input even after smoothing (:func:`check_curvature`).
    """
    n, smooth = len(x), exp_method in GRADIENT_METHODS
    prob = Problem(model, x, exp_method, cls, probs_0, params, map_loss, a, run.b, eps)
    result = AttackResult(
        x_adv=x.clone(),
        adv_expl=torch.empty(0),
        target_map=reference_map,
        original_class=[int(c) for c in cls],
        best_step=[0] * n,
        converged=[False] * n,
        steps=[0] * n,
        passes=[0] * n,
    )
    track = _Tracker(result, n, x.device)
    beta0, probe = (run.beta_start, x) if smooth else (None, None)
    # The defence's methods swap their own fixed-β activations in; the fast convolutions serve them too.
    fast = run.fast and (smooth or exp_method in FIXED_BETA_METHODS)
    with attack_network(model, beta0, fast=fast, probe=probe) as net:
        if smooth and a > 0:  # never return a no-op as a result: stop if the map cannot move at all
            check_curvature(model, x, exp_method, cls, params, net.smoothed)
        all_images = torch.arange(n, device=x.device)
        with net.original():
            ev0 = prob.evaluate(x, all_images)
        track.consider(0, ev0, x, all_images)
        track.charge(all_images, samples_per_image(exp_method, params))
        _optimise(prob, run, net, track)
    result.adv_expl = track.h
    if eps != 0:  # with no budget the clean image is the expected answer: nothing to warn about
        _warn_if_unchanged(x, result, ev0, track.kept)
    return result


def _warn_if_unchanged(x: torch.Tensor, result: AttackResult, ev0: dict, kept: torch.Tensor) -> None:
    for i in range(len(x)):
        delta = float((result.x_adv[i] - x[i]).abs().max())
        moved = float((result.adv_expl[i] - ev0["h"][i]).abs().sum())  # L1 of two unit-sum maps, in [0, 2]
        msg = None
        if delta == 0.0:
            msg = (
                f"attack: image {i}: zero perturbation (no evaluated iterate scored a lower loss than the clean "
                "image on the original network; check attack.a and attack.b, or evaluate more often with a "
                "smaller attack.eval_every)"
            )
        elif moved < 1e-3:
            msg = (
                f"attack: image {i}: the explanation map did not move (L1 change {moved:.2e}; "
                f"max pixel change {delta:.2e})"
            )
        elif not bool(kept[i]):
            msg = (
                f"attack: image {i}: no iterate kept the top-1 class; returning the lowest-loss one "
                "(try a larger attack.b)"
            )
        if msg:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
