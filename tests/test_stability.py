"""Max-sensitivity and infidelity (deepsaliency.metrics.stability) against hand computations and on the real model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from deepsaliency import Model
from deepsaliency.errors import ParamError
from deepsaliency.metrics import stability
from deepsaliency.rise import generate_masks

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SIZE = (6, 6)


def _linear_model() -> Model:
    torch.manual_seed(3)
    return Model(
        nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE[0] * SIZE[1], 4)), input_size=SIZE, name="linear"
    ).eval()


class _Constant(nn.Module):
    """Logits that do not depend on the input at all."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.3, 1.2, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1) + 0 * x.sum((1, 2, 3))[:, None]


def _image() -> torch.Tensor:
    return torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))


def _noise(n: int, radius: float, seed: int) -> torch.Tensor:
    """The perturbations the module draws: n copies of the image, in one batch (batch_size ≥ n)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, *SIZE, generator=g) * 2 - 1) * radius


def _logit_weights(model: Model, target: int) -> torch.Tensor:
    """∂ logit_target / ∂ pixel of the linear model, (3, H, W): w / std per channel (normalisation inside)."""
    w = model.net[1].weight[target].detach().view(3, *SIZE)
    return w / model.std.view(3, 1, 1)


def test_infidelity_of_the_exact_gradient_of_a_linear_model_is_zero_and_matches_a_hand_computation():
    model, x, target, radius, n = _linear_model(), _image(), 2, 0.05, 16
    scores = stability.stability_scores(
        model, x, "saliency", target, {"abs": False}, radius=radius, n_perturb_samples=n, seed=4, batch_size=n
    )
    # f(x) − f(x − I) = ∇f · I exactly: the signed gradient explains every perturbation
    assert scores["infidelity"] == pytest.approx(0.0, abs=1e-9)
    ixg = stability.stability_scores(
        model, x, "input_x_gradient", target, {}, radius=radius, n_perturb_samples=n, seed=4, batch_size=n
    )
    grad = _logit_weights(model, target).double()
    noise = _noise(n, radius, 4).double()
    a_dot_i = (x[0].double() * grad * noise).sum((1, 2, 3))  # Φ(x) · I with Φ = x ⊙ ∇f
    delta_f = (grad * noise).sum((1, 2, 3))
    beta = (a_dot_i * delta_f).sum() / (a_dot_i**2).sum()
    expected = float(((beta * a_dot_i - delta_f) ** 2).mean())
    assert expected > 1e-6  # input × gradient is not exact here: the hand value is a real one
    assert ixg["infidelity"] == pytest.approx(expected, rel=1e-3)


def test_sensitivity_max_of_input_x_gradient_on_a_linear_model_matches_a_hand_computation():
    model, x, target, radius, n = _linear_model(), _image(), 1, 0.03, 12
    got = stability.stability_scores(
        model, x, "input_x_gradient", target, {}, radius=radius, n_perturb_samples=n, seed=7, batch_size=n
    )["sensitivity_max"]
    grad = _logit_weights(model, target).double()
    noise = _noise(n, radius, 7).double()
    # Φ(x + δ) − Φ(x) = δ ⊙ ∇f; Captum divides by ‖Φ(x)‖_F and keeps the largest
    expected = float(((noise * grad).flatten(1).norm(dim=1) / (x[0].double() * grad).norm()).max())
    assert got == pytest.approx(expected, rel=1e-4)
    assert got > 0


def test_sensitivity_max_is_zero_on_a_model_that_is_constant_in_the_input():
    model = Model(_Constant(), input_size=SIZE, name="constant").eval()
    masks = generate_masks(N=8, s=2, p1=0.5, input_size=SIZE, seed=0)
    scores = stability.stability_scores(
        model, _image(), "rise", 1, {"masks": masks, "batch_size": 4}, radius=0.2, n_perturb_samples=5
    )
    rise_map = stability._explanation_func(model, "rise", {"masks": masks, "batch_size": 4})(
        _image(), torch.tensor([1])
    )[0]
    assert rise_map.abs().sum() > 0  # the map itself is not zero: only its change is
    assert scores["sensitivity_max"] == 0.0


def test_bad_arguments_name_themselves():
    model, x = _linear_model(), _image()
    with pytest.raises(ParamError, match=r"^radius: 1.5 is not allowed \(a number in \(0, 1\]"):
        stability.stability_scores(model, x, "saliency", 0, radius=1.5)
    with pytest.raises(ParamError, match=r"^n_perturb_samples: 0 is not allowed"):
        stability.stability_scores(model, x, "saliency", 0, n_perturb_samples=0)
    with pytest.raises(ParamError, match=r"^method: 'lime' is not allowed"):
        stability.stability_scores(model, x, "lime", 0)
    with pytest.raises(ParamError, match=r"^x: shape \(2, 3, 6, 6\) is not allowed"):
        stability.stability_scores(model, torch.cat([x, x]), "saliency", 0)


@pytest.mark.slow
def test_seeded_reruns_on_the_real_model_are_identical_and_leave_the_global_generator_alone(model, samples):
    x = torch.cat([samples["chelsea"], samples["coffee"]])
    with torch.no_grad():
        targets = model(x).argmax(-1).tolist()
    methods = {"saliency": {"abs": True}, "gradient_shap": {"n_samples": 2, "stdevs": 0.1, "seed": 0}}
    state = torch.random.get_rng_state()
    first = stability.stability_table(model, x, methods, targets, ["chelsea", "coffee"], n_perturb_samples=3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)  # a different global state must not matter
    again = stability.stability_table(model, x, methods, targets, ["chelsea", "coffee"], n_perturb_samples=3, seed=1)
    assert first.equals(again)
    other = stability.stability_table(model, x, methods, targets, ["chelsea", "coffee"], n_perturb_samples=3, seed=2)
    assert not np.allclose(first.sensitivity_max, other.sensitivity_max)  # the seed does choose the perturbations
    assert list(first.columns) == ["image", "method", "sensitivity_max", "infidelity"] and len(first) == 4
    assert (first.sensitivity_max > 0).all() and (first.infidelity > 0).all()


# --- the stability stage (stages/stability.py) in a copy of the project ---

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path, prepared: Path, section: dict) -> Path:
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    (tmp_path / "data").mkdir()
    shutil.copytree(prepared, tmp_path / "data" / "prepared")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["stability"] = section
    params["metrics"]["bootstrap"]["n_resamples"] = 200
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


@pytest.mark.slow
def test_stability_stage_end_to_end_and_seeded(tmp_path, prepared, stage_in_process):
    section = {"methods": ["saliency", "gradcam"], "radius": 0.02, "n_perturb_samples": 2, "seed": 0, "batch_size": 2}
    project = _project(tmp_path, prepared, section)
    proc = stage_in_process(project, "stages/stability.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_image = pd.read_csv(project / "reports/stability/per_image.csv")
    stems = pd.read_csv(prepared / "manifest.csv").stem.tolist()
    assert list(per_image.columns) == ["image", "method", "sensitivity_max", "infidelity"]
    assert len(per_image) == 2 * len(stems) and (per_image[["sensitivity_max", "infidelity"]] > 0).all().all()
    summary = pd.read_csv(project / "reports/stability/summary.csv")
    assert list(summary.columns) == ["method", "metric", "mean", "ci_low", "ci_high", "n"]
    metrics = json.loads((project / "reports/stability.json").read_text())
    for row in summary.itertuples():
        values = per_image[per_image.method == row.method][row.metric]
        assert row.mean == pytest.approx(values.mean(), rel=1e-5) and row.n == len(stems)
        assert metrics[row.method][row.metric]["mean"] == pytest.approx(row.mean, rel=1e-5)
        assert row.ci_low <= row.mean <= row.ci_high
    first = (project / "reports/stability/per_image.csv").read_bytes()
    assert stage_in_process(project, "stages/stability.py").returncode == 0
    assert (project / "reports/stability/per_image.csv").read_bytes() == first  # a rerun is byte-identical


def test_stability_stage_rejects_a_radius_outside_pixel_units(tmp_path, prepared, stage_in_process):
    section = {"methods": ["saliency"], "radius": 2, "n_perturb_samples": 2, "seed": 0, "batch_size": 2}
    proc = stage_in_process(_project(tmp_path, prepared, section), "stages/stability.py")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: stability.radius: 2 is not allowed (expected a number in (0, 1])"
    ]
    assert not (tmp_path / "reports").exists()
