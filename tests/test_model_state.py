"""Issue 12.8: no public function depends on, or changes, the state of the caller's model.

Each entry point runs twice: on a model in the default state (eval, frozen, no hooks) and on an
identical model left in training mode, with some parameters requiring grad and a forward hook that
triples a feature map. The results must be equal, and afterwards the second model must be exactly
as the caller left it: the same ``training`` flag per module, ``requires_grad`` per parameter, no
``.grad`` written, the same hooks (still working and removable) and identical buffers (batch norm in
training mode would update its running statistics).
"""

from collections.abc import Callable
from typing import cast

import numpy as np
import pytest
import torch
from helpers import tiny_model
from torch import nn

from deepsaliency import attribute, deletion, explain, explanation, generate_masks, insertion, library_state
from deepsaliency.attack import perform_attack, pgd_attack, run_attack, untargeted_attack
from deepsaliency.methods import METHODS
from deepsaliency.models import Model

SIZE = 24


def image() -> torch.Tensor:
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def disturb(model: Model) -> tuple[object, list]:
    """Leave ``model`` as a training script would: train mode, some weights trainable, a hook."""
    model.train()
    net = cast(nn.Sequential, model.net)
    net[0].weight.requires_grad_(True)
    net[-1].bias.requires_grad_(True)
    calls: list = []

    def triple(module, inputs, output):
        calls.append(1)
        return output * 3.0

    return net[0].register_forward_hook(triple), calls


def snapshot(model: nn.Module) -> dict:
    return {
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grad": [(n, p.grad is None) for n, p in model.named_parameters()],
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "hooks": [
            (n, list(m._forward_hooks.values()), list(m._forward_pre_hooks.values())) for n, m in model.named_modules()
        ],
        "modules": [(n, id(m)) for n, m in model.named_modules()],
    }


def same_snapshot(a: dict, b: dict) -> None:
    for key in ("training", "requires_grad", "grad", "hooks", "modules"):
        assert a[key] == b[key], key
    for key in ("buffers", "params"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key} {name} changed"


MASKS = generate_masks(N=16, s=4, p1=0.5, input_size=(SIZE, SIZE), seed=0)
SAL = np.linspace(0, 1, SIZE * SIZE).reshape(SIZE, SIZE)
TMAP = torch.full((1, SIZE, SIZE), 0.05).index_fill_(1, torch.arange(8), 1.0)
METHOD_PARAMS = {
    "rise": {"masks": MASKS},
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"nt_samples": 3},
    "gradient_shap": {"n_samples": 3},
    "occlusion": {"window": 8, "stride": 8},
    "gradcam": {"layer": "net.4"},
}


def attribute_entry(method: str) -> Callable[[Model, torch.Tensor], torch.Tensor]:
    return lambda model, x: attribute(model, x, method, target=1, **METHOD_PARAMS.get(method, {}))


ENTRY_POINTS: dict[str, Callable[[Model, torch.Tensor], torch.Tensor]] = {
    **{f"attribute[{m}]": attribute_entry(m) for m in METHODS},
    "explain[rise]": lambda model, x: explain(model, x, MASKS, target=1),
    "explanation[saliency]": lambda model, x: explanation(
        model, x.clone().requires_grad_(), "saliency", 1, create_graph=False
    ),
    "run_attack": lambda model, x: (
        run_attack(model, x, "saliency", num_iter=2, target_map=TMAP, lr=0.02, b=1.0, eval_every=1).x_adv
    ),
    "perform_attack[untargeted]": lambda model, x: perform_attack(
        model, x, "saliency", num_iter=2, k=50, lr=0.02, b=1.0, eval_every=1
    )[0],
    "untargeted_attack[center_of_mass]": lambda model, x: (
        untargeted_attack(
            model, x, "input_x_gradient", num_iter=2, kind="center_of_mass", lr=0.02, b=1.0, eval_every=1
        ).x_adv
    ),
    "pgd_attack": lambda model, x: pgd_attack(model, x, eps=0.05, step_size=0.02, steps=2),
    "deletion": lambda model, x: torch.as_tensor(deletion(model, x, SAL, step=64).probs),
    "insertion": lambda model, x: torch.as_tensor(insertion(model, x, SAL, step=64).probs),
    "Model.classify": lambda model, x: torch.as_tensor(model.classify(x).probabilities),
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_entry_point_neither_depends_on_nor_changes_the_model_state(name):
    fn, x = ENTRY_POINTS[name], image()
    expected = fn(tiny_model(SIZE), x)
    if "attack" in name:  # a real result to compare, not the clean image handed back
        assert float((expected - x).abs().max()) > 0.01

    model = tiny_model(SIZE)
    handle, calls = disturb(model)
    before = snapshot(model)
    got = fn(model, x)
    same_snapshot(before, snapshot(model))
    assert calls == []  # the caller's hook did not take part in the computation ...
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    model.net(torch.zeros(1, 3, SIZE, SIZE))
    assert calls == [1]  # ... and is still registered afterwards
    handle.remove()
    assert not model.net[0]._forward_hooks


def test_library_state_restores_even_on_error_and_nests():
    model = tiny_model(SIZE)
    disturb(model)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with library_state(model):
            assert not any(m.training for m in model.modules())
            assert not any(p.requires_grad for p in model.parameters())
            with library_state(model):  # nested: a no-op
                assert not model.net[0]._forward_hooks
            assert not model.training
            raise RuntimeError("boom")
    same_snapshot(before, snapshot(model))
    assert model.training and model.net[0].weight.requires_grad and model.net[0]._forward_hooks
