"""Map similarity and attack quality on hand-computable inputs (the tables and the stage: test_metrics_stage.py)."""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
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
    top_k_intersection,
)
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
