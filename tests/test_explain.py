import pytest
import torch
from captum.attr import IntegratedGradients

from deepsaliency import METHODS, attribute, generate_masks, reduce_map
from deepsaliency.errors import AttributionError, ParamError
from deepsaliency.explain import check_finite


def test_integrated_gradients_completeness_on_the_real_model(model, samples):
    x = samples["chelsea"]
    target = 285  # Egyptian cat
    attr = attribute(model, x, "integrated_gradients", target=target, n_steps=64, internal_batch_size=16)
    _, delta = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=64, internal_batch_size=16, return_convergence_delta=True
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
        "smoothgrad": {"nt_samples": 2},
        "gradient_shap": {"n_samples": 2},
        "occlusion": {"window": 56, "stride": 56},
    }.get(method, {})
    attr = attribute(model, x, method, **params)
    channels = 1 if method in ("rise", "gradcam") else 3
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
    with pytest.raises(ParamError, match=r"explain.methods: 'lime' is not a known method"):
        attribute(model, samples["coffee"], "lime")
    with pytest.raises(ParamError, match=r"integrated_gradients: .*'steps'"):
        attribute(model, samples["coffee"], "integrated_gradients", steps=3)


def test_nan_attributions_are_reported_with_method_and_image():
    bad = torch.ones(3, 4, 4)
    bad[0, 1, 1] = float("nan")
    bad[1, 2, 2] = float("inf")
    with pytest.raises(AttributionError, match=r"saliency: chelsea: attribution has 2 NaN/infinite values"):
        check_finite(bad, "saliency", "chelsea")
