"""Issue 15: every attack runs until its objective has converged, and says so per image."""

import math

import pytest
import torch
from helpers import TinyNet, corner_map, images, pearson

from deepsaliency import generate_masks
from deepsaliency.attack import convergence_start, has_converged, run_attack, untargeted_attack
from deepsaliency.differentiable import differentiable_attribution, unit_sum_map
from deepsaliency.errors import ParamError


def trace_of(losses: dict[int, float], kept: bool = True) -> list[tuple[int, float, bool, float, bool]]:
    """(step, best loss so far, kept, the evaluated iterate's loss, kept) per evaluation, as the loop records it."""
    best, out = math.inf, []
    for step in sorted(losses):
        best = min(best, losses[step])
        out.append((step, best, kept, losses[step], kept))
    return out


def first_converged(losses: dict[int, float], tol: float | None, start: int, kept: bool = True) -> int | None:
    trace = trace_of(losses, kept)
    return next((trace[j][0] for j in range(len(trace)) if has_converged(trace[: j + 1], tol, start)), None)


def test_stopping_rule_on_a_synthetic_loss_sequence():
    # Evaluated every 5 steps: the loss falls 10 % per evaluation up to step 100, then stays flat.
    losses = {t: 0.9 ** min(t, 100) / 5 for t in range(0, 201, 5)}
    # The window reaches back to step ≥ 100 first at t = 125 (125 − ⌈25⌉ = 100; at 120 it is 96 → step 95).
    assert first_converged(losses, 1e-3, start=50) == 125
    assert first_converged(losses, 1e-3, start=150) == 150  # not before the minimum step
    assert first_converged(losses, None, start=50) is None and first_converged(losses, 0.0, start=50) is None
    assert first_converged(losses, 1e-3, start=50, kept=False) is None  # a pick that loses the class never stops
    # Still improving 0.5 % per evaluation: converged under tol 0.1, never under 1e-3.
    slow = {t: 0.995 ** (t / 5) for t in range(0, 201, 5)}
    # at t = 50 the window (40, 50] holds two evaluations; the rule waits for three (45, 50, 55)
    assert first_converged(slow, 0.1, start=50) == 55
    # two evaluations without progress inside a still-improving run (rocket under input×gradient, eval_every 10):
    # no stop at 80, where the window (60, 80] holds only 70 and 80
    bumpy = {t: 1.0 - 0.004 * t for t in range(0, 201, 10)}
    bumpy.update({70: bumpy[60] + 0.05, 80: bumpy[60] + 0.02})
    assert first_converged(bumpy, 1e-3, start=50) is None
    # (the window count alone: the same best losses with the iterates at rest on them)
    assert first_stop(at_rest(trace_of(bumpy))[:9], 1e-3, start=50) is None
    assert first_converged(slow, 1e-3, start=50) is None
    assert convergence_start(200, 5) == 50 and convergence_start(40, 10) == 30


def at_rest(trace: list[tuple[int, float, bool, float, bool]]) -> list[tuple[int, float, bool, float, bool]]:
    """The same best losses with every evaluated iterate sitting on the best."""
    return [(t, best, kept, best, kept) for t, best, kept, _, _ in trace]


def first_stop(trace: list[tuple[int, float, bool, float, bool]], tol: float, start: int) -> int | None:
    return next((trace[j][0] for j in range(len(trace)) if has_converged(trace[: j + 1], tol, start)), None)


def test_an_excursion_above_the_best_iterate_is_not_convergence():
    # Saliency at 4/255 on rocket in a default run (the loss a·expl + b·output every 10 steps, rounded): the iterates
    # left the best one (step 80), rose 2× and came back; the rule without the at-rest condition stopped the attack at
    # step 110, at r(adv, target) 0.73, where the same attack run to its last step reaches 0.76.
    losses = dict(
        zip(
            range(0, 160, 10),
            [60.0, 50.5, 30.5, 22.2, 18.5, 15.4, 13.3, 12.0, 10.8, 17.0, 23.3, 20.0, 12.1, 10.5, 9.6, 9.1],
            strict=True,
        )
    )
    start = convergence_start(150, 10)
    assert first_converged(losses, 1e-3, start) is None  # the iterates at 90–110 are far above the best: not at rest
    # The same best losses with the iterates at rest on them: the window (88, 110] saw no improvement, so it stops.
    assert first_stop(at_rest(trace_of(losses)), 1e-3, start) == 110
    # An iterate that passes within tol of the best on its way down (10.805 at 120) does not end it either: the
    # window (96, 120] still holds the excursion.
    assert first_converged({**losses, 120: 10.805}, 1e-3, start) is None
    # A window whose every iterate is at rest within tol of the best (0.05 % above it) is enough; 1e-4 is not.
    near = [(t, b, k, b * 1.0005 if 80 < t <= 110 else b, k) for t, b, k, _, _ in trace_of(losses)][:12]
    assert first_stop(near, 1e-3, start) == 110 and first_stop(near, 1e-4, start) is None
    # One iterate in the window that lost the class (even on the best loss) is not at rest.
    lost = [(t, b, k, loss, t != 100) for t, b, k, loss, _ in at_rest(trace_of(losses))][:12]
    assert first_stop(lost, 1e-3, start) is None
    # The best must keep the class at the window's start too (here it kept it only from step 90 on).
    late = [(t, b, t >= 90, loss, t >= 90) for t, b, k, loss, _ in at_rest(trace_of(losses))][:12]
    assert first_stop(late, 1e-3, start) is None


def test_converged_images_leave_the_batch_without_changing_anyone_s_result(monkeypatch):
    # The property is the loop's bookkeeping. A batch of 3 and a batch of 1 differ by float noise (≈ 1e-6 of the
    # logits, from the convolutions), which can flip a stopping decision that sits on the threshold: it does at
    # image 2 with the compiled activation kernels (38 vs 36 steps), so this test runs them eagerly.
    monkeypatch.setenv("DEEPSALIENCY_COMPILE", "0")
    x, tmap = images(3), corner_map(3)
    tmap[1] = tmap[1].flip(-1)
    kwargs = dict(num_iter=40, target_map=tmap, lr=0.02, eval_every=2, tol=0.02)
    both = run_attack(TinyNet(), x, "saliency", **kwargs)
    assert len(set(both.steps)) > 1  # they stopped at different steps: the batch shrank mid-run
    for i in range(3):
        alone = run_attack(TinyNet(), x[i : i + 1], "saliency", **{**kwargs, "target_map": tmap[i : i + 1]})
        assert both.steps[i] == alone.steps[0] and both.converged[i] == alone.converged[0]
        # float noise of a batch of 3 vs 1 only (a mixed-up Adam state would move pixels by ~lr = 0.02)
        torch.testing.assert_close(both.x_adv[i], alone.x_adv[0], atol=1e-4, rtol=0)
        assert both.best_step[i] <= both.steps[i]
        assert max(r["step"] for r in both.history if r["image"] == i) == both.steps[i]


def _attack_real(model, samples, tol):
    return run_attack(
        model, samples["chelsea"], "saliency", num_iter=40, target=samples["coffee"], lr=2e-3, eval_every=2, tol=tol
    )


def test_a_loose_tolerance_stops_the_real_attack_early_and_counts_its_cost(model, samples):
    res = _attack_real(model, samples, tol=0.2)
    n_evals = len(res.evaluations)  # one image: step 0 and every 2nd step it ran
    assert res.converged == [True] and res.steps[0] < 40 and res.steps[0] >= convergence_start(40, 2)
    assert res.passes == [res.steps[0] + n_evals]  # saliency: one network input per step and per evaluation
    assert len(res.history) == res.steps[0] and n_evals == 1 + res.steps[0] // 2
    full = _attack_real(model, samples, tol=None)
    assert full.steps == [40] and full.converged == [False] and full.passes == [40 + 1 + 20]
    # The early stop only cut steps: the first steps are the same computation.
    assert [r["expl_loss"] for r in full.history[: res.steps[0]]] == pytest.approx(
        [r["expl_loss"] for r in res.history], rel=1e-5
    )


def test_passes_count_every_sample_of_a_sampled_method():
    res = run_attack(
        TinyNet(),
        images(1),
        "integrated_gradients",
        num_iter=6,
        target_map=corner_map(1),
        lr=0.02,
        eval_every=2,
        n_steps=3,
    )
    assert res.steps == [6] and res.passes == [3 * (6 + 4)]  # 3 path points × (6 steps + evaluations 0, 2, 4, 6)


def test_with_eps_zero_the_attack_changes_nothing(model, samples):
    x, xt = samples["chelsea"], samples["coffee"]
    res = run_attack(model, x, "saliency", num_iter=3, target=xt, eps=0.0, eval_every=1)
    assert torch.equal(res.x_adv, x)
    cls_t = int(model(xt).argmax())
    target = unit_sum_map(
        differentiable_attribution(model, xt.clone().requires_grad_(), "saliency", cls_t, create_graph=False)
    )
    orig = unit_sum_map(
        differentiable_attribution(
            model, x.clone().requires_grad_(), "saliency", res.original_class, create_graph=False
        )
    )
    assert pearson(res.adv_expl, target) == pytest.approx(pearson(orig, target), abs=1e-6)
    assert all(e["expl_loss"] == pytest.approx(res.evaluations[0]["expl_loss"], rel=1e-6) for e in res.evaluations)


MASKS = generate_masks(N=16, s=4, p1=0.5, input_size=(24, 24), seed=0)
PARAMS = {
    "integrated_gradients": {"n_steps": 3},
    "smoothgrad": {"nt_samples": 2},
    "rise": {"masks": MASKS, "rise_masks": 8},
}


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise"])
def test_every_attacked_method_stays_within_every_budget(method, recwarn):
    x, params = images(2), PARAMS.get(method, {})
    for eps in (0.0, 2 / 255, 8 / 255):  # lr 0.05 ≫ eps: every step hits the budget's edge
        res = run_attack(
            TinyNet(), x, method, num_iter=2, target_map=corner_map(2), lr=0.05, eps=eps, eval_every=1, b=1e3, **params
        )
        linf = float((res.x_adv - x).abs().max())
        assert linf <= eps + 1e-6, (method, eps)
        if method != "rise":  # (rise's few masks: its best iterate may be the clean image)
            assert linf >= eps - 1e-6, (method, eps)
    un = untargeted_attack(TinyNet(), x, method, num_iter=2, eps=2 / 255, lr=0.05, eval_every=1, b=1e3, k=50, **params)
    assert float((un.x_adv - x).abs().max()) <= 2 / 255 + 1e-6


def test_bad_tol_and_eps_are_named():
    with pytest.raises(ParamError, match=r"^tol: 1.5 is not allowed"):
        run_attack(TinyNet(), images(1), "saliency", num_iter=1, target_map=corner_map(1), tol=1.5)
    with pytest.raises(ParamError, match=r"^eps: -0.1 is not allowed .*\[0, 1\]"):
        run_attack(TinyNet(), images(1), "saliency", num_iter=1, target_map=corner_map(1), eps=-0.1)
