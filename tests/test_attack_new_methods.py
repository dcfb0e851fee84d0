"""Issue 16: Grad-CAM and the β-smoothed defence's methods are attacked on the real model (tiny settings)."""

import pytest
import torch
from helpers import pearson

from deepsaliency.attack import run_attack
from deepsaliency.defence import smoothed_network
from deepsaliency.differentiable import differentiable_attribution, unit_sum_map

EPS = 8 / 255


def map_of(model, x, method, cls, **params) -> torch.Tensor:
    xr = x.clone().requires_grad_()
    return unit_sum_map(differentiable_attribution(model, xr, method, cls, create_graph=False, **params)).detach()


def attack(model, samples, method, **params):
    x, xt = samples["chelsea"], samples["coffee"]
    res = run_attack(model, x, method, num_iter=10, target=xt, eps=EPS, eval_every=5, **params)
    return x, res


def assert_moved_toward_the_target(model, x, res, method, **params):
    cls = res.original_class
    ev = res.evaluations
    best = next(e for e in ev if e["step"] == res.best_step[0])
    assert ev[0]["step"] == 0 and res.best_step[0] > 0 and best["class_kept"]
    assert best["loss"] < 0.95 * ev[0]["loss"]  # the attack lowered the loss on the original network
    r0 = pearson(map_of(model, x, method, cls, **params)[0], res.target_map[0])
    r_adv = pearson(res.adv_expl[0], res.target_map[0])
    assert r_adv > r0 + 0.02, (r0, r_adv)
    assert float((res.x_adv - x).abs().max()) <= EPS + 1e-6
    assert model(res.x_adv).argmax(-1).tolist() == cls  # the class kept on the ORIGINAL network


def test_the_gradcam_attack_moves_the_map_toward_the_target(model, samples):
    x, res = attack(model, samples, "gradcam", layer="auto")
    assert_moved_toward_the_target(model, x, res, "gradcam")
    # The returned map is Grad-CAM's (relu_sum, upsampled) of x_adv on the original network.
    torch.testing.assert_close(map_of(model, res.x_adv, "gradcam", res.original_class), res.adv_expl)
    assert all(e["beta"] != e["beta"] for e in res.history)  # NaN: no softplus swap for Grad-CAM


@pytest.mark.parametrize("method", ["saliency_smoothed", "input_x_gradient_smoothed"])
def test_the_smoothed_attack_moves_the_beta_network_map(model, samples, method):
    x, res = attack(model, samples, method, beta=10.0)
    assert_moved_toward_the_target(model, x, res, method, beta=10.0)
    cls = res.original_class
    # The target, the evaluated and returned maps are the FIXED β-network's (the defended explanation) ...
    torch.testing.assert_close(map_of(model, res.x_adv, method, cls, beta=10.0), res.adv_expl)
    torch.testing.assert_close(map_of(model, samples["coffee"], method, 967, beta=10.0), res.target_map)
    plain = map_of(model, res.x_adv, method.removesuffix("_smoothed"), cls)
    assert (plain - res.adv_expl).abs().sum() > 0.05  # ... not the plain network's (L1 of unit-sum maps)
    assert {e["beta"] for e in res.history} == {10.0}  # no annealing
    # The output term is the ORIGINAL classifier's: at step 1 (x_adv = x) it is zero; on the β-network it is not.
    original = model(x).softmax(-1).detach()
    with torch.no_grad(), smoothed_network(model, 10.0):
        smoothed_gap = float(((model(x).softmax(-1) - original) ** 2).mean())
    assert res.history[0]["output_loss"] < 1e-3 * smoothed_gap
