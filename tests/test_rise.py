import numpy as np
import pytest
import torch
from skimage.transform import resize

from deepsaliency import generate_masks
from deepsaliency.errors import ParamError
from deepsaliency.rise import SAMPLINGS, RiseMasks, explain


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
    """The reference construction (eclique/RISE, generate_masks), one mask at a time: skimage's
    order-1 reflect-mode resize of the whole float32 grid to (s+1)·⌈H/s⌉, then the crop at the shift."""
    h, w = masks.input_size
    ch, cw = -(-h // masks.s), -(-w // masks.s)
    up_size = ((masks.s + 1) * ch, (masks.s + 1) * cw)
    out = []
    for grid, (dy, dx) in zip(masks.grids, masks.shifts, strict=True):
        up = resize(grid.astype("float32"), up_size, order=1, mode="reflect", anti_aliasing=False)
        out.append(torch.from_numpy(up[dy : dy + h, dx : dx + w].astype(np.float32))[None])
    return torch.stack(out)


@pytest.mark.parametrize("s, size", [(8, (224, 224)), (7, (224, 224)), (8, (100, 100)), (3, (100, 61)), (1, (10, 10))])
def test_masks_equal_the_reference_resize_to_float_precision(s, size):
    # Issue 12: the edge strip differed by up to 0.72 (edge cell repeated instead of mirrored).
    masks = generate_masks(N=40, s=s, p1=0.5, input_size=size, seed=5)
    cell = (-(-size[0] // s), -(-size[1] // s))
    # Every extreme shift too: the edges are where a wrong boundary rule shows.
    extremes = np.array([[0, 0], [cell[0] - 1, cell[1] - 1], [0, cell[1] - 1], [cell[0] - 1, 0]])
    masks = RiseMasks(masks.grids, np.concatenate([masks.shifts[:-4], extremes]), 0.5, size)
    ours, ref = masks.dense(), reference_masks(masks)
    assert ours.shape == ref.shape == (40, 1, *size)
    assert float((ours - ref).abs().max()) <= 1e-6
    # The reference's masks are not the edge-repeating ones: the two rules differ at the border.
    repeat_edge = torch.nn.functional.interpolate(
        torch.from_numpy(masks.grids[-4:].astype(np.float32))[:, None],
        size=((s + 1) * cell[0], (s + 1) * cell[1]),
        mode="bilinear",
        align_corners=False,
    )[:, :, : size[0], : size[1]]
    if s > 1:
        assert float((repeat_edge[0] - ref[-4]).abs().max()) > 0.05


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
        torch.testing.assert_close(
            explain(model, x, masks, batch_size=8, target=target),
            brute_force_rise(model, x, masks, target),
            rtol=1e-5,
            atol=1e-6,
        )
    full = explain(model, x, masks, batch_size=5)
    assert full.shape == (5, 20, 20)
    torch.testing.assert_close(full[3], brute_force_rise(model, x, masks, 3), rtol=1e-5, atol=1e-6)


def test_rise_equals_the_formula_on_the_real_model(model, samples):
    x = samples["coffee"]
    masks = generate_masks(N=12, s=8, p1=0.5, input_size=model.input_size, seed=1)
    target = 967
    torch.testing.assert_close(
        explain(model, x, masks, batch_size=5, target=target),
        brute_force_rise(model, x, masks, target),
        rtol=1e-4,
        atol=1e-6,
    )


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
    [({"N": 0}, "^N: 0"), ({"s": 300}, "^s: 300"), ({"p1": 1.0}, "^p1: 1.0"), ({"p1": 0}, "^p1: 0")],
)
def test_bad_mask_parameters_are_named(kwargs, message):
    with pytest.raises(ParamError, match=message.replace(".", r"\.")):
        generate_masks(**{"N": 10, "s": 8, "p1": 0.5, "input_size": (224, 224), **kwargs})


def test_random_sampling_draws_exactly_the_earlier_grids_and_shifts():
    # "random stays bit for bit": the earlier generator, written out.
    rng = np.random.default_rng(7)
    grids = rng.random((300, 8, 8)) < 0.4
    shifts = np.stack([rng.integers(0, 28, 300), rng.integers(0, 28, 300)], axis=1)
    masks = generate_masks(N=300, s=8, p1=0.4, input_size=(224, 224), seed=7)
    assert masks.sampling == "random"
    assert (masks.grids == grids).all() and (masks.shifts == shifts).all()


@pytest.mark.parametrize("sampling", ["sobol", "antithetic"])
def test_paired_schemes_average_to_p1_exactly_and_keep_the_marginals(sampling):
    a = generate_masks(N=512, s=8, p1=0.5, input_size=(224, 224), seed=3, sampling=sampling)
    b = generate_masks(N=512, s=8, p1=0.5, input_size=(224, 224), seed=3, sampling=sampling)
    c = generate_masks(N=512, s=8, p1=0.5, input_size=(224, 224), seed=4, sampling=sampling)
    assert (a.grids == b.grids).all() and (a.shifts == b.shifts).all() and not (a.grids == c.grids).all()
    assert (a.grids[1::2] == ~a.grids[0::2]).all() and (a.shifts[1::2] == a.shifts[0::2]).all()
    assert a.shifts.min() == 0 and a.shifts.max() == 27
    # Mean mask over all pixels: exactly p1 for the paired schemes, ≈ 0.03 off somewhere for i.i.d. masks.
    dev = float((a.dense().mean(0) - 0.5).abs().max())
    iid = generate_masks(N=512, s=8, p1=0.5, input_size=(224, 224), seed=3)
    dev_random = float((iid.dense().mean(0) - 0.5).abs().max())
    assert dev < 1e-6 < 0.02 < dev_random
    # p1 ≠ 0.5: each mask still keeps a cell with probability p1 (the second of a pair uses 1 − u).
    d = generate_masks(N=4000, s=8, p1=0.3, input_size=(224, 224), seed=0, sampling=sampling)
    assert abs(d.grids[0::2].mean() - 0.3) < 0.005 and abs(d.grids[1::2].mean() - 0.3) < 0.005


def test_sobol_pairs_balance_every_two_cells():
    # Strength-2 balance of the scrambled Sobol' points: in 256 pairs every two cells are both kept in
    # exactly a quarter of the first masks of the pairs; i.i.d. draws are off by several counts.
    g = generate_masks(N=512, s=8, p1=0.5, input_size=(224, 224), seed=0, sampling="sobol").grids[0::2]
    g = g.reshape(256, 64).astype(np.int64)
    both = g.T @ g
    assert (np.diag(both) == 128).all() and (both[~np.eye(64, dtype=bool)] == 64).all()
    r = generate_masks(N=256, s=8, p1=0.5, input_size=(224, 224), seed=0).grids.reshape(256, 64).astype(np.int64)
    assert np.abs((r.T @ r)[~np.eye(64, dtype=bool)] - 64).max() >= 8


def test_paired_schemes_need_fewer_masks_on_a_tiny_model():
    # Same map, far fewer masks: correlation with a 100,000-mask i.i.d. reference, 6 seeds of 256 masks.
    model = TinyNet()
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    many = generate_masks(N=100_000, s=4, p1=0.5, input_size=(20, 20), seed=99)
    ref = explain(model, x, many, batch_size=5000, target=0)

    def pcc(sampling, seed, n=256):
        masks = generate_masks(N=n, s=4, p1=0.5, input_size=(20, 20), seed=seed, sampling=sampling)
        return np.corrcoef(explain(model, x, masks, batch_size=n, target=0).flatten(), ref.flatten())[0, 1]

    r = {sm: np.mean([pcc(sm, seed) for seed in range(6)]) for sm in SAMPLINGS}
    assert r["random"] < 0.5 and r["sobol"] > 0.75 and r["antithetic"] > 0.75
    # i.i.d. masks need ≥ 8× as many for the same correlation.
    assert np.mean([pcc("random", seed, 2048) for seed in range(3)]) < min(r["sobol"], r["antithetic"])


def test_rise_formula_holds_for_every_sampling_on_a_tiny_model():
    model = TinyNet()
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    for sampling in ("sobol", "antithetic"):
        masks = generate_masks(N=21, s=4, p1=0.5, input_size=(20, 20), seed=0, sampling=sampling)
        expected = brute_force_rise(model, x, masks, 2)
        torch.testing.assert_close(explain(model, x, masks, batch_size=8, target=2), expected, rtol=1e-5, atol=1e-6)


def test_sampling_round_trips_and_old_or_foreign_files_are_handled(tmp_path):
    masks = generate_masks(N=30, s=5, p1=0.5, input_size=(40, 40), seed=2, sampling="sobol")
    masks.save(tmp_path / "m.npz")
    back = RiseMasks.load(tmp_path / "m.npz")
    assert back.sampling == "sobol" and (back.grids == masks.grids).all() and (back.shifts == masks.shifts).all()
    # A file written before rise.sampling existed: no "sampling" array → random.
    old = generate_masks(N=30, s=5, p1=0.5, input_size=(40, 40), seed=2)
    with open(tmp_path / "old.npz", "wb") as f:
        np.savez_compressed(
            f,
            grids=np.packbits(old.grids.reshape(30, -1), axis=1),
            shifts=old.shifts.astype(np.int16),
            meta=np.array([30, 5, 40, 40]),
            p1=np.float64(0.5),
            seed=np.int64(2),
        )
    back = RiseMasks.load(tmp_path / "old.npz")
    assert back.sampling == "random" and (back.grids == old.grids).all() and back.seed == 2
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    missing = r"not a RISE masks file \(missing array 'meta', 'grids', 'shifts', 'p1', 'seed'\)"
    with pytest.raises(ParamError, match=r"masks file '.*other\.npz': " + missing) as info:
        RiseMasks.load(tmp_path / "other.npz")
    assert "\n" not in str(info.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ParamError, match=r"junk\.npz': not a RISE masks file"):
        RiseMasks.load(tmp_path / "junk.npz")


def test_bad_sampling_is_named():
    with pytest.raises(ParamError, match=r"^sampling: 'halton' is not allowed \(one of random, sobol, antithetic\)$"):
        generate_masks(N=10, s=8, sampling="halton")


def test_masks_stage_writes_the_chosen_sampling_and_rejects_an_unknown_one(tmp_path, stage_in_process):
    import shutil
    import subprocess
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "stages", tmp_path / "stages")
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["rise"]["sampling"] == "random"  # the default until a scheme is proven on every image
    params["rise"].update(N=64, sampling="sobol")

    def run() -> subprocess.CompletedProcess:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return stage_in_process(tmp_path, "stages/masks.py")

    proc = run()
    assert proc.returncode == 0, proc.stderr
    masks = RiseMasks.load(tmp_path / "data/masks/masks.npz")
    rise = params["rise"]
    expected = generate_masks(
        N=64, s=rise["s"], p1=rise["p1"], input_size=params["model"]["input_size"], seed=rise["seed"], sampling="sobol"
    )
    assert masks.sampling == "sobol"
    assert (masks.grids == expected.grids).all() and (masks.shifts == expected.shifts).all()
    params["rise"]["sampling"] = "halton"
    proc = run()
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "rise.sampling: 'halton' is not allowed" in proc.stderr and "random, sobol, antithetic" in proc.stderr
