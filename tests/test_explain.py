import pytest
import torch
from captum.attr import IntegratedGradients

from deepsaliency import METHODS, attribute, generate_masks, reduce_map
from deepsaliency.attribution import check_finite
from deepsaliency.errors import AttributionError, ParamError


@pytest.mark.slow
def test_integrated_gradients_completeness_on_the_real_model(model, samples):
    x = samples["chelsea"]
    target = 285  # Egyptian cat
    attr = attribute(model, x, "integrated_gradients", target=target, n_steps=64, internal_batch_size=16)
    _, delta = IntegratedGradients(model).attribute(
        x,
        baselines=torch.zeros_like(x),
        target=target,
        n_steps=64,
        internal_batch_size=16,
        return_convergence_delta=True,
    )
    with torch.no_grad():
        gap = float(model(x)[0, target] - model(torch.zeros_like(x))[0, target])
    total = float(attr.sum())
    assert abs(total - gap) <= abs(float(delta)) + 1e-3 * abs(gap)
    assert abs(total - gap) / abs(gap) < 0.05  # and the integral is actually close


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_finite_map_of_the_input_size(model, samples, method):
    x = samples["coffee"]
    params = {
        "rise": {"masks": generate_masks(N=16, s=8, p1=0.5, input_size=(224, 224), seed=0), "batch_size": 8},
        "integrated_gradients": {"n_steps": 4},
        "integrated_gradients_smoothed": {"n_steps": 4},  # its default 32 steps cost a minute, prove nothing more
        "smoothgrad": {"nt_samples": 2},
        "gradient_shap": {"n_samples": 2},
        "occlusion": {"window": 56, "stride": 56},
    }.get(method, {})
    attr = attribute(model, x, method, **params)
    channels = 1 if method in ("rise", "gradcam", "gradcam_plus_plus") else 3  # maps of one channel
    assert attr.shape == (1, channels, 224, 224)
    smap = reduce_map(attr[0], method)
    assert smap.shape == (224, 224) and torch.isfinite(smap).all() and (smap >= 0).all() and smap.max() > 0


def test_map_reduction_rule():
    attr = torch.tensor([[[1.0, -2.0]], [[-3.0, 0.5]], [[0.0, 1.0]]])  # (3, 1, 2)
    assert reduce_map(attr, "saliency").tolist() == [[4.0, 3.5]]
    cam = torch.tensor([[[-1.0, 2.0]]])
    assert reduce_map(cam, "gradcam").tolist() == [[0.0, 2.0]]


def test_default_target_is_the_prediction(model, samples):
    x = samples["coffee"]
    assert torch.equal(attribute(model, x, "saliency"), attribute(model, x, "saliency", target=967))


def test_unknown_method_and_parameter_are_named(model, samples):
    with pytest.raises(ParamError, match=r"^method: 'lime' is not a known method"):
        attribute(model, samples["coffee"], "lime")
    with pytest.raises(ParamError, match=r"integrated_gradients: .*'steps'"):
        attribute(model, samples["coffee"], "integrated_gradients", steps=3)


def test_nan_attributions_are_reported_with_method_and_image():
    bad = torch.ones(3, 4, 4)
    bad[0, 1, 1] = float("nan")
    bad[1, 2, 2] = float("inf")
    with pytest.raises(AttributionError, match=r"saliency: chelsea: attribution has 2 NaN/infinite values"):
        check_finite(bad, "saliency", "chelsea")


# --- issue 12: one shared check of `target`; Captum's own constraints before Captum runs -----------------

import numpy as np  # noqa: E402
from captum.attr import Occlusion  # noqa: E402

from deepsaliency._validate import check_target  # noqa: E402
from deepsaliency.attribution import check_gradcam_layer  # noqa: E402
from deepsaliency.methods import check_ig_steps, check_occlusion  # noqa: E402
from deepsaliency.rise import explain as rise_explain  # noqa: E402


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "occlusion", "gradcam"])
@pytest.mark.parametrize("bad", [-1, 1000])
def test_a_target_outside_the_classes_is_refused_not_wrapped_around(model, samples, method, bad):
    # Captum indexes logits[:, -1] = class 999 without complaint; the shared check names the range instead.
    params = {"integrated_gradients": {"n_steps": 2}, "occlusion": {"window": 112, "stride": 112}}.get(method, {})
    with pytest.raises(ParamError, match=rf"^target: {bad} is not allowed \(a class index in \[0, 999\]\)$"):
        attribute(model, samples["coffee"], method, target=bad, **params)


def test_rise_targets_outside_the_classes_are_named(model, samples):
    masks = generate_masks(N=4, s=8, p1=0.5, input_size=(224, 224), seed=0)
    for bad in (1000, -1, True):
        with pytest.raises(ParamError, match=r"^target: .* is not allowed \(a class index in \[0, 999\]"):
            rise_explain(model, samples["coffee"], masks, target=bad)
    with pytest.raises(ParamError, match=r"^target: "):
        attribute(model, samples["coffee"], "rise", target=1000, masks=masks)
    # None keeps its meaning there: every class.
    assert rise_explain(model, samples["coffee"], masks, batch_size=4).shape == (1000, 224, 224)


def test_three_targets_for_two_images_is_one_line(model, samples):
    xb = torch.cat([samples["chelsea"], samples["coffee"]])
    with pytest.raises(ParamError) as info:
        attribute(model, xb, "saliency", target=[285, 967, 1])
    assert str(info.value) == (
        "target: 3 values for 2 images is not allowed "
        "(a class index in [0, 999], one for all 2 images or exactly one per image)"
    )


def test_every_accepted_target_form_means_the_same_classes(model, samples):
    xb = torch.cat([samples["chelsea"], samples["coffee"]])
    per_image = attribute(model, xb, "saliency", target=[285, 967])
    alone = attribute(model, samples["coffee"], "saliency", target=967)  # batching changes the float sums a little
    assert float((per_image[1:] - alone).norm() / alone.norm()) < 1e-4
    assert torch.equal(attribute(model, xb, "saliency", target=np.array([285, 967])), per_image)


@pytest.mark.parametrize(
    "target, message",
    [
        (True, r"target: True is not allowed"),  # bool is not a class
        (np.bool_(True), r"target: (np\.)?True_? is not allowed"),
        (2.0, r"target: 2.0 is not allowed"),
        (torch.tensor([1.0, 2.0]), r"target: tensor\(\[1.0, 2.0\]\) is not allowed .*dtype torch.float32"),
        (torch.zeros(2, 2, dtype=torch.long), r"target: .* is not allowed .*2 dimensions"),
        ([], r"target: 0 values for 2 images is not allowed"),
        ("285", r"target: '285' is not allowed"),
        ([285, 1000], r"target: 1000 \(position 1\) is not allowed \(a class index in \[0, 999\]"),
    ],
)
def test_check_target_refuses_what_is_not_a_class(target, message):
    with pytest.raises(ParamError, match=message) as info:
        check_target(target, 2, 1000)
    assert "\n" not in str(info.value)


def test_check_target_returns_one_long_per_image():
    for same in (7, np.int32(7), torch.tensor(7), [7], (7,), torch.tensor([7]), np.array([7])):
        out = check_target(same, 3, 10)
        assert out.dtype == torch.long and out.shape == (3,) and out.tolist() == [7, 7, 7]
    assert check_target(torch.tensor([0, 9, 4]), 3, 10, name="explain.target").tolist() == [0, 9, 4]
    with pytest.raises(ParamError, match=r"^explain.target: 10 is not allowed \(a class index in \[0, 9\]"):
        check_target(10, 1, 10, name="explain.target")


@pytest.mark.parametrize(
    "layer, shape", [("net.classifier", (1, 1000)), ("net.global_pool", (1, 1280)), ("net", (1, 1000))]
)
def test_gradcam_on_a_layer_that_is_not_a_feature_map(model, samples, layer, shape):
    with pytest.raises(ParamError) as info:
        attribute(model, samples["chelsea"], "gradcam", target=285, layer=layer)
    assert str(info.value) == f"layer: {layer!r} outputs shape {shape}; Grad-CAM needs a feature map (B, C, h, w)"
    with pytest.raises(ParamError, match=rf"^gradcam.layer: {layer!r} outputs shape \(1, "):
        check_gradcam_layer(model, layer, "gradcam.layer")


def test_gradcam_feature_map_layers_still_work(model, samples):
    assert check_gradcam_layer(model, "auto") is model.get_submodule("net.bn2")
    # An explicit feature-map layer gives the same map as 'auto' when it is the same module.
    auto = attribute(model, samples["chelsea"], "gradcam", target=285)
    named = attribute(model, samples["chelsea"], "gradcam", target=285, layer="net.bn2")
    assert torch.equal(auto, named) and auto.shape == (1, 1, 224, 224) and auto.max() > 0
    with pytest.raises(ParamError, match=r"^layer: 'net.nope' is not a submodule"):
        attribute(model, samples["chelsea"], "gradcam", target=285, layer="net.nope")


class _Linear(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3))  # 3 "classes", one per channel; differentiable, cheap


def test_occlusion_check_accepts_exactly_what_captum_runs():
    # Every window/stride pair on an 8×8 input: the check must refuse a pair iff Captum's Occlusion
    # asserts on it (strides up to the input size; larger ones are refused outright).
    x = torch.rand(1, 3, 8, 8)
    for window in range(1, 10):
        for stride in range(1, 9):
            try:
                Occlusion(_Linear()).attribute(
                    x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), target=0
                )
                captum_ok = True
            except AssertionError:
                captum_ok = False
            try:
                check_occlusion(window, stride, (8, 8))
                ours_ok = True
            except ParamError:
                ours_ok = False
            assert ours_ok == captum_ok, (window, stride)
    with pytest.raises(ParamError, match=r"^stride: 32 is not allowed \(an integer in \[1, 8\], window 8; Captum's"):
        check_occlusion(8, 32, (224, 224))
    with pytest.raises(ParamError, match=r"^window: 9 is not allowed \(an integer in \[1, 8\], the input size\)"):
        check_occlusion(9, 1, (8, 8))


def test_occlusion_stride_larger_than_window_on_the_real_model(model, samples):
    with pytest.raises(ParamError, match=r"^stride: 32 is not allowed"):
        attribute(model, samples["chelsea"], "occlusion", target=285, window=8, stride=32)


def test_integration_steps_check_accepts_exactly_what_captum_runs():
    x = torch.rand(1, 3, 4, 4)
    for integration in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        for n_steps in (1, 2):
            try:
                IntegratedGradients(_Linear()).attribute(x, target=0, n_steps=n_steps, method=integration)
                captum_ok = True
            except AssertionError:
                captum_ok = False
            try:
                check_ig_steps(n_steps, integration)
                ours_ok = True
            except ParamError:
                ours_ok = False
            assert ours_ok == captum_ok, (integration, n_steps)


def test_the_registry_and_the_implementations_name_the_same_methods():
    """One registry (deepsaliency.methods) says which methods exist; attribution maps each name to its call."""
    from deepsaliency import attribution, methods

    assert list(attribution._DISPATCH) == list(methods.METHODS)
    # issue 16 added Grad-CAM and the β-smoothed defences to the attacked methods
    plain = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise", "gradcam"}
    smoothed = {"saliency_smoothed", "input_x_gradient_smoothed", "integrated_gradients_smoothed"}
    assert set(methods.ATTACK_METHODS) == plain | smoothed
    with pytest.raises(ParamError, match=r"^method: 'lime' is not a known method \(allowed: rise, "):
        attribution.reduce_map(torch.zeros(3, 4, 4), "lime")
