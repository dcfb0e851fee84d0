"""Untargeted explanation attacks: move a map AWAY from itself while the prediction stays.

Ghorbani, Abid, Zou, "Interpretation of Neural Networks is Fragile", AAAI 2019,
https://arxiv.org/abs/1710.10547, define two attacks on a saliency map ``I(x)``
under an L∞ budget ``‖x_adv − x‖∞ ≤ eps`` that keep the predicted label:

* the **top-k attack** minimises the share of the map that lies on the k pixels
  that were the most salient in the ORIGINAL map, ``Σ_{i∈top-k(I(x))} h_i(x_adv)``
  (h normalised to sum 1), pushing those pixels out of the top k;
* the **centre-of-mass attack** maximises the distance, in pixels, between the
  map's centre of mass ``C(h) = Σ_ij h_ij·(i, j)`` and the original's.

Both run on the differentiable explanations of :mod:`deepsaliency.differentiable`
with the same optimiser as the targeted attack (:func:`deepsaliency.attack.loop.attack_loop`):
Adam in [0, 1] pixel space, projection onto the L∞ ball and the pixel range after
every step, ReLU-family activations swapped for β-softplus for the gradient methods
(the map of a ReLU network has zero second derivative almost everywhere), the output
term ``b·MSE(softmax(x_adv), softmax(x))`` to keep the class, and every ``eval_every``
steps an evaluation on the ORIGINAL network; the returned iterate is the best one
(lowest ``a·map_loss + b·output_loss``) among those that keep the top-1 class.
Ghorbani et al. take signed gradient steps and check the label after each; the loop
here is shared with the targeted attack instead of written twice, and so is its stopping rule
(``tol``: each image runs until its attack has converged, :mod:`deepsaliency.attack.loop`). No library
implements these attacks, so the objectives are written here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..differentiable import differentiable_attribution, unit_sum_map
from ..errors import ParamError
from ..models import preserves_model_state
from ..params import UNTARGETED
from .loop import AttackResult, attack_loop
from .objective import MapLoss
from .params import INPUT_GRADIENT_METHODS, start_attack

#: The attack objectives: ``topk`` and ``center_of_mass``.
KINDS = ("topk", "center_of_mass")

#: L∞ budget in pixel units when none is given: 8/255, the largest of Ghorbani et al.'s budgets.
DEFAULT_EPS = 8 / 255

#: Weight ``a`` of the explanation term per kind when none is given (the output term's ``b`` is 1e6,
#: as for the targeted attack). The top-k share is in [0, 1], the centre-of-mass distance in pixels.
DEFAULT_A = {kind: getattr(UNTARGETED, f"a_{kind}") for kind in KINDS}


def topk_mask(h: Tensor, k: int) -> Tensor:
    """1 on the ``k`` largest pixels of each map, else 0: (B, H, W) → (B, H, W) float."""
    flat = h.reshape(len(h), -1)
    mask = torch.zeros_like(flat)
    mask.scatter_(1, flat.topk(k, dim=1).indices, 1.0)
    return mask.view_as(h)


def center_of_mass(h: Tensor) -> Tensor:
    """Centre of mass (row, column) in pixels of non-negative maps (B, H, W) → (B, 2), differentiable."""
    rows = torch.arange(h.shape[-2], dtype=h.dtype, device=h.device)
    cols = torch.arange(h.shape[-1], dtype=h.dtype, device=h.device)
    total = h.sum((1, 2)).clamp_min(torch.finfo(h.dtype).tiny)
    return torch.stack([(h.sum(2) * rows).sum(1) / total, (h.sum(1) * cols).sum(1) / total], 1)


def topk_loss(h0: Tensor, k: int) -> MapLoss:
    """Ghorbani et al.'s top-k objective: the share of each map on the top-k pixels of its row of ``h0``,
    (b,) in [0, 1], for maps (b, H, W) of the images ``idx``."""
    mask = topk_mask(h0, k)
    return lambda h, idx: (h * mask[idx]).sum((1, 2)) / h.sum((1, 2)).clamp_min(torch.finfo(h.dtype).tiny)


def center_of_mass_loss(h0: Tensor) -> MapLoss:
    """Ghorbani et al.'s centre-of-mass objective: minus the distance (pixels) of each map's centre
    of mass from its row of ``h0``'s, (b,) ≤ 0, for maps (b, H, W) of the images ``idx``."""
    c0 = center_of_mass(h0)
    # + tiny under the root: the distance's gradient is undefined where it is 0 (the first step).
    return lambda h, idx: -(((center_of_mass(h) - c0[idx]) ** 2).sum(1) + 1e-12).sqrt()


@preserves_model_state
def untargeted_attack(
    model: nn.Module,
    x: Tensor,
    exp_method: str = "integrated_gradients",
    num_iter: int = 100,
    kind: str = "topk",
    k: int = UNTARGETED.k,
    eps: float | None = DEFAULT_EPS,
    a: float | None = None,
    **options: Any,
) -> AttackResult:
    """Push the explanation of ``x`` away from itself, keeping the class (Ghorbani et al. 2019).

    Args:
        model: a classifier in pixel space returning logits.
        x: images (B, 3, H, W) or (3, H, W) in [0, 1].
        exp_method: one of :data:`deepsaliency.methods.ATTACK_METHODS` (as for :func:`deepsaliency.attack.run_attack`).
        num_iter: Adam steps (≥ 1).
        kind: ``topk`` (minimise the map's share on its original top-k pixels) or
            ``center_of_mass`` (maximise the shift of its centre of mass, in pixels).
        k: pixels of the top-k set, 1 ≤ k < H·W (``topk`` only; 1000 as in the paper and ``metrics.top_k``).
        eps: L∞ budget in pixel units, in [0, 1] (0: x_adv = x); default 8/255 (Ghorbani et al.'s largest);
            None → no budget. ``x_adv`` is always clamped to [0, 1].
        a: weight of the explanation term; None → :data:`DEFAULT_A` of ``kind``.
        **options: the optimiser's settings (:class:`~deepsaliency.attack.params.LoopSettings`: ``lr``,
            ``lr_end``, ``b`` the weight of ``MSE(softmax(x_adv), softmax(x))``, ``beta_start``, ``beta_end``,
            ``eval_every``, ``resample``, ``fast``, ``callback``, ``progress``, ``tol``) and the method's
            parameters, as for :func:`deepsaliency.attack.run_attack`.

    Returns:
        An :class:`~deepsaliency.attack.loop.AttackResult`: ``x_adv`` (B, 3, H, W), ``adv_expl`` its
        normalised map on the original network (B, H, W), ``target_map`` the ORIGINAL normalised
        map h(x) the attack moves away from; ``expl_loss`` in the records is the top-k share
        (in [0, 1]) or minus the centre-of-mass shift (pixels).

    Raises:
        ParamError: a bad argument (named), or a map that does not depend on the input
            (see :func:`deepsaliency.attack.network.check_curvature`).
    """
    if kind not in KINDS:
        raise ParamError(f"kind: {kind!r} is not allowed (one of {', '.join(KINDS)})")
    a = DEFAULT_A[kind] if a is None else a
    x, probs_0, params, run = start_attack(model, x, exp_method, num_iter, a, eps, options)
    pixels = x.shape[-2] * x.shape[-1]
    if kind == "topk" and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < pixels):
        raise ParamError(
            f"k: {k!r} is not allowed (an integer in [1, {pixels - 1}] for {x.shape[-2]}×{x.shape[-1]} images)"
        )

    # The original prediction and map: on the original network, with the attack's fixed samples.
    cls = probs_0.argmax(-1)
    x0 = x.detach().clone().requires_grad_(exp_method in INPUT_GRADIENT_METHODS)
    h0 = unit_sum_map(differentiable_attribution(model, x0, exp_method, cls, create_graph=False, **params).detach())
    map_loss = topk_loss(h0, k) if kind == "topk" else center_of_mass_loss(h0)
    return attack_loop(model, x, exp_method, cls, probs_0, params, map_loss, h0, a=a, eps=eps, run=run)
