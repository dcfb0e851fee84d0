"""Differentiable explanations (deepsaliency.differentiable) equal Captum's (and RISE's) values on the real model."""

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency

from deepsaliency import generate_masks
from deepsaliency.differentiable import differentiable_attribution, smoothgrad_noise, unit_sum_map
from deepsaliency.errors import ParamError
from deepsaliency.rise import explain as rise_explain

TARGET = 285  # chelsea → Egyptian cat


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm())


def first_order(model, x: torch.Tensor, method: str, **params) -> torch.Tensor:
    """The method's attribution of class TARGET on a fresh leaf copy of ``x`` (create_graph False)."""
    return differentiable_attribution(model, x.clone().requires_grad_(), method, TARGET, create_graph=False, **params)


@pytest.fixture(scope="module")
def x(samples):
    return samples["chelsea"].clone()


def test_saliency_matches_captum(model, x):
    ours = differentiable_attribution(model, x.clone().requires_grad_(), "saliency", TARGET, create_graph=True)
    ref = Saliency(model).attribute(x.clone().requires_grad_(), target=TARGET, abs=True)
    assert ours.requires_grad  # differentiable
    assert rel_err(ours.detach(), ref) < 1e-4


def test_input_x_gradient_matches_captum(model, x):
    ours = differentiable_attribution(model, x.clone().requires_grad_(), "input_x_gradient", TARGET, create_graph=False)
    ref = InputXGradient(model).attribute(x.clone().requires_grad_(), target=TARGET)
    assert rel_err(ours, ref) < 1e-4


@pytest.mark.parametrize("integration", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_matches_captum(model, x, integration):
    ours = first_order(model, x, "integrated_gradients", n_steps=5, integration=integration)
    ref = IntegratedGradients(model).attribute(
        x.clone().requires_grad_(),
        baselines=torch.zeros_like(x),
        target=TARGET,
        n_steps=5,
        method=integration,
        internal_batch_size=16,
    )
    assert rel_err(ours, ref) < 1e-4


def test_smoothgrad_matches_captum_with_the_same_noise(model, x):
    # Captum draws from the global generator; ours from a generator seeded alike: the draws are equal.
    torch.manual_seed(3)
    captum_noise = torch.normal(0, torch.full((2 * 2, 3, 4, 4), 0.2))
    assert torch.equal(
        smoothgrad_noise(torch.Size((2, 3, 4, 4)), 2, 0.2, 3, 2, "cpu").view(2, 2, 3, 4, 4).flatten(0, 1), captum_noise
    )

    def ours_smoothgrad() -> torch.Tensor:  # seed 7: the same fixed noise at every call
        return first_order(model, x, "smoothgrad", nt_samples=3, stdevs=0.1, seed=7, nt_samples_batch_size=2)

    ours = ours_smoothgrad()
    torch.manual_seed(7)
    ref = NoiseTunnel(Saliency(model)).attribute(
        x.clone().requires_grad_(),
        nt_type="smoothgrad",
        nt_samples=3,
        stdevs=0.1,
        target=TARGET,
        nt_samples_batch_size=2,
        abs=True,
    )
    assert rel_err(ours, ref) < 1e-4
    again = ours_smoothgrad()
    assert torch.equal(ours, again)  # fixed noise: deterministic


def test_rise_matches_rise_explain_and_is_differentiable(model, x):
    masks = generate_masks(N=12, s=7, p1=0.5, input_size=(224, 224), seed=1)
    xr = x.clone().requires_grad_()
    ours = differentiable_attribution(model, xr, "rise", TARGET, create_graph=True, masks=masks, batch_size=6)
    ref = rise_explain(model, x, masks, batch_size=6, target=TARGET)
    assert ours.shape == (1, 1, 224, 224)
    assert rel_err(ours.detach()[0, 0], ref) < 1e-4
    (g,) = torch.autograd.grad(ours.sum(), xr)
    assert g.abs().sum() > 0
    # A subset of k masks equals RISE on those masks (sorted, fixed by mask_seed).
    sub = differentiable_attribution(
        model, x, "rise", TARGET, create_graph=False, masks=masks, rise_masks=4, mask_seed=0
    )
    assert sub.shape == (1, 1, 224, 224) and rel_err(sub, ours.detach()) > 1e-3


def test_batch_with_per_image_targets_equals_single_images(model, samples):
    xb = torch.cat([samples["chelsea"], samples["coffee"]])
    both = differentiable_attribution(
        model, xb.clone().requires_grad_(), "integrated_gradients", [285, 967], create_graph=False, n_steps=3
    )
    one = differentiable_attribution(
        model, samples["coffee"].clone().requires_grad_(), "integrated_gradients", 967, create_graph=False, n_steps=3
    )
    assert rel_err(both[1:], one) < 1e-4


def test_saliency_second_derivative_exists(model, x):
    # With ReLU6 the Hessian-vector product is mostly zero but the graph must exist and be finite.
    xr = x.clone().requires_grad_()
    h = unit_sum_map(differentiable_attribution(model, xr, "saliency", TARGET, create_graph=True))
    assert torch.allclose(h.sum((1, 2)), torch.ones(1))
    (g,) = torch.autograd.grad((h**2).sum(), xr)
    assert torch.isfinite(g).all()


def test_bad_method_and_parameter_are_named(model, x):
    with pytest.raises(ParamError, match="'occlusion' cannot be attacked"):
        differentiable_attribution(model, x, "occlusion", TARGET)
    with pytest.raises(ParamError, match=r"^n_steps: 0 is not allowed \(an integer ≥ 1\)$"):
        differentiable_attribution(model, x, "integrated_gradients", TARGET, n_steps=0)
    with pytest.raises(ParamError, match="saliency: .*'n_steps'"):
        differentiable_attribution(model, x, "saliency", TARGET, n_steps=3)


def test_integrated_gradients_random_path_points_estimate_the_integral(model, x):
    def ig(**kw):
        return differentiable_attribution(
            model, x.clone().requires_grad_(), "integrated_gradients", TARGET, create_graph=False, n_steps=8, **kw
        ).detach()

    quad = ig()
    draws = [ig(alpha_seed=s) for s in range(4)]
    assert torch.equal(draws[1], ig(alpha_seed=1)) and not torch.equal(draws[0], draws[1])
    with torch.no_grad():
        gap = float(model(x)[0, TARGET] - model(torch.zeros_like(x))[0, TARGET])
    # Unbiased: the draws' mean total is near f(x) − f(0) (completeness); each map resembles the quadrature's.
    mean_total = sum(float(d.sum()) for d in draws) / len(draws)
    assert abs(mean_total - gap) / abs(gap) < 0.25
    for d in draws:
        assert float(torch.corrcoef(torch.stack([d.abs().sum(1).flatten(), quad.abs().sum(1).flatten()]))[0, 1]) > 0.6


# --- issue 12: the attack's class targets pass the same check as attribute's ---------------------------


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_targets_outside_the_classes_are_refused(model, x, method):
    # Before: a torch 'index -1 is out of bounds' RuntimeError from gather, naming no argument.
    for bad in (-1, 1000):
        params = {"n_steps": 2} if method == "integrated_gradients" else {}
        with pytest.raises(ParamError, match=rf"^target: {bad} is not allowed \(a class index in \[0, 999\]\)$"):
            differentiable_attribution(model, x.clone().requires_grad_(), method, bad, create_graph=False, **params)


def test_three_targets_for_two_images_is_one_line(model, samples):
    xb = torch.cat([samples["chelsea"], samples["coffee"]]).requires_grad_()
    with pytest.raises(ParamError) as info:
        differentiable_attribution(model, xb, "saliency", [285, 967, 1], create_graph=False)
    assert str(info.value) == (
        "target: 3 values for 2 images is not allowed "
        "(a class index in [0, 999], one for all 2 images or exactly one per image)"
    )


def test_a_model_without_labels_is_probed_for_its_class_count():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    xs = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert differentiable_attribution(net, xs, "saliency", [0, 4], create_graph=False).shape == (2, 3, 4, 4)
    with pytest.raises(ParamError, match=r"^target: 5 \(position 1\) is not allowed \(a class index in \[0, 4\]"):
        differentiable_attribution(net, xs, "saliency", torch.tensor([0, 5]), create_graph=False)


def test_riemann_quadrature_with_one_step_and_empty_noise_batches_are_named(model, x):
    message = r"^n_steps: 1 is not allowed \(an integer ≥ 2, integration riemann_left\)"
    with pytest.raises(ParamError, match=message):
        differentiable_attribution(
            model, x, "integrated_gradients", TARGET, create_graph=False, n_steps=1, integration="riemann_left"
        )
    with pytest.raises(ParamError, match=r"^nt_samples_batch_size: 0 is not allowed \(an integer ≥ 1\)"):
        differentiable_attribution(
            model, x, "smoothgrad", TARGET, create_graph=False, nt_samples=2, nt_samples_batch_size=0
        )


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("integrated_gradients", dict(n_steps=0), r"n_steps: 0 is not allowed \(an integer ≥ 1\)"),
        ("integrated_gradients", dict(integration="simpson"), r"integration: 'simpson' is not allowed \(one of "),
        ("smoothgrad", dict(nt_samples=0), r"nt_samples: 0 is not allowed \(an integer ≥ 1\)"),
        ("smoothgrad", dict(stdevs=-0.1), r"stdevs: -0.1 is not allowed \(a finite number ≥ 0, pixel units\)"),
        ("rise", dict(batch_size=0), r"batch_size: 0 is not allowed \(an integer ≥ 1\)"),
        ("rise", dict(rise_masks=0), r"rise_masks: 0 is not allowed \(an integer ≥ 1\)"),
    ],
)
def test_a_bad_argument_is_named_as_the_function_takes_it(method, params, message):
    # Issue 13: a library function names its own argument, not a params.yaml key the caller never wrote
    # (before: "integrated_gradients.n_steps", "smoothgrad.stdevs", "rise.batch_size", ...).
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    if method == "rise":
        params["masks"] = generate_masks(N=4, s=2, p1=0.5, input_size=(4, 4), seed=0)
    with pytest.raises(ParamError, match="^" + message) as info:
        differentiable_attribution(net, torch.rand(1, 3, 4, 4), method, 0, create_graph=False, **params)
    assert "\n" not in str(info.value)


def test_the_old_public_names_are_aliases_of_the_new_ones():
    import deepsaliency
    from deepsaliency.metrics.similarity import normalize_map

    assert deepsaliency.explanation is deepsaliency.differentiable_attribution is differentiable_attribution
    assert deepsaliency.normalized_map is deepsaliency.unit_sum_map is unit_sum_map
    attr = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(0)) - 0.5
    h = unit_sum_map(attr)  # sums to 1 per image; the metrics' normalize_map divides by the maximum instead
    torch.testing.assert_close(h.sum((1, 2)), torch.ones(2))
    torch.testing.assert_close(h, attr.abs().sum(1) / attr.abs().sum((1, 2, 3)).view(2, 1, 1))
    assert float(normalize_map(h[0].numpy()).max()) == 1.0 and float(h[0].max()) < 1.0


# --- issue 16: Grad-CAM and the β-smoothed defence join the attacked methods ----------------------------


def test_gradcam_matches_captum_and_moves_with_the_input(model, x):
    from captum.attr import LayerAttribution, LayerGradCam

    xr = x.clone().requires_grad_()
    ours = differentiable_attribution(model, xr, "gradcam", TARGET, create_graph=True)
    cam = LayerGradCam(model, model.get_submodule("net.bn2")).attribute(x.clone().requires_grad_(), target=TARGET)
    ref = LayerAttribution.interpolate(cam, (224, 224), interpolate_mode="bilinear").clamp_min(0)  # relu_sum
    assert ours.shape == (1, 1, 224, 224) and float(ref.max()) > 0
    assert rel_err(ours.detach(), ref) < 1e-4
    # The unit-sum map has an input gradient (what the attack descends), finite and not zero.
    (g,) = torch.autograd.grad((unit_sum_map(ours) ** 2).sum(), xr)
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
    other = differentiable_attribution(model, x, "gradcam", TARGET, create_graph=False, layer="net.blocks.5")
    assert other.shape == (1, 1, 224, 224) and rel_err(other.detach(), ref) > 0.1  # the layer param is used


@pytest.mark.parametrize("method", ["saliency_smoothed", "input_x_gradient_smoothed", "integrated_gradients_smoothed"])
def test_smoothed_methods_match_captum_on_the_softplus_network(model, x, method):
    from deepsaliency.attribution import attribute

    params = {"n_steps": 3} if method.startswith("integrated") else {}
    xr = x.clone().requires_grad_()
    ours = differentiable_attribution(model, xr, method, TARGET, create_graph=True, beta=5.0, **params)
    ref = attribute(model, x, method, TARGET, beta=5.0, **params)  # deepsaliency.defence: Captum on the β-network
    plain = differentiable_attribution(model, x.clone(), method.removesuffix("_smoothed"), TARGET, **params)
    assert rel_err(ours.detach(), ref) < 1e-4
    assert rel_err(plain.detach(), ref) > 0.05  # β = 5 is a different network, not the plain map
    (g,) = torch.autograd.grad((unit_sum_map(ours) ** 2).sum(), xr)  # differentiable, with curvature
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
    assert all(type(m).__name__ != "SoftplusReLU" for m in model.modules())  # the network is restored
