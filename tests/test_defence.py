"""Issue 16: β-smoothed explanations (Dombrowski et al. 2019, section 5) as methods of their own."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from deepsaliency import attribute, reduce_map
from deepsaliency.defence import DEFENCE_METHODS, DEFENCES, saliency_smoothed, smoothed_network
from deepsaliency.errors import ParamError
from deepsaliency.params import validate

ROOT = Path(__file__).resolve().parents[1]

#: smoothed method → its parameters in these tests (IG on few path points: the property does not need more).
PARAMS = {
    "saliency_smoothed": {},
    "input_x_gradient_smoothed": {},
    "integrated_gradients_smoothed": {"n_steps": 8},
}


def max_relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |a| of two maps."""
    return float((a - b).abs().max() / a.abs().max())


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.fixture(scope="module")
def plain_and_smoothed(model, samples):
    """method → (plain map, {β: smoothed map}) on chelsea, the prediction's class."""
    x = samples["chelsea"]
    out = {}
    for method, params in PARAMS.items():
        base = DEFENCES[method]
        plain = reduce_map(attribute(model, x, base, **params)[0], base)
        smoothed = {
            beta: reduce_map(attribute(model, x, method, beta=beta, **params)[0], method) for beta in (10, 100, 1000)
        }
        out[method] = plain, smoothed
    return out


@pytest.mark.parametrize("method", DEFENCE_METHODS)
def test_smoothed_maps_converge_to_the_original_as_beta_grows(plain_and_smoothed, method):
    plain, smoothed = plain_and_smoothed[method]
    diffs = [max_relative_difference(plain, smoothed[beta]) for beta in (10, 100, 1000)]
    # Measured on chelsea: saliency 0.93 / 0.30 / 0.058, input×gradient 0.92 / 0.30 / 0.034,
    # IG (8 steps) 0.79 / 0.37 / 0.091.
    assert diffs[0] > diffs[1] > diffs[2], diffs
    assert diffs[2] < 0.15, diffs


@pytest.mark.parametrize("method", DEFENCE_METHODS)
def test_the_smoothed_map_at_beta_10_is_a_different_explanation_of_the_same_image(plain_and_smoothed, method):
    plain, smoothed = plain_and_smoothed[method]
    # Measured: max relative difference 0.79–0.93 and Pearson r 0.75–0.80 with the plain map at β = 10.
    assert max_relative_difference(plain, smoothed[10]) > 0.5
    assert 0.5 < pearson(plain, smoothed[10]) < 0.9
    assert pearson(plain, smoothed[1000]) > 0.99


class _ReferenceSoftReLU6(nn.Module):
    """softplus_β(z) − softplus_β(z − 6) from torch's own softplus: the smoothed ReLU6 written independently."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.softplus(z, beta=self.beta) - F.softplus(z - 6, beta=self.beta)


def test_smoothed_saliency_is_the_gradient_of_the_explicitly_smoothed_network(model, samples):
    beta, target = 10.0, 285  # Egyptian cat
    x = samples["chelsea"]
    reference = copy.deepcopy(model).eval()
    relu6 = [
        (parent, name)
        for parent in reference.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.ReLU6)
    ]
    assert len(relu6) > 10  # EfficientNet-Lite0's activations are all ReLU6
    for parent, name in relu6:
        setattr(parent, name, _ReferenceSoftReLU6(beta))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(reference(xr)[0, target], xr)
    got = attribute(model, x, "saliency_smoothed", target=target, beta=beta, abs=False)
    torch.testing.assert_close(got, grad, rtol=1e-3, atol=1e-3 * float(grad.abs().max()))
    plain = attribute(model, x, "saliency", target=target, abs=False)
    assert float((plain - grad).abs().max()) > 0.5 * float(grad.abs().max())  # not the plain gradient


def test_the_model_is_bit_identical_after_each_call_and_after_an_exception(model, samples):
    x = samples["rocket"]
    modules = [(n, id(m)) for n, m in model.named_modules()]
    with torch.no_grad():
        before = model(x)
    for method, params in PARAMS.items():
        attribute(model, x, method, beta=10.0, **params)
        assert [(n, id(m)) for n, m in model.named_modules()] == modules, method
        with torch.no_grad():
            assert torch.equal(model(x), before), method
    with pytest.raises(RuntimeError, match="boom"):
        with smoothed_network(model, 10.0), torch.no_grad():
            inside = model(x)
            raise RuntimeError("boom")
    assert float((inside - before).abs().max()) > 0.1  # the block really ran the smoothed network
    assert [(n, id(m)) for n, m in model.named_modules()] == modules
    with torch.no_grad():
        assert torch.equal(model(x), before)


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf"), True, "10"])
def test_a_bad_beta_is_one_line_naming_the_argument(model, samples, beta):
    for method in DEFENCE_METHODS:
        with pytest.raises(ParamError, match=r"^beta: .* is not allowed \(a finite number > 0") as err:
            attribute(model, samples["coffee"], method, beta=beta)
        assert "\n" not in str(err.value)


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_runs_the_three_methods_and_a_bad_key_is_named():
    params = validate(_params())
    assert set(DEFENCE_METHODS) <= set(params["explain"]["methods"])
    assert params["integrated_gradients_smoothed"]["n_steps"] == params["integrated_gradients"]["n_steps"]
    bad = _params()
    bad["saliency_smoothed"]["beta"] = 0
    with pytest.raises(ParamError, match=r"^saliency_smoothed\.beta: 0 is not allowed \(expected a number > 0"):
        validate(bad)
    bad = _params()
    bad["integrated_gradients_smoothed"].update(n_steps=1, integration="riemann_left")
    with pytest.raises(ParamError, match=r"^integrated_gradients_smoothed\.n_steps: 1 is not allowed"):
        validate(bad)


def test_a_network_without_a_relu_family_activation_is_refused():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    with pytest.raises(ParamError, match=r"^model: 'Sequential' is not allowed \(the β-smoothing defence needs a ReLU"):
        saliency_smoothed(net, x, torch.tensor([0]))


class _FunctionalNet(nn.Module):
    """Calls F.relu inside forward (as torchvision's GoogLeNet does): no activation module to swap."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def test_functional_relu_calls_are_smoothed_too():
    net = _FunctionalNet().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    target = torch.tensor([0, 2])
    smooth = saliency_smoothed(net, x, target, beta=1.0, abs=False)
    # By hand: the derivative of softplus_β is sigmoid(β z).
    xr = x.detach().clone().requires_grad_(True)
    out = net.fc((F.softplus(net.conv(xr), beta=1.0)).mean((2, 3)))
    (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xr)
    torch.testing.assert_close(smooth, grad, rtol=1e-4, atol=1e-6)
    (plain,) = torch.autograd.grad(net(xr).gather(1, target[:, None]).sum(), xr)
    assert float((plain - grad).abs().max()) > 0.1 * float(grad.abs().max())
