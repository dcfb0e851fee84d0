"""Ghorbani et al. (2019)'s untargeted top-k and centre-of-mass attacks (deepsaliency/untargeted.py)."""

import numpy as np
import pytest
import scipy.ndimage
import torch
from helpers import TinyNet, images  # a 5-class net: b=1e3 weighs its output term as 1e6 does for 1000 classes

from deepsaliency.attack import perform_attack
from deepsaliency.attack.untargeted import DEFAULT_EPS, center_of_mass, topk_mask, untargeted_attack
from deepsaliency.differentiable import differentiable_attribution, unit_sum_map
from deepsaliency.errors import ParamError
from deepsaliency.metrics.similarity import center_of_mass_shift, top_k_intersection


def original_map(net, x, method, cls):
    return unit_sum_map(
        differentiable_attribution(net, x.clone().requires_grad_(), method, cls, create_graph=False)
    ).detach()


def test_center_of_mass_and_topk_mask_agree_with_scipy_and_numpy():
    h = torch.rand(2, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for i in range(2):
        np.testing.assert_allclose(center_of_mass(h)[i].numpy(), scipy.ndimage.center_of_mass(h[i].numpy()), rtol=1e-12)
        top = np.argsort(h[i].numpy().ravel())[-10:]
        assert set(np.flatnonzero(topk_mask(h, 10)[i].numpy().ravel())) == set(top)


def test_topk_attack_pushes_the_top_pixels_out_and_keeps_the_class():
    net, x = TinyNet(), images(2)
    k = 60  # of 576 pixels
    # a/b = 0.1: the weights this tiny net needs (the library's default a is tuned for b = 1e6 on the real model)
    res = untargeted_attack(net, x, "saliency", num_iter=20, k=k, lr=0.01, a=100.0, b=1e3, eval_every=5)
    h0 = original_map(net, x, "saliency", res.original_class)
    assert torch.allclose(res.target_map, h0, atol=1e-7)  # the map the attack moves away from
    for i in range(2):
        ev = [e for e in res.evaluations if e["image"] == i]
        best = next(e for e in ev if e["step"] == res.best_step[i])
        assert ev[0]["step"] == 0 and res.best_step[i] > 0 and best["class_kept"]
        assert best["expl_loss"] < 0.6 * ev[0]["expl_loss"]  # the share on the original top-k fell
        assert top_k_intersection(h0[i].numpy(), res.adv_expl[i].numpy(), k) < 0.6
    assert net(res.x_adv).argmax(-1).tolist() == res.original_class
    assert float((res.x_adv - x).abs().max()) <= DEFAULT_EPS + 1e-6
    # The returned map is the ORIGINAL network's map of the returned image.
    assert torch.allclose(original_map(net, res.x_adv, "saliency", res.original_class), res.adv_expl, atol=1e-6)


def test_center_of_mass_attack_moves_the_centre():
    net, x = TinyNet(), images(1)
    res = untargeted_attack(
        net, x, "input_x_gradient", num_iter=20, kind="center_of_mass", lr=0.01, b=1e3, eps=0.1, eval_every=5
    )
    h0 = original_map(net, x, "input_x_gradient", res.original_class)
    shift = center_of_mass_shift(h0[0].numpy(), res.adv_expl[0].numpy())
    assert shift > 1.0  # pixels, on a 24×24 image
    assert res.evaluations[-1]["expl_loss"] < 0  # minus the shift
    assert float((res.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert net(res.x_adv).argmax(-1).tolist() == res.original_class


def test_perform_attack_without_a_target_is_the_topk_attack():
    net, x = TinyNet(), images(1)
    x_adv, adv = perform_attack(net, x, "saliency", num_iter=3, k=60, lr=0.01, b=1e3, eval_every=1)
    res = untargeted_attack(net, x, "saliency", num_iter=3, k=60, lr=0.01, b=1e3, eval_every=1)
    assert torch.equal(x_adv, res.x_adv) and torch.equal(adv, res.adv_expl)
    assert float((x_adv - x).abs().max()) > 0


def test_bad_untargeted_arguments_are_named():
    net, x = TinyNet(), images(1)
    with pytest.raises(ParamError, match=r"^kind: 'middle' is not allowed \(one of topk, center_of_mass\)$"):
        untargeted_attack(net, x, "saliency", num_iter=1, kind="middle")
    with pytest.raises(ParamError, match=r"^k: 1000 is not allowed \(an integer in \[1, 575\] for 24×24 images\)$"):
        untargeted_attack(net, x, "saliency", num_iter=1)
    with pytest.raises(ParamError, match=r"^eps: 2 is not allowed"):
        untargeted_attack(net, x, "saliency", num_iter=1, k=10, eps=2)
    with pytest.raises(ParamError, match=r"^exp_method: 'occlusion' cannot be attacked"):  # gradcam can (issue 16)
        untargeted_attack(net, x, "occlusion", num_iter=1, k=10)
