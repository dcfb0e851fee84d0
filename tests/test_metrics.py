"""Map similarity, attack quality and the metrics tables/stage, on hand-computable inputs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage
import torch
import yaml
from PIL import Image
from skimage.metrics import structural_similarity

from deepsaliency.errors import AttributionError, DeepSaliencyError, ParamError
from deepsaliency.metrics import (
    PSNR_CAP,
    attack_quality,
    center_of_mass_shift,
    compare_maps,
    compute_metrics,
    image_psnr,
    image_ssim,
    mse,
    normalize_map,
    pearson,
    perturbation_l2,
    perturbation_linf,
    psnr,
    spearman,
    ssim,
    success_rate,
    tables,
    top_k_intersection,
)
from deepsaliency.metrics import summary as summaries
from deepsaliency.metrics.similarity import min_max_map

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
MAP = RNG.random((32, 32))


# ---------------------------------------------------------------- map similarity


def test_identical_maps_score_perfectly():
    m = compare_maps(MAP, MAP.copy(), top_k=50)
    assert m == {
        "ssim": pytest.approx(1.0),
        "mse": 0.0,
        "psnr": PSNR_CAP,
        "pearson": pytest.approx(1.0),
        "spearman": pytest.approx(1.0),
        "top_k": 1.0,
        "com_shift": 0.0,
    }


def test_maps_are_compared_after_rescaling_min_max():
    # Issue 12: SSIM/MSE/PSNR rescale each map min–max (scale AND offset removed); the old rule divided by the max.
    np.testing.assert_allclose(normalize_map(4 * MAP).max(), 1.0)
    assert compute_metrics(MAP, 1000 * MAP) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-20), PSNR_CAP)
    assert compute_metrics(MAP, 5 + 1000 * MAP) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-20), PSNR_CAP)
    mm = min_max_map(3 + 2 * MAP)
    np.testing.assert_allclose(mm, (MAP - MAP.min()) / (MAP.max() - MAP.min()), atol=1e-12)
    assert (mm.min(), mm.max()) == (0.0, 1.0)
    assert normalize_map(np.zeros((8, 8))).sum() == 0  # all-zero stays zero
    # A constant map has no range: it becomes all zeros, like an all-zero map.
    assert min_max_map(np.full((8, 8), 3.0)).tolist() == np.zeros((8, 8)).tolist()


def test_mse_and_psnr_by_hand():
    a = np.ones((8, 8))
    a[7, 7] = 0  # range [0, 1]: min–max leaves it as it is
    b = a.copy()
    b[:2] = 0  # 16 of 64 pixels differ by 1
    assert mse(a, b) == 0.25
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.25))  # 6.0206 dB
    # An offset and a scale do not change them (the old max rule gave MSE 0.2556 for 3 + 2a against b).
    assert mse(3 + 2 * a, b) == pytest.approx(0.25) and psnr(3 + 2 * a, b) == pytest.approx(6.0206, abs=1e-4)
    # Two constant maps are both all zeros after min–max: identical (the old rule gave SSIM 1e-4 / (1 + 1e-4)).
    assert (ssim(np.zeros((8, 8)), np.full((8, 8), 3.0)), mse(np.zeros((8, 8)), np.full((8, 8), 3.0))) == (1.0, 0.0)


def _smooth_field(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random map rescaled to [0, 1] by hand (blob-like, as RISE's)."""
    f = scipy.ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 4)
    return (f - f.min()) / (f.max() - f.min())


def test_offset_maps_get_the_ssim_of_their_shapes_not_of_their_offset():
    # Issue 12: two maps spanning 0.2–0.5 (RISE's saliency is a mean probability: a large constant offset)
    # whose shapes share half their variance.
    shape_a = _smooth_field(1)
    shape_b = 0.5 * shape_a + 0.5 * _smooth_field(2)
    shape_b = (shape_b - shape_b.min()) / (shape_b.max() - shape_b.min())
    a, b = 0.2 + 0.3 * shape_a, 0.2 + 0.3 * shape_b
    direct = structural_similarity(shape_a, shape_b, data_range=1.0)  # skimage on the hand-rescaled maps: 0.500
    assert ssim(a, b) == pytest.approx(direct, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(shape_a, shape_b), abs=1e-12)
    assert mse(a, b) == pytest.approx(np.mean((shape_a - shape_b) ** 2), abs=1e-15)
    # The old rule (divide by the max, data_range=1) keeps the offset and inflates SSIM: 0.602.
    old = structural_similarity(a / a.max(), b / b.max(), data_range=1.0)
    assert ssim(a, b) < old - 0.1
    # Quantus' convention (max-normalised maps, data_range = the pair's joint range) still sees the offset: 0.529.
    am, bm = a / a.max(), b / b.max()
    quantus = structural_similarity(am, bm, data_range=float(np.ptp(np.concatenate([am, bm]))))
    assert ssim(a, b) < quantus - 0.02
    # Every entry point uses the same rule.
    cm = compare_maps(a, b, top_k=100)
    assert compute_metrics(a, b) == (ssim(a, b), mse(a, b), psnr(a, b)) == (cm["ssim"], cm["mse"], cm["psnr"])
    # The rank and centre metrics are unchanged: offset-invariant, and the centre of mass of the maps themselves.
    assert cm["pearson"] == pytest.approx(pearson(shape_a, shape_b))
    assert cm["spearman"] == pytest.approx(spearman(shape_a, shape_b))
    assert cm["top_k"] == top_k_intersection(shape_a, shape_b, 100)
    com = np.subtract(scipy.ndimage.center_of_mass(a), scipy.ndimage.center_of_mass(b))
    assert cm["com_shift"] == pytest.approx(float(np.hypot(*com)), abs=1e-9)


def test_reversed_ramp_is_perfectly_anticorrelated():
    ramp = np.arange(64, dtype=float).reshape(8, 8)
    assert pearson(ramp, ramp.max() - ramp) == pytest.approx(-1.0)
    assert spearman(ramp, ramp.max() - ramp) == pytest.approx(-1.0)
    assert spearman(ramp, ramp**3) == pytest.approx(1.0) and pearson(ramp, ramp**3) < 0.95  # ranks vs linearity


def test_shifted_blob_moves_the_centre_of_mass_by_the_shift():
    a = np.zeros((40, 40))
    a[8:14, 10:13] = [[1, 2, 3]] * 6  # an asymmetric blob away from the edges
    b = np.roll(np.roll(a, 3, axis=0), 4, axis=1)  # moved 3 down and 4 right: 5 pixels
    assert center_of_mass_shift(a, b) == pytest.approx(5.0)
    assert center_of_mass_shift(a, 7 * b) == pytest.approx(5.0)  # scale does not matter


def test_known_top_k_overlap():
    a = np.arange(100, dtype=float).reshape(10, 10)  # top 10 = flat indices 90..99
    b = np.roll(a.ravel(), -5).reshape(10, 10)  # top 10 = flat indices 85..94
    assert top_k_intersection(a, b, k=10) == 0.5
    assert top_k_intersection(a, b, k=100) == 1.0
    with pytest.raises(ParamError, match=r"^k: 101 is not allowed \(an integer in \[1, 100\]"):
        top_k_intersection(a, b, k=101)
    with pytest.raises(ParamError, match=r"^top_k: 0 is not allowed \(an integer in \[1, 100\]"):
        compare_maps(a, b, top_k=0)  # names the argument the caller wrote, not a params.yaml key


def test_top_k_ties_are_ranked_in_raster_order():
    from deepsaliency.metrics.similarity import top_k_pixels

    plateau = np.random.default_rng(2).integers(0, 4, (20, 20)).astype(float)  # many ties
    for k in (1, 37, 150, 400):
        assert set(top_k_pixels(plateau, k)) == set(np.argsort(-plateau.ravel(), kind="stable")[:k])


def test_constant_and_all_zero_maps_have_defined_finite_values():
    zero, const = np.zeros((16, 16)), np.full((16, 16), 2.0)
    blob = np.zeros((16, 16))
    blob[2, 3] = 1.0
    for a, b in [(zero, zero), (zero, blob), (const, blob), (zero, const), (const, const)]:
        values = compare_maps(a, b, top_k=10)
        assert all(math.isfinite(v) for v in values.values()), (a.max(), b.max(), values)
    assert compare_maps(zero, zero, 10) == {
        "ssim": 1.0,
        "mse": 0.0,
        "psnr": PSNR_CAP,
        "pearson": 0.0,
        "spearman": 0.0,
        "top_k": 1.0,
        "com_shift": 0.0,
    }
    assert pearson(const, MAP[:16, :16]) == 0.0 and spearman(zero, MAP[:16, :16]) == 0.0
    # An all-zero map's centre is the image centre (7.5, 7.5); the blob's is (2, 3).
    assert center_of_mass_shift(zero, blob) == pytest.approx(math.hypot(5.5, 4.5))


def test_seed_api_accepts_tensors_and_matches_the_functions():
    other = RNG.random((32, 32))
    s, e, p = compute_metrics(torch.from_numpy(MAP).float(), torch.from_numpy(other).float())
    assert (s, e, p) == (
        pytest.approx(ssim(MAP, other), abs=1e-6),
        pytest.approx(mse(MAP, other), abs=1e-6),
        pytest.approx(psnr(MAP, other), abs=1e-4),
    )
    assert abs(s) < 0.2 and p < 20  # independent noise maps are not similar


def test_bad_maps_raise_named_errors():
    bad = MAP.copy()
    bad[3, 3] = np.inf
    with pytest.raises(AttributionError, match=r"NaN/infinite"):
        ssim(MAP, bad)
    with pytest.raises(AttributionError, match=r"negative"):
        mse(MAP, -MAP)
    with pytest.raises(ParamError, match=r"shapes \(32, 32\) and \(16, 16\) differ"):
        pearson(MAP, MAP[:16, :16])


# ---------------------------------------------------------------- attack quality


def test_perturbation_norms_in_255_units():
    x = np.full((3, 8, 8), 0.5)
    one = x.copy()
    one[1, 2, 3] += 4 / 255
    assert perturbation_linf(x, one) == pytest.approx(4) and perturbation_l2(x, one) == pytest.approx(4)
    everywhere = x + 2 / 255  # 192 values, each +2
    assert perturbation_l2(x, everywhere) == pytest.approx(2 * math.sqrt(192))
    assert perturbation_linf(x, everywhere) == pytest.approx(2)
    assert image_psnr(x, everywhere) == pytest.approx(20 * math.log10(255 / 2))  # 42.11 dB
    assert image_psnr(x, x) == PSNR_CAP and image_ssim(x, x) == pytest.approx(1.0)


def test_attack_quality_record_and_success_rate():
    x = RNG.random((3, 16, 16))
    q = attack_quality(x, np.clip(x + 0.01, 0, 1), label_orig=5, label_adv=5, prob_orig=0.9, prob_adv=0.7)
    assert q["top1_kept"] == 1.0 and q["prob_change"] == pytest.approx(-0.2)
    assert 0 < q["linf_255"] <= 2.55 + 1e-9 and 0 < q["ssim"] < 1
    assert attack_quality(x, x, 5, 7, 0.9, 0.1)["top1_kept"] == 0.0
    assert success_rate([1, 2, 3], [1, 5, 6]) == pytest.approx(2 / 3)
    with pytest.raises(DeepSaliencyError, match=r"prob_adv: 1.5 is not a probability"):
        attack_quality(x, x, 5, 5, 0.9, 1.5)


# ---------------------------------------------------------------- tables and summary


def _rows(kind: str) -> pd.DataFrame:
    if kind == "similarity":
        rows = []
        for a in ("saliency", "pgd"):
            for m, base in (("saliency", 0.1), ("gradcam", 0.5), ("rise", 0.7)):
                for pair in ("orig_adv",) if a == "pgd" else tables.PAIRS:
                    rows.append(
                        {
                            "image": "a",
                            "attack": a,
                            "method": m,
                            "pair": pair,
                            "diagonal": m == a,
                            "target": "",
                            **{k: base for k in ("ssim", "mse", "psnr", "pearson", "spearman", "top_k", "com_shift")},
                        }
                    )
        return pd.DataFrame(rows)
    if kind == "quality":
        return pd.DataFrame(
            [
                {
                    "image": s,
                    "attack": "pgd",
                    "label_orig": 1,
                    "label_adv": la,
                    "top1_kept": float(la == 1),
                    "prob_orig": 0.9,
                    "prob_adv": 0.2,
                    "prob_change": -0.7,
                    "l2_255": 1.0,
                    "linf_255": 2.0,
                    "psnr": 40.0,
                    "ssim": 0.99,
                }
                for s, la in (("a", 1), ("b", 3))
            ]
        )
    return pd.DataFrame(
        [
            {"image": "a", "attack": "none", "method": m, "deletion": 0.1, "insertion": 0.5}
            for m in ("saliency", "random")
        ]
    )


def test_summary_separates_attack_and_transfer_and_is_finite():
    summary = summaries.summarize(_rows("similarity"), _rows("quality"), _rows("faithfulness"))
    sim = summary["similarity"]
    assert sim["saliency"]["diagonal"]["orig_adv"]["ssim"]["mean"] == pytest.approx(0.1)
    # mean of gradcam 0.5, rise 0.7
    assert sim["saliency"]["transfer"]["adv_target"]["pearson"]["mean"] == pytest.approx(0.6)
    assert list(sim["pgd"]) == ["all"] and list(sim["pgd"]["all"]) == ["orig_adv"]
    assert summary["attack"]["pgd"]["success_rate"]["mean"] == 0.5
    assert summary["attack"]["pgd"]["top1_kept"]["mean"] == 0.5
    assert summary["faithfulness"]["original"]["random"] == {
        k: {"mean": v, "ci_low": v, "ci_high": v, "n": 1} for k, v in (("deletion", 0.1), ("insertion", 0.5))
    }
    json.dumps(summary, allow_nan=False)


def test_nan_anywhere_in_the_summary_or_a_table_is_refused():
    with pytest.raises(DeepSaliencyError, match=r"metrics.similarity.x.ssim: nan is not finite"):
        summaries.assert_finite({"similarity": {"x": {"ssim": float("nan")}}})
    df = _rows("faithfulness")
    df.loc[1, "insertion"] = np.inf
    with pytest.raises(DeepSaliencyError, match=r"faithfulness.csv: column 'insertion' row 1"):
        summaries.assert_finite_table(df, "faithfulness.csv")


def test_faithfulness_jobs_diagonal_all_and_none():
    stems, methods, attacks = ["a", "b"], ["saliency", "gradcam"], [("saliency", 8.0), ("rise", 8.0), ("pgd", 8.0)]
    diag = tables.faithfulness_jobs(stems, methods, attacks, "diagonal")
    assert len(diag) == 2 * 3 + 2 * 2  # originals: 2 methods + random; only saliency's attack has its method evaluated
    assert ("a", "saliency", 8.0, "saliency") in diag and ("b", "saliency", 8.0, "random") in diag
    assert not any(a in ("rise", "pgd") for _, a, _, _ in diag)
    assert len(tables.faithfulness_jobs(stems, methods, attacks, "all")) == 2 * 3 * 4
    assert len(tables.faithfulness_jobs(stems, methods, attacks, "none")) == 6


def test_settings_take_defaults_and_reject_bad_values():
    assert tables.settings_from_params({}) == tables.Settings()
    s = tables.settings_from_params({"metrics": {"top_k": 10}, "faithfulness": {"step": 7, "substrate": "blur"}})
    assert (s.top_k, s.step, s.substrate, s.blur_sigma) == (10, 7, "blur", 5.0)
    with pytest.raises(
        ParamError, match=r"faithfulness.blur_kernel: 10 is not allowed \(expected an odd integer ≥ 1\)"
    ):
        tables.settings_from_params({"faithfulness": {"blur_kernel": 10}})
    with pytest.raises(ParamError, match=r"metrics.topk: unknown key"):
        tables.settings_from_params({"metrics": {"topk": 10}})


# ---------------------------------------------------------------- the stage, end to end on synthetic artifacts

SIZE = 64
METHODS = ("saliency", "gradcam")


def _make_project(root: Path) -> dict:
    """A tiny artifact tree: 2 images (64²), 2 explained methods, a saliency attack and PGD."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if "faithfulness" in params:  # once the lead's schema knows the section, pin the values this test counts on
        params["faithfulness"].update(step=1792, adversarial="diagonal", random_cell=1)
    if "metrics" in params:
        params["metrics"]["top_k"] = 100
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rng = np.random.default_rng(1)
    prep = root / "data/prepared"
    prep.mkdir(parents=True)
    x, maps = {}, {}
    for stem, cls in (("a", 1), ("b", 2)):
        img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(img).save(prep / f"{stem}.png")
        x[stem] = img.transpose(2, 0, 1).astype(np.float32) / 255
        for m in METHODS:
            maps[(m, stem)] = rng.random((SIZE, SIZE)).astype(np.float32)
            d = root / "data/explanations" / m
            d.mkdir(parents=True, exist_ok=True)
            np.savez(d / f"{stem}.npz", attribution=maps[(m, stem)][None], map=maps[(m, stem)], target=np.int64(cls))
    pd.DataFrame(
        {"file": ["a.png", "b.png"], "stem": ["a", "b"], "class_idx": [1, 2], "label": ["x", "y"], "prob": [0.5, 0.25]}
    ).to_csv(prep / "manifest.csv", index=False)
    adv = {}
    for attack in ("saliency", "pgd"):  # the saliency attack at the budget 8/255; PGD has one folder
        d = root / "data/attacks" / attack / ("" if attack == "pgd" else "eps8")
        d.mkdir(parents=True)
        for stem, target, label_adv in (("a", "b", 1), ("b", "a", 7)):
            x_adv = np.clip(x[stem] + rng.uniform(-8, 8, x[stem].shape) / 255, 0, 1).astype(np.float32)
            amaps = {m: rng.random((SIZE, SIZE)).astype(np.float32) for m in METHODS}
            adv[(attack, stem)] = amaps
            np.savez(
                d / f"{stem}.npz",
                x_adv=x_adv,
                target_stem=np.array("" if attack == "pgd" else target),
                label_adv=np.int64(label_adv),
                prob_adv=np.float64(0.1),
                **(
                    {}
                    if attack == "pgd"
                    else {"converged": np.bool_(stem == "a"), "steps": np.int64(3), "passes": np.int64(9)}
                ),
                **{f"map_{m}": v for m, v in amaps.items()},
            )
    # The attack stage's loss log is part of its contract (the metrics stage gathers it for the plots).
    (root / "reports/attack_loss").mkdir(parents=True)
    pd.DataFrame(
        {
            "step": [1, 1],
            "image": ["a", "b"],
            "expl_loss": [1e-9, 2e-9],
            "output_loss": [0.0, 1e-8],
            "beta": [10.0, 10.0],
        }
    ).to_csv(root / "reports/attack_loss/saliency-eps8.csv", index=False)
    return {"maps": maps, "adv": adv}


def _run_stage(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, str(ROOT / "stages/metrics.py")], cwd=root, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics_stage")
    truth = _make_project(root)
    proc = _run_stage(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, truth


def test_stage_writes_every_table_with_the_right_rows(stage_run, model):
    root, truth = stage_run
    sim = pd.read_csv(root / "reports/metrics/map_similarity.csv")
    # 2 images × (saliency attack: 2 methods × 3 pairs + pgd: 2 methods × 1 pair)
    assert len(sim) == 16 and set(sim["pair"]) == set(tables.PAIRS)
    assert set(sim[sim["attack"] == "pgd"]["pair"]) == {"orig_adv"}
    assert sim["diagonal"].sum() == 6  # saliency attack, saliency method, 2 images × 3 pairs
    # Pair semantics: (adversarial, target) of image a under gradcam = attack map vs gradcam's map of image b.
    row = sim[
        (sim.image == "a") & (sim.attack == "saliency") & (sim.method == "gradcam") & (sim.pair == "adv_target")
    ].iloc[0]
    expected = compare_maps(truth["adv"][("saliency", "a")]["gradcam"], truth["maps"][("gradcam", "b")], top_k=100)
    for metric in ("ssim", "pearson", "com_shift"):
        assert row[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6)
    assert row["target"] == "b"
    quality = pd.read_csv(root / "reports/metrics/attack_quality.csv")
    assert len(quality) == 4 and quality["linf_255"].max() <= 8 + 1e-3
    x_a = torch.from_numpy(np.asarray(Image.open(root / "data/prepared/a.png"), dtype=np.float32) / 255).permute(
        2, 0, 1
    )[None]
    with torch.inference_mode():
        p_a = float(model(x_a).softmax(-1)[0, 1])  # class 1 is a's "originally predicted" class in the manifest
    assert quality[quality.image == "a"]["prob_orig"].eq(quality[quality.image == "a"]["prob_orig"].iloc[0]).all()
    assert quality[quality.image == "a"]["prob_orig"].iloc[0] == pytest.approx(p_a, rel=1e-4)
    faith = pd.read_csv(root / "reports/metrics/faithfulness.csv")
    assert len(faith) == 2 * 3 + 2 * 2 and set(faith["method"]) == {"saliency", "gradcam", "random"}
    assert faith[["deletion", "insertion"]].apply(lambda c: c.between(0, 1)).all().all()
    for kind in ("deletion", "insertion"):
        curves = pd.read_csv(root / f"reports/plots/{kind}_curves.csv")
        assert list(curves.columns[:2]) == ["method", "image"] and {"fraction", "prob"} <= set(curves.columns)
        assert len(curves) == 10 * 4  # 10 curves × (ceil(4096 / 1792) + 1) points
        assert curves.groupby(["method", "image", "attack"])["fraction"].agg(["min", "max"]).eq([0, 1]).all().all()


def test_stage_summary_is_finite_and_readable(stage_run):
    root, _ = stage_run
    summary = json.loads(
        (root / "reports/metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in metrics.json")
    )
    assert summary["images"] == 2
    # every attack block is per budget: saliency's at 8/255, PGD's at pgd.eps = 8/255
    assert summary["attack"]["pgd"]["eps8"]["success_rate"]["mean"] == 0.5  # b's label flipped, a's did not
    assert summary["attack"]["saliency"]["eps8"]["top1_kept"]["mean"] == 0.5
    assert summary["attack"]["saliency"]["eps8"]["converged_rate"]["mean"] == 0.5  # a converged, b did not
    assert summary["attack"]["saliency"]["eps8"]["passes"]["mean"] == 9
    assert set(summary["similarity"]["saliency"]["eps8"]) == {"diagonal", "transfer"}
    assert set(summary["faithfulness"]) == {"original", "saliency"}
    assert set(summary["faithfulness"]["saliency"]["eps8"]) == {"saliency", "random"}
    assert summary["leaderboard"]["methods"]["saliency"]["converged_rate"] == 0.5
    curve = pd.read_csv(root / "reports/metrics/manipulability.csv")
    assert list(curve.columns) == ["method", "eps", "n", "mean", "ci_low", "ci_high", "converged_rate"]
    assert curve[["method", "eps", "n", "converged_rate"]].values.tolist() == [["saliency", 8.0, 2, 0.5]]
    conv = pd.read_csv(root / "reports/metrics/convergence.csv")
    assert conv[["image", "converged", "steps", "passes"]].values.tolist() == [["a", 1, 3, 9], ["b", 0, 3, 9]]


def test_stage_refuses_a_nan_map_naming_method_and_image(tmp_path):
    _make_project(tmp_path)
    path = tmp_path / "data/attacks/saliency/eps8/b.npz"
    z = dict(np.load(path))
    z["map_gradcam"][5, 5] = np.nan
    np.savez(path, **z)
    proc = _run_stage(tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "error: gradcam: b (attack saliency): map has 1 NaN/infinite values (of 4096); refusing to use it"
    )
    assert not (tmp_path / "reports/metrics.json").exists()


def test_missing_contract_key_is_named(tmp_path):
    _make_project(tmp_path)
    path = tmp_path / "data/attacks/pgd/a.npz"
    z = dict(np.load(path))
    del z["map_saliency"]
    np.savez(path, **z)
    with pytest.raises(DeepSaliencyError, match=r"pgd/a.npz: missing map_saliency"):
        tables.load_attacks([("pgd", 8.0)], ["a"], METHODS, tmp_path / "data/attacks")
