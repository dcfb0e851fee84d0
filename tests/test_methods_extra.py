"""Guided Backprop, DeepLift, Grad-CAM++ and LRP (deepsaliency.methods_extra) on the real model and tiny nets."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, DeepLift, GuidedBackprop, InputXGradient, Saliency
from torch import nn

from deepsaliency import methods_extra as me
from deepsaliency.errors import ParamError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def chelsea(model, samples):
    x = samples["chelsea"]
    with torch.no_grad():
        target = model(x).argmax(-1)
    return x, target


def _grad(model, x, target):
    return Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=False)


class _GuidedReLU6Fn(torch.autograd.Function):
    """ReLU6 whose backward is the guided rule, written from Springenberg et al. 2015: relu(g)·1[0 < z < 6]."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.clamp(0, 6)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g.clamp_min(0) * ((z > 0) & (z < 6)).to(g.dtype)


class _GuidedReLU6(nn.Module):
    def forward(self, z):
        return _GuidedReLU6Fn.apply(z)


def _swap_relu6(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, _GuidedReLU6())
        else:
            _swap_relu6(child)
    return module


def test_captum_guided_backprop_and_deconvolution_silently_return_the_plain_gradient_on_relu6(model, chelsea):
    # Why methods_extra patches Captum: both hook nn.ReLU only, and this model's activations are all ReLU6.
    x, target = chelsea
    assert not any(type(m) is nn.ReLU for m in model.modules())
    grad = _grad(model, x, target)
    for method in (GuidedBackprop, Deconvolution):
        assert torch.equal(method(model).attribute(x.clone().requires_grad_(True), target=target), grad)


def test_guided_backprop_is_not_the_gradient_and_equals_the_guided_rule(model, chelsea):
    import copy

    x, target = chelsea
    ours = me.guided_backprop(model, x, target)
    grad = _grad(model, x, target)
    assert ours.shape == (1, 3, 224, 224)
    assert (ours - grad).abs().max() > 0.5 * grad.abs().max()  # not a fallback to the gradient
    # Hand computation: the same network with every ReLU6 replaced by a guided ReLU6 autograd function.
    guided = _swap_relu6(copy.deepcopy(model))
    assert not any(isinstance(m, nn.ReLU6) for m in guided.modules())
    reference = _grad(guided, x, target)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max()))


def test_captum_deeplift_falls_back_to_input_x_gradient_and_ours_sums_to_delta(model, chelsea):
    x, target = chelsea
    with torch.no_grad():
        delta = float(model(x)[0, target] - model(torch.zeros_like(x))[0, target])
    plain = DeepLift(model).attribute(x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=target)
    ixg = InputXGradient(model).attribute(x.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(plain, ixg, rtol=1e-4, atol=1e-6)  # ReLU6 unhandled: gradient × (x − 0)
    assert abs(float(plain.sum()) - delta) > 1.0  # so summation-to-delta fails for Captum as is
    ours = me.deeplift(model, x, target)
    assert ours.shape == (1, 3, 224, 224)
    # Rescale rule on every ReLU6: summation-to-delta holds (Shrikumar et al. 2017, eq. 1).
    assert float(ours.sum()) == pytest.approx(delta, rel=1e-4)


def test_deeplift_rescale_rule_by_hand_on_a_tiny_relu6_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU6(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[4.0, -1.0, 2.0], [1.0, 1.0, -3.0]]))
        net[0].bias.copy_(torch.tensor([1.0, 0.5]))
        net[2].weight.copy_(torch.tensor([[2.0, -1.0]]))
        net[2].bias.zero_()
    x = torch.tensor([[2.0, 1.0, 0.0]])  # hidden pre-activations 8 (saturated) and 3.5
    # Hand: Δz = W x (the baseline 0 gives z0 = b); multiplier of ReLU6 = Δa/Δz; attribution = x · Wᵀ m w2.
    z, z0 = net[0](x)[0].detach(), net[0].bias.detach()
    m = (z.clamp(0, 6) - z0.clamp(0, 6)) / (z - z0)
    expected = x[0] * (net[0].weight.detach().T @ (m * net[2].weight.detach()[0]))
    ours = me.deeplift(net, x, torch.tensor([0]))[0]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_deeplift_rejects_a_bad_eps(model, chelsea):
    with pytest.raises(ParamError, match=r"^eps: -1 is not allowed"):
        me.deeplift(model, chelsea[0], chelsea[1], eps=-1)


def _gradcam_pp_by_hand(model, x, target, eps: float) -> torch.Tensor:
    """Chattopadhay et al. 2018 eq. 19, logit gradients g = ∂S/∂A at net.bn2; ``eps`` joins α's denominator."""
    store = {}
    handle = model.net.bn2.register_forward_hook(lambda mod, inp, out: store.update(a=out))
    try:
        score = model(x.clone().requires_grad_(True))[0, int(target)]
        (g,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    a, g = store["a"].detach().double()[0], g.double()[0]
    denom = 2 * g**2 + a.sum((1, 2), keepdim=True) * g**3 + eps
    alpha = torch.where(g != 0, g**2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    weights = (alpha * g.clamp_min(0)).sum((1, 2))
    cam = (weights[:, None, None] * a).sum(0).clamp_min(0)
    cam = (cam - cam.min()) / cam.max()
    up = F.interpolate(cam[None, None], size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
    return (up - up.min()) / up.max()  # the package scales to [0, 1] again after resizing


def test_gradcam_plus_plus_matches_the_paper_formula_by_hand(model, chelsea):
    x, target = chelsea
    ours = me.gradcam_plus_plus(model, x, target)[0, 0].double()
    assert ours.shape == (224, 224) and float(ours.min()) >= 0 and float(ours.max()) == pytest.approx(1, abs=1e-5)
    # The package adds 1e-6 to the α denominator: with it, the hand formula agrees to float32 resolution.
    assert float((ours - _gradcam_pp_by_hand(model, x, target, eps=1e-6)).abs().max()) < 1e-4
    # Without it (the paper's formula) the map differs measurably: this layer's g² is ~1e-6 itself.
    paper = _gradcam_pp_by_hand(model, x, target, eps=0.0)
    gap = float((ours - paper).abs().max())
    print(f"grad-cam++ package vs eps-free paper formula: max |diff| {gap:.4f}")
    assert 1e-4 < gap < 0.1
    assert np.corrcoef(ours.flatten().numpy(), paper.flatten().numpy())[0, 1] > 0.99


def test_gradcam_plus_plus_names_a_bad_layer(model, chelsea):
    with pytest.raises(ParamError, match=r"layer: 'nope' is not a submodule"):
        me.gradcam_plus_plus(model, chelsea[0], chelsea[1], layer="nope")


def _tiny_lrp_net(bias: bool) -> nn.Sequential:
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 2, bias=bias),
        nn.ReLU6(),
        nn.Conv2d(2, 2, 2, bias=bias),
        nn.ReLU6(),
        nn.Flatten(),
        nn.Linear(2, 3, bias=bias),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0, 2.0], [0.5, 1.5]]], [[[-1.0, 0.5], [1.0, -0.5]]]]))
        net[2].weight.copy_(
            torch.tensor(
                [
                    [[[1.0, -0.5], [0.3, 0.2]], [[0.4, 0.1], [-0.2, 0.6]]],
                    [[[0.2, 0.3], [-0.4, 0.5]], [[0.7, -0.1], [0.2, 0.3]]],
                ]
            )
        )
        net[5].weight.copy_(torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, 0.3]]))
        if bias:
            net[0].bias.copy_(torch.tensor([0.2, -0.1]))
            net[2].bias.copy_(torch.tensor([0.3, -0.2]))
            net[5].bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    return net


def _stab(z: np.ndarray, eps: float) -> np.ndarray:
    return z + eps * np.where(z >= 0, 1.0, -1.0)  # zennit's Stabilizer: sign(0) counts as +


def _lrp_by_hand(net: nn.Sequential, x: np.ndarray, t: int, eps: float) -> np.ndarray:
    """Flat (first conv) → z⁺ (second conv) → ε (dense), ReLU6 passes relevance (Montavon et al. 2019)."""
    w1, w2, w3 = (net[i].weight.detach().double().numpy() for i in (0, 2, 5))
    b1, b2, b3 = (
        (net[i].bias.detach().double().numpy() if net[i].bias is not None else np.zeros(len(net[i].weight)))
        for i in (0, 2, 5)
    )
    a0 = x[0]  # (1, 3, 3)
    z1 = np.array(
        [[[np.sum(a0[:, i : i + 2, j : j + 2] * w1[o]) + b1[o] for j in range(2)] for i in range(2)] for o in range(2)]
    )
    a1 = np.clip(z1, 0, 6)
    z2 = np.array([np.sum(a1 * w2[o]) + b2[o] for o in range(2)])
    a2 = np.clip(z2, 0, 6)
    z3 = w3 @ a2 + b3
    r3 = np.zeros(3)
    r3[t] = z3[t]
    r2 = a2 * (w3.T @ (r3 / _stab(z3, eps)))  # ε rule
    r1 = np.zeros_like(a1)  # z⁺ rule: positive inputs × positive weights, plus the positive bias in the denominator
    for o in range(2):
        contrib = np.clip(a1, 0, None) * np.clip(w2[o], 0, None) + np.clip(a1, None, 0) * np.clip(w2[o], None, 0)
        den = contrib.sum() + max(b2[o], 0)
        r1 += contrib / _stab(np.array(den), 1e-6) * r2[o]
    r0 = np.zeros_like(a0)  # flat rule: every input of the window gets an equal share
    for o in range(2):
        for i in range(2):
            for j in range(2):
                r0[:, i : i + 2, j : j + 2] += r1[o, i, j] / _stab(np.array(4.0), 1e-6)
    return r0, z3[t]


@pytest.mark.parametrize("bias", [False, True])
def test_lrp_matches_the_rules_by_hand_on_a_tiny_relu6_net(bias):
    net = _tiny_lrp_net(bias)
    x = torch.tensor([[[[3.0, 1.0, 2.0], [0.5, 4.0, 1.0], [2.0, 0.0, 3.0]]]])  # saturates a ReLU6 (z = 13.5)
    assert float(net[1](net[0](x)).max()) == 6.0
    expected, logit = _lrp_by_hand(net, x.double().numpy(), t=1, eps=1e-6)
    ours = me.lrp(net, x, torch.tensor([1]))[0].double().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    if not bias:  # conservation: a bias-free ReLU6 net passes the whole logit to the pixels
        assert ours.sum() == pytest.approx(logit, rel=1e-5)


def _tiny_residual_net() -> nn.Module:
    from timm.models._efficientnet_blocks import InvertedResidual

    from deepsaliency.models import fold_batchnorm

    torch.manual_seed(0)
    block = InvertedResidual(4, 4, dw_kernel_size=3, exp_ratio=2.0, act_layer=nn.ReLU6)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.ReLU6(),
        block,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3, bias=False),
    ).eval()
    fold_batchnorm(net)
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
        # non-negative block weights: no unit with only negative contributions, where z+ drops relevance
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
    assert block.has_skip
    return net


def test_lrp_skip_canonizer_conserves_relevance_through_a_timm_residual_block():
    net = _tiny_residual_net()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = net(x)
    t = int(logits.argmax())
    with_sum = me.lrp(net, x, torch.tensor([t]))
    without = me.lrp(net, x, torch.tensor([t]), canonize_skips=False)
    with torch.no_grad():
        torch.testing.assert_close(net(x), logits)  # the canonizer was removed, the forward unchanged
    assert float(with_sum.sum()) == pytest.approx(float(logits[0, t]), rel=1e-3)  # ε = 1e-6 stabilisers aside
    # A plain '+' copies the relevance into both branches: with this net's one skip, everything is counted twice.
    assert float(without.sum()) == pytest.approx(2 * float(logits[0, t]), rel=1e-3)


def test_lrp_on_the_real_model_engages_the_rules(model, chelsea):
    x, target = chelsea
    with torch.no_grad():
        logits = model(x)
    rel = me.lrp(model, x, target)
    assert rel.shape == (1, 3, 224, 224) and bool(torch.isfinite(rel).all())
    with torch.no_grad():  # the composite and the skip canonizer are gone again: same function, same blocks
        torch.testing.assert_close(model(x), logits, rtol=0, atol=0)
    assert all(
        m.has_skip == (m.conv_pw.in_channels == m.conv_pwl.out_channels and m.conv_dw.stride == (1, 1))
        for m in model.modules()
        if type(m).__name__ == "InvertedResidual"
    )
    assert not any(hasattr(m, "canonizer_sum") for m in model.modules())
    # Not the gradient × input of the normalised pixels (what zennit gives when no rule attaches).
    z = ((x - model.mean) / model.std).requires_grad_(True)
    gxi = z * torch.autograd.grad(model.net(z)[0, int(target)], z)[0]
    corr = np.corrcoef(rel.flatten().numpy(), gxi.detach().flatten().numpy())[0, 1]
    assert corr < 0.9
    with pytest.raises(ParamError, match=r"^epsilon: 0 is not allowed"):
        me.lrp(model, x, target, epsilon=0)


def test_every_method_runs_on_a_batch_of_two_with_different_targets(model, samples):
    x = torch.cat([samples["chelsea"], samples["coffee"]])
    with torch.no_grad():
        target = model(x).argmax(-1)
    single = me.guided_backprop(model, x[1:], target[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in me.METHODS_EXTRA:
            out = getattr(me, name)(model, x, target)
            assert out.shape[0] == 2 and out.shape[-2:] == (224, 224) and bool(torch.isfinite(out).all())
            if name == "guided_backprop":
                torch.testing.assert_close(out[1:], single, rtol=1e-4, atol=1e-6)
