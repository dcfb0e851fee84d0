"""The explanation attack, its softplus and fast-convolution swaps, and PGD."""
import math

import pytest
import torch
from torch import nn

from deepsaliency.attack import beta_schedule, perform_attack, pgd_attack, run_attack
from deepsaliency.diffexplain import explanation, normalized_map
from deepsaliency.errors import ParamError
from deepsaliency.fastconv import FastGradConv2d, FrozenBatchNorm2d, PointwiseConv2d, conv2d_first_order_backward, fast_double_backward
from deepsaliency.softplus import (
    FunctionalSoftplus, SoftplusHardsigmoid, SoftplusHardswish, SoftplusHardtanh, SoftplusLeakyReLU, SoftplusReLU,
    softplus_activations,
)


class TinyNet(nn.Module):
    """A small pixel-space classifier with ReLU, ReLU6, LeakyReLU, batch norm and a depthwise conv."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(inplace=True),
            nn.Conv2d(8, 16, 1), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 5),
        )
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
        self.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x * 4.0 - 2.0)


@pytest.fixture()
def tiny():
    return TinyNet()


@pytest.fixture()
def one_thread():
    # Double-precision convolutions of tiny tensors: thread hand-offs cost more than the work.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def images(n: int = 2, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g)


def corner_map(n: int, size: int = 24) -> torch.Tensor:
    m = torch.full((n, size, size), 0.05)
    m[:, : size // 3, : size // 3] = 1.0
    return m


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


# ---------------------------------------------------------------- softplus swap


def test_softplus_swap_restores_the_original_modules(tiny):
    before = [(name, id(m)) for name, m in tiny.named_modules()]
    relus = [m for m in tiny.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU))]
    with softplus_activations(tiny, beta=5.0) as sp:
        assert sp.count == 3
        kinds = [type(m) for m in tiny.modules()]
        assert SoftplusReLU in kinds and SoftplusHardtanh in kinds and SoftplusLeakyReLU in kinds
        assert not any(isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU)) for m in tiny.modules())
        sp.set_beta(50.0)
        assert all(m.beta == 50.0 for m in sp.replacements)
    assert [(name, id(m)) for name, m in tiny.named_modules()] == before
    assert all(any(m is r for m in tiny.modules()) for r in relus)


def test_softplus_swap_restores_on_error_and_reaches_timm_batchnormact(model):
    acts = {name: m for name, m in model.named_modules() if isinstance(m, nn.ReLU6)}
    assert "net.bn1.act" in acts  # timm's BatchNormAct2d keeps its activation as a child
    with pytest.raises(RuntimeError, match="boom"):
        with softplus_activations(model, beta=10.0) as sp:
            assert sp.count == len(acts) == 33
            assert isinstance(model.net.bn1.act, SoftplusHardtanh)
            raise RuntimeError("boom")
    assert {name: m for name, m in model.named_modules() if isinstance(m, nn.ReLU6)} == acts


def test_softplus_tends_to_the_original_activation_and_has_exact_second_derivatives(one_thread):
    z = torch.linspace(-8, 12, 401, dtype=torch.double)
    assert torch.allclose(SoftplusHardtanh(200.0)(z), nn.ReLU6()(z), atol=0.01)
    assert torch.allclose(SoftplusLeakyReLU(200.0, 0.1)(z), nn.LeakyReLU(0.1)(z), atol=0.01)
    for act in (SoftplusReLU(2.0), SoftplusHardtanh(3.0), SoftplusLeakyReLU(2.0, 0.2)):
        x = (torch.randn(2, 3, 4, 4, dtype=torch.double) * 4).requires_grad_()
        assert torch.autograd.gradcheck(act, (x,)) and torch.autograd.gradgradcheck(act, (x,))
        assert torch.allclose(act(x), act.reference(x))


# ---------------------------------------------------------------- fast double backward


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 4), (2, 1, 1, 2), (2, 0, 2, 1)])
def test_first_order_conv_backward_passes_gradcheck(one_thread, stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 5, dtype=torch.double, generator=g).requires_grad_()
    w = torch.randn(4, 4 // groups, 3, 3, dtype=torch.double, generator=g).requires_grad_()
    b = torch.randn(4, dtype=torch.double, generator=g).requires_grad_()

    def f(x, w, b):
        return conv2d_first_order_backward(x, w, b, stride, padding, dilation, groups)

    assert torch.allclose(f(x, w, b), nn.functional.conv2d(x, w, b, stride, padding, dilation, groups))
    assert torch.autograd.gradcheck(f, (x, w, b)) and torch.autograd.gradgradcheck(f, (x, w, b))


def test_fast_swap_restores_modules_and_keeps_values(tiny):
    x = images()
    before = [id(m) for m in tiny.modules()]
    ref = tiny(x)
    with fast_double_backward(tiny) as swap:
        kinds = [type(new) for *_, new in swap.replaced]
        assert kinds.count(FastGradConv2d) == 2 and kinds.count(PointwiseConv2d) == 1 and kinds.count(FrozenBatchNorm2d) == 2
        assert torch.allclose(tiny(x), ref, atol=1e-5)
    assert [id(m) for m in tiny.modules()] == before


def _second_order_gradient(model, x, target):
    xx = x.clone().requires_grad_()
    h = normalized_map(explanation(model, xx, "saliency", target, create_graph=True))
    (g,) = torch.autograd.grad((h**2).sum(), xx)
    return g


def test_fast_double_backward_equals_naive_on_the_real_model(model, samples):
    x = samples["coffee"]
    with softplus_activations(model, beta=10.0, fused=False):
        naive = _second_order_gradient(model, x, 967)
    with softplus_activations(model, beta=10.0), fast_double_backward(model) as swap:
        assert sum(isinstance(m, FastGradConv2d) and m.conv.groups > 1 for m in swap.replacements) == 16  # the depthwise convs
        fast = _second_order_gradient(model, x, 967)
    assert naive.abs().sum() > 0
    assert float((fast - naive).norm() / naive.norm()) < 1e-4


# ---------------------------------------------------------------- the attack


def test_attack_lowers_the_loss_and_moves_the_map_toward_the_target(tiny):
    x, tmap = images(), corner_map(2)
    res = run_attack(tiny, x, "saliency", num_iter=25, target_map=tmap, lr=0.02, lr_end=None, eval_every=5)
    h0 = normalized_map(explanation(tiny, x.clone().requires_grad_(), "saliency", res.original_class, create_graph=False))
    for i in range(2):
        ev = [e for e in res.evaluations if e["image"] == i]
        assert ev[0]["step"] == 0 and res.best_step[i] > 0
        best = next(e for e in ev if e["step"] == res.best_step[i])
        assert best["expl_loss"] < 0.5 * ev[0]["expl_loss"] and best["class_kept"]
        assert pearson(res.adv_expl[i], tmap[i]) > pearson(h0[i], tmap[i]) + 0.2
        steps = [r for r in res.history if r["image"] == i]
        assert steps[-1]["expl_loss"] < steps[0]["expl_loss"]
    assert len(res.history) == 25 * 2
    assert math.isclose(res.history[0]["beta"], 10.0) and math.isclose(res.history[-1]["beta"], 100.0)
    # The returned map is the original network's map of the returned image.
    h_adv = normalized_map(explanation(tiny, res.x_adv.clone().requires_grad_(), "saliency", res.original_class, create_graph=False))
    assert torch.allclose(h_adv, res.adv_expl, atol=1e-6)


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "smoothgrad"])
def test_other_gradient_methods_move_toward_the_target(tiny, method):
    x, tmap = images(1), corner_map(1)
    params = {"integrated_gradients": {"n_steps": 3}, "smoothgrad": {"nt_samples": 3}}.get(method, {})
    res = run_attack(tiny, x, method, num_iter=10, target_map=tmap, lr=0.02, eval_every=5, **params)
    ev = res.evaluations
    assert min(e["expl_loss"] for e in ev if e["step"] > 0) < ev[0]["expl_loss"]


def test_rise_attack_uses_the_original_network(tiny):
    from deepsaliency import generate_masks

    masks = generate_masks(N=16, s=4, p1=0.5, input_size=(24, 24), seed=0)
    x, tmap = images(1), corner_map(1)
    res = run_attack(tiny, x, "rise", num_iter=6, target_map=tmap, lr=0.02, eval_every=3, masks=masks, rise_masks=8)
    assert all(math.isnan(r["beta"]) for r in res.history)
    ev = res.evaluations
    assert min(e["expl_loss"] for e in ev if e["step"] > 0) < ev[0]["expl_loss"]


def test_images_in_a_batch_are_attacked_independently(tiny):
    x, tmap = images(2), corner_map(2)
    tmap[1] = tmap[1].flip(-1)
    both = run_attack(tiny, x, "saliency", num_iter=4, target_map=tmap, lr=0.02, eval_every=2)
    one = run_attack(tiny, x[1:], "saliency", num_iter=4, target_map=tmap[1:], lr=0.02, eval_every=2)
    assert torch.allclose(both.x_adv[1], one.x_adv[0], atol=1e-5)


def test_clamp_and_budget_hold(tiny):
    x = images(2)
    x[0, :, :4] = 1.0  # saturated pixels must stay in range
    x_adv, _ = perform_attack(tiny, x, "saliency", num_iter=6, target_map=corner_map(2), lr=0.2, eps=0.03, eval_every=1)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert float((x_adv - x).abs().max()) <= 0.03 + 1e-6
    assert float((x_adv - x).abs().max()) > 0.02  # lr 0.2 reaches the budget
    free, _ = perform_attack(tiny, x, "saliency", num_iter=6, target_map=corner_map(2), lr=0.2, eval_every=1)
    assert float((free - x).abs().max()) > 0.05


def test_target_images_and_history_list(tiny):
    x = images(2)
    history: list = []
    x_adv, adv = perform_attack(tiny, x, "saliency", num_iter=3, target=x.flip(0), lr=0.01, history=history, eval_every=3)
    assert x_adv.shape == x.shape and adv.shape == (2, 24, 24)
    assert torch.allclose(adv.sum((1, 2)), torch.ones(2))
    assert [set(r) for r in history[:1]] == [{"step", "image", "expl_loss", "output_loss", "beta"}] and len(history) == 6


def test_a_null_attack_warns(tiny):
    with pytest.warns(RuntimeWarning, match="zero perturbation"):
        perform_attack(tiny, images(1), "saliency", num_iter=2, target_map=corner_map(1), a=0.0, b=0.0)


def test_bad_attack_parameters_are_named(tiny):
    x = images(1)
    with pytest.raises(ParamError, match=r"attack.lr: 2.0 is not allowed"):
        perform_attack(tiny, x, "saliency", num_iter=1, target_map=corner_map(1), lr=2.0)
    with pytest.raises(ParamError, match=r"attack.eps: -0.1"):
        perform_attack(tiny, x, "saliency", num_iter=1, target_map=corner_map(1), eps=-0.1)
    with pytest.raises(ParamError, match=r"attack.num_iter: 0"):
        perform_attack(tiny, x, "saliency", num_iter=0, target_map=corner_map(1))
    with pytest.raises(ParamError, match=r"exactly one of target"):  # perform_attack without one: untargeted (issue 12.9)
        run_attack(tiny, x, "saliency", num_iter=1)
    with pytest.raises(ParamError, match=r"'gradcam' cannot be attacked"):
        perform_attack(tiny, x, "gradcam", num_iter=1, target_map=corner_map(1))


def test_beta_schedule_is_geometric():
    betas = [beta_schedule(i, 5, 10.0, 1000.0) for i in range(5)]
    assert betas[0] == pytest.approx(10.0) and betas[-1] == pytest.approx(1000.0)
    assert betas[2] == pytest.approx(100.0)


# ---------------------------------------------------------------- functional activations (issue 12.5)


def test_functional_activation_calls_are_smoothed_like_the_modules(one_thread):
    F = nn.functional
    z = torch.linspace(-8, 9, 61, dtype=torch.double)
    with FunctionalSoftplus(3.0) as mode:
        got = [F.relu(z), torch.relu(z), z.relu(), F.relu(z.clone(), inplace=True), z.clone().relu_(), F.relu6(z),
               F.leaky_relu(z, 0.2), F.hardtanh(z, -2.0, 3.0), F.hardsigmoid(z), F.hardswish(z)]
        assert torch.equal(torch.maximum(z, torch.zeros(())), z.clamp_min(0))  # other calls pass through
    assert mode.calls == len(got)
    want = [SoftplusReLU(3.0)(z)] * 5 + [SoftplusHardtanh(3.0, 0.0, 6.0)(z), SoftplusLeakyReLU(3.0, 0.2)(z),
                                         SoftplusHardtanh(3.0, -2.0, 3.0)(z), SoftplusHardsigmoid(3.0)(z), SoftplusHardswish(3.0)(z)]
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w)
    assert not torch.allclose(got[0], F.relu(z))  # outside the mode: the original function

    def f(x):
        with FunctionalSoftplus(2.0):
            return F.relu(x.clone(), inplace=True) + F.hardswish(x) + F.leaky_relu(x, 0.1)

    x = torch.randn(2, 5, dtype=torch.double).requires_grad_()
    assert torch.autograd.gradcheck(f, (x,)) and torch.autograd.gradgradcheck(f, (x,))


def googlenet(size: int = 32):
    """Torchvision's GoogLeNet (F.relu inside forward: no activation module to swap), seeded random weights."""
    import torchvision

    from deepsaliency.models import Model

    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    return Model(net, input_size=(size, size), labels=[str(i) for i in range(1000)], name="googlenet")


def test_attack_moves_the_map_of_a_network_with_functional_relus(recwarn):
    from deepsaliency.attack import attack_network

    net = googlenet()
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with attack_network(net, 10.0, probe=x) as swapped:
        assert swapped.softplus.count == 0 and swapped.functional is not None  # only functional calls to smooth
    tmap = torch.full((1, 32, 32), 0.05)
    tmap[:, :10, :10] = 1.0
    res = run_attack(net, x, "saliency", num_iter=3, target_map=tmap, lr=0.01, eval_every=1)
    h0 = normalized_map(explanation(net, x.clone().requires_grad_(), "saliency", res.original_class, create_graph=False))
    assert float((res.x_adv - x).abs().max()) > 1e-3  # before: exactly 0, with a warning to raise attack.lr
    assert float((res.adv_expl - h0).abs().sum()) > 0.05  # the map moved (L1 of unit-sum maps)
    assert res.evaluations[-1]["expl_loss"] < res.evaluations[0]["expl_loss"]
    assert not [w for w in recwarn if "zero perturbation" in str(w.message)]


class ClampNet(nn.Module):
    """ReLU written as clamp(min=0): piecewise linear, and no activation the attack can smooth."""

    name = "clampnet"

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).clamp(min=0).mean((2, 3)))


def test_attack_on_an_unsmoothable_network_stops_with_one_line_naming_the_model():
    x = images(1)
    with pytest.raises(ParamError, match=r"^attack: the saliency map of model 'clampnet' does not change with the input .*0 activation modules swapped, no functional activation calls smoothed.*cannot move it$"):
        run_attack(ClampNet(), x, "saliency", num_iter=2, target_map=corner_map(1), lr=0.01)
    with pytest.raises(ParamError, match=r"^attack: the smoothgrad map of model 'clampnet'"):
        perform_attack(ClampNet(), x, "smoothgrad", num_iter=2, k=10, nt_samples=2)


def test_the_embedded_model_needs_no_functional_smoothing(model, samples):
    from deepsaliency.attack import attack_network

    with attack_network(model, 10.0, probe=samples["chelsea"]) as net:  # its ReLU6 are modules: no dispatch overhead
        assert net.softplus.count == 33 and net.functional is None


# ---------------------------------------------------------------- PGD


def test_pgd_stays_in_budget_is_seeded_and_flips_the_real_model(model, samples):
    x = samples["chelsea"]
    x_adv = pgd_attack(model, x, eps=4 / 255, step_size=1 / 255, steps=5, seed=0)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert float((x_adv - x).abs().max()) <= 4 / 255 + 1e-6
    assert torch.equal(x_adv, pgd_attack(model, x, eps=4 / 255, step_size=1 / 255, steps=5, seed=0))
    assert model.classify(x_adv).indices[0] != model.classify(x).indices[0]  # untargeted: the class moves
    with pytest.raises(ParamError, match=r"attack.eps: 0"):
        pgd_attack(model, x, eps=0, step_size=0.01, steps=1)
