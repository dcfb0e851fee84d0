import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepsaliency import generate_masks
from deepsaliency.errors import ParamError
from deepsaliency.rise import RiseMasks, explain


class TinyNet(torch.nn.Module):
    """A small classifier whose outputs depend on where the image is bright."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.fc = torch.nn.Linear(4 * 4 * 4, 5)
        self.device = torch.device("cpu")

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def reference_masks(masks: RiseMasks) -> torch.Tensor:
    """The reference construction, one mask at a time: upsample the whole grid, then crop."""
    h, w = masks.input_size
    ch, cw = -(-h // masks.s), -(-w // masks.s)
    out = []
    for grid, (dy, dx) in zip(masks.grids, masks.shifts):
        up = F.interpolate(torch.tensor(grid, dtype=torch.float32)[None, None], size=((masks.s + 1) * ch, (masks.s + 1) * cw), mode="bilinear", align_corners=False)
        out.append(up[0, :, dy : dy + h, dx : dx + w])
    return torch.stack(out)


def test_masks_follow_the_paper_construction_and_are_deterministic():
    a = generate_masks(N=50, s=4, p1=0.3, input_size=(20, 20), seed=3)
    b = generate_masks(N=50, s=4, p1=0.3, input_size=(20, 20), seed=3)
    c = generate_masks(N=50, s=4, p1=0.3, input_size=(20, 20), seed=4)
    assert (a.grids == b.grids).all() and (a.shifts == b.shifts).all()
    assert not (a.grids == c.grids).all()
    torch.testing.assert_close(a.dense(0, 50), reference_masks(a), atol=1e-6, rtol=0)
    assert a.dense(5, 9).shape == (4, 1, 20, 20)
    assert 0.2 < a.grids.mean() < 0.4
    assert a.shifts.min() >= 0 and a.shifts.max() < 5


def test_mask_artifact_is_compact_and_round_trips(tmp_path):
    masks = generate_masks(N=4000, s=8, p1=0.5, input_size=(224, 224), seed=0)
    masks.save(tmp_path / "m.npz")
    assert (tmp_path / "m.npz").stat().st_size < 20e6 / 100  # 20 MB floor of the issue, with 100× margin
    back = RiseMasks.load(tmp_path / "m.npz")
    assert (back.grids == masks.grids).all() and (back.shifts == masks.shifts).all()
    assert back.p1 == 0.5 and back.input_size == (224, 224) and back.seed == 0


def brute_force_rise(model, x, masks, target):
    m = reference_masks(masks)
    with torch.no_grad():
        p = torch.stack([model(x * mi).softmax(-1)[0, target] for mi in m])
    return (p.view(-1, 1, 1) * m[:, 0]).sum(0) / (len(masks) * masks.p1)


def test_rise_equals_the_formula_on_a_tiny_model():
    model = TinyNet()
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    masks = generate_masks(N=37, s=4, p1=0.4, input_size=(20, 20), seed=0)
    for target in (0, 3):
        torch.testing.assert_close(explain(model, x, masks, batch_size=8, target=target), brute_force_rise(model, x, masks, target), rtol=1e-5, atol=1e-6)
    full = explain(model, x, masks, batch_size=5)
    assert full.shape == (5, 20, 20)
    torch.testing.assert_close(full[3], brute_force_rise(model, x, masks, 3), rtol=1e-5, atol=1e-6)


def test_rise_equals_the_formula_on_the_real_model(model, samples):
    x = samples["coffee"]
    masks = generate_masks(N=12, s=8, p1=0.5, input_size=model.input_size, seed=1)
    target = 967
    torch.testing.assert_close(explain(model, x, masks, batch_size=5, target=target), brute_force_rise(model, x, masks, target), rtol=1e-4, atol=1e-6)


def test_all_ones_masks_give_a_constant_map():
    model = TinyNet()
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    masks = RiseMasks(np.ones((6, 4, 4), dtype=bool), np.zeros((6, 2), dtype=np.int64), 0.5, (20, 20))
    with torch.no_grad():
        p = model(x).softmax(-1)[0, 2]
    sal = explain(model, x, masks, batch_size=4, target=2)
    torch.testing.assert_close(sal, torch.full((20, 20), float(p / 0.5)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"N": 0}, "rise.N: 0"), ({"s": 300}, "rise.s: 300"), ({"p1": 1.0}, "rise.p1: 1.0"), ({"p1": 0}, "rise.p1: 0")],
)
def test_bad_mask_parameters_are_named(kwargs, message):
    with pytest.raises(ParamError, match=message.replace(".", r"\.")):
        generate_masks(**{"N": 10, "s": 8, "p1": 0.5, "input_size": (224, 224), **kwargs})
