"""The explanation attack (deepsaliency.attack) and PGD; the network surgery is in tests/test_nn.py."""

import math

import pytest
import torch
from helpers import TinyNet, corner_map, images, pearson
from torch import nn

from deepsaliency.attack import beta_schedule, perform_attack, pgd_attack, run_attack
from deepsaliency.differentiable import differentiable_attribution, unit_sum_map
from deepsaliency.errors import ParamError


@pytest.fixture()
def tiny():
    return TinyNet()


# ---------------------------------------------------------------- the attack


def test_attack_lowers_the_loss_and_moves_the_map_toward_the_target(tiny):
    x, tmap = images(), corner_map(2)
    res = run_attack(tiny, x, "saliency", num_iter=25, target_map=tmap, lr=0.02, lr_end=None, eval_every=5)
    h0 = unit_sum_map(
        differentiable_attribution(tiny, x.clone().requires_grad_(), "saliency", res.original_class, create_graph=False)
    )
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
    h_adv = unit_sum_map(
        differentiable_attribution(
            tiny, res.x_adv.clone().requires_grad_(), "saliency", res.original_class, create_graph=False
        )
    )
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
    x_adv, adv = perform_attack(
        tiny, x, "saliency", num_iter=3, target=x.flip(0), lr=0.01, history=history, eval_every=3
    )
    assert x_adv.shape == x.shape and adv.shape == (2, 24, 24)
    assert torch.allclose(adv.sum((1, 2)), torch.ones(2))
    assert [set(r) for r in history[:1]] == [{"step", "image", "expl_loss", "output_loss", "beta"}] and len(
        history
    ) == 6


def test_a_null_attack_warns(tiny):
    with pytest.warns(RuntimeWarning, match="zero perturbation"):
        perform_attack(tiny, images(1), "saliency", num_iter=2, target_map=corner_map(1), a=0.0, b=0.0)


def test_bad_attack_parameters_are_named(tiny):
    x = images(1)
    with pytest.raises(ParamError, match=r"^lr: 2.0 is not allowed"):
        perform_attack(tiny, x, "saliency", num_iter=1, target_map=corner_map(1), lr=2.0)
    with pytest.raises(ParamError, match=r"^eps: -0.1"):
        perform_attack(tiny, x, "saliency", num_iter=1, target_map=corner_map(1), eps=-0.1)
    with pytest.raises(ParamError, match=r"^num_iter: 0"):
        perform_attack(tiny, x, "saliency", num_iter=0, target_map=corner_map(1))
    with pytest.raises(
        ParamError, match=r"exactly one of target"
    ):  # perform_attack without one: untargeted (issue 12.9)
        run_attack(tiny, x, "saliency", num_iter=1)
    with pytest.raises(ParamError, match=r"^exp_method: 'occlusion' cannot be attacked"):  # gradcam can (issue 16)
        perform_attack(tiny, x, "occlusion", num_iter=1, target_map=corner_map(1))


def test_beta_schedule_is_geometric():
    betas = [beta_schedule(i, 5, 10.0, 1000.0) for i in range(5)]
    assert betas[0] == pytest.approx(10.0) and betas[-1] == pytest.approx(1000.0)
    assert betas[2] == pytest.approx(100.0)


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
    h0 = unit_sum_map(
        differentiable_attribution(net, x.clone().requires_grad_(), "saliency", res.original_class, create_graph=False)
    )
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
    with pytest.raises(
        ParamError,
        match=r"^attack: the saliency map of model 'clampnet' does not change with the input "
        r".*0 activation modules swapped, no functional activation calls smoothed.*cannot move it$",
    ):
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
    with pytest.raises(ParamError, match=r"^eps: 0"):
        pgd_attack(model, x, eps=0, step_size=0.01, steps=1)
