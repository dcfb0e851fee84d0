"""Network surgery for the attack (deepsaliency.nn): softplus swaps, functional smoothing, fast double backward."""

import math

import pytest
import torch
from helpers import TinyNet, images
from torch import nn

from deepsaliency.differentiable import differentiable_attribution, unit_sum_map
from deepsaliency.nn import (
    FastGradConv2d,
    FunctionalSoftplus,
    PointwiseConv2d,
    SoftplusHardsigmoid,
    SoftplusHardswish,
    SoftplusHardtanh,
    SoftplusLeakyReLU,
    SoftplusReLU,
    conv2d_first_order_backward,
    fast_double_backward,
    softplus_activations,
)


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
        # Issue 13: one batch-norm path (models.fold_batchnorm); the fast swap leaves batch norms alone.
        assert kinds.count(FastGradConv2d) == 2 and kinds.count(PointwiseConv2d) == 1 and len(kinds) == 3
        assert sum(isinstance(m, nn.BatchNorm2d) for m in tiny.modules()) == 2
        assert torch.allclose(tiny(x), ref, atol=1e-5)
    assert [id(m) for m in tiny.modules()] == before


def _second_order_gradient(model, x, target):
    xx = x.clone().requires_grad_()
    h = unit_sum_map(differentiable_attribution(model, xx, "saliency", target, create_graph=True))
    (g,) = torch.autograd.grad((h**2).sum(), xx)
    return g


@pytest.mark.slow
def test_fast_double_backward_equals_naive_on_the_real_model(model, samples):
    x = samples["coffee"]
    with softplus_activations(model, beta=10.0, fused=False):
        naive = _second_order_gradient(model, x, 967)
    with softplus_activations(model, beta=10.0), fast_double_backward(model) as swap:
        assert (
            sum(isinstance(m, FastGradConv2d) and m.conv.groups > 1 for m in swap.replacements) == 16
        )  # the depthwise convs
        fast = _second_order_gradient(model, x, 967)
    assert naive.abs().sum() > 0
    assert float((fast - naive).norm() / naive.norm()) < 1e-4


# ---------------------------------------------------------------- functional activations (issue 12.5)


def test_functional_activation_calls_are_smoothed_like_the_modules(one_thread):
    F = nn.functional
    z = torch.linspace(-8, 9, 61, dtype=torch.double)
    with FunctionalSoftplus(3.0) as mode:
        got = [
            F.relu(z),
            torch.relu(z),
            z.relu(),
            F.relu(z.clone(), inplace=True),
            z.clone().relu_(),
            F.relu6(z),
            F.leaky_relu(z, 0.2),
            F.hardtanh(z, -2.0, 3.0),
            F.hardsigmoid(z),
            F.hardswish(z),
        ]
        assert torch.equal(torch.maximum(z, torch.zeros(())), z.clamp_min(0))  # other calls pass through
    assert mode.calls == len(got)
    want = [SoftplusReLU(3.0)(z)] * 5 + [
        SoftplusHardtanh(3.0, 0.0, 6.0)(z),
        SoftplusLeakyReLU(3.0, 0.2)(z),
        SoftplusHardtanh(3.0, -2.0, 3.0)(z),
        SoftplusHardsigmoid(3.0)(z),
        SoftplusHardswish(3.0)(z),
    ]
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w)
    assert not torch.allclose(got[0], F.relu(z))  # outside the mode: the original function

    def f(x):
        with FunctionalSoftplus(2.0):
            return F.relu(x.clone(), inplace=True) + F.hardswish(x) + F.leaky_relu(x, 0.1)

    x = torch.randn(2, 5, dtype=torch.double).requires_grad_()
    assert torch.autograd.gradcheck(f, (x,)) and torch.autograd.gradgradcheck(f, (x,))


# ---------------------------------------------------------------- compiled activation kernels (issue 17)


def test_compiled_kernels_give_the_eager_values_and_exact_second_derivatives(one_thread):
    """Inside compiled_kernels() the activations run torch.compile'd kernels (really: the cache fills, no
    fallback warning): the same values as eager to float64 rounding, and gradcheck/gradgradcheck hold."""
    import warnings

    from deepsaliency.nn import compiled_kernels, smooth

    # ReLU blend, ReLU6 as two softplus terms (β·3 < 20), ReLU6 folded into one (β·3 ≥ 20)
    acts = (SoftplusReLU(2.0), SoftplusLeakyReLU(2.0, 0.2), SoftplusHardtanh(3.0), SoftplusHardtanh(10.0))
    x = (torch.randn(2, 3, 4, 4, dtype=torch.double) * 4).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager warns: that would fail here
        with compiled_kernels() as on:
            assert on
            got = [act(x) for act in acts]
            for act in acts:
                assert torch.autograd.gradcheck(act, (x,)) and torch.autograd.gradgradcheck(act, (x,))
    kernels = {smooth._softplus_terms, smooth._relu_kernel, smooth._clamp_kernel, smooth._double_backward_kernel}
    assert kernels <= set(smooth._compiled)
    for g, act in zip(got, acts, strict=True):
        torch.testing.assert_close(g, act(x), rtol=1e-12, atol=1e-12)  # act(x) here: eager, outside the block
        assert torch.allclose(g, act.reference(x))


def test_compiled_kernels_fall_back_to_eager_with_one_warning(monkeypatch):
    from deepsaliency.nn import compiled_kernels, smooth

    def unavailable(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(smooth, "_compiled", {})
    monkeypatch.setattr(smooth, "_failed", False)
    monkeypatch.setattr(torch, "compile", unavailable)
    x = torch.linspace(-8, 12, 101)
    act = SoftplusHardtanh(10.0)
    with compiled_kernels() as on, pytest.warns(UserWarning, match=r"torch.compile unavailable \(RuntimeError\)"):
        assert on
        y = act(x)
    assert torch.equal(y, act(x))
    with compiled_kernels() as on:
        assert not on  # the failure is remembered for the rest of the process
    monkeypatch.setattr(smooth, "_failed", False)
    monkeypatch.setenv("DEEPSALIENCY_COMPILE", "0")
    with compiled_kernels() as on:
        assert not on

    for value in ("off", "False", " no "):
        monkeypatch.setenv("DEEPSALIENCY_COMPILE", value)
        with compiled_kernels() as on:
            assert not on
    monkeypatch.setenv("DEEPSALIENCY_COMPILE", "ON")
    with compiled_kernels() as on:
        assert on


def test_a_bad_deepsaliency_compile_value_is_refused(monkeypatch):
    from deepsaliency.errors import ParamError
    from deepsaliency.nn import compiled_kernels

    monkeypatch.setenv("DEEPSALIENCY_COMPILE", "nope")
    with pytest.raises(ParamError, match=r"^DEEPSALIENCY_COMPILE: 'nope' is not allowed \(one of 1, true"):
        with compiled_kernels():
            pass


def test_compiled_kernels_are_per_thread_and_keep_infinities(one_thread):
    """The setting is a context variable (a thread started inside the block runs eagerly), and the compiled
    ReLU gives what the eager one gives at ±inf (0·inf in a blend with lin = 0 would be NaN)."""
    import threading

    from deepsaliency.nn import compiled_kernels, smooth

    seen = []
    with compiled_kernels() as on:
        worker = threading.Thread(target=lambda: seen.append(smooth._COMPILING.get()))
        worker.start()
        worker.join()
        assert on and smooth._COMPILING.get()
        x = torch.tensor([-math.inf, -3.0, 0.0, 2.0, math.inf])
        got = [act(x) for act in (SoftplusReLU(5.0), SoftplusLeakyReLU(5.0, 0.1))]
    assert seen == [False] and not smooth._COMPILING.get()
    for g, act in zip(got, (SoftplusReLU(5.0), SoftplusLeakyReLU(5.0, 0.1)), strict=True):
        assert torch.equal(g, act(x))  # eager, outside the block
    assert got[0].tolist()[0] == 0.0 and got[0].tolist()[-1] == math.inf and got[1].tolist()[0] == -math.inf
