"""Confidence intervals and the paired ranking (deepsaliency.metrics.statistics); the summary and the report's use
of it: tests/test_summary.py."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from deepsaliency.errors import ParamError
from deepsaliency.metrics import statistics as st

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


# ---------------------------------------------------------------- bootstrap confidence intervals


def test_ci_contains_the_sample_mean_and_shrinks_as_n_grows():
    rng = np.random.default_rng(7)
    widths, scaled = {}, {}
    for n in (16, 64, 256, 1024):
        x = rng.normal(5.0, 1.0, n)  # known mean 5, sd 1
        ci = st.bootstrap_mean(x, n_resamples=2000, seed=0)
        assert ci["n"] == n and ci["mean"] == pytest.approx(x.mean(), abs=1e-12)
        assert ci["ci_low"] < ci["mean"] < ci["ci_high"]
        widths[n] = ci["ci_high"] - ci["ci_low"]
        scaled[n] = widths[n] / x.std(ddof=1)
        # A 95 % interval of a mean is ≈ 2 · 1.96 · s / √n wide.
        assert widths[n] == pytest.approx(2 * 1.96 * x.std(ddof=1) / np.sqrt(n), rel=0.2)
    # It shrinks as n grows; in units of the sample's sd, 4× the images → about half the width.
    assert widths[16] > widths[64] > widths[256] > widths[1024]
    for small, large in ((16, 64), (64, 256), (256, 1024)):
        assert 1.6 < scaled[small] / scaled[large] < 2.4
    big = st.bootstrap_mean(rng.normal(5.0, 1.0, 1024), seed=0)
    assert big["ci_low"] < 5.0 < big["ci_high"]


def test_ci_is_seeded_and_bca_matches_scipy():
    x = np.random.default_rng(3).exponential(1.0, 40)
    a, b = st.bootstrap_mean(x, 2000, seed=0), st.bootstrap_mean(x, 2000, seed=0)
    assert json.dumps(a) == json.dumps(b)  # byte-identical reruns
    assert st.bootstrap_mean(x, 2000, seed=1)["ci_low"] != a["ci_low"]
    ref = stats.bootstrap((x,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(0))
    ref = ref.confidence_interval
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)


@pytest.mark.parametrize("values", [[0.42], [0.3, 0.3, 0.3, 0.3], [True, True, True]])
def test_degenerate_samples_give_a_point_interval_not_nan(values):
    ci = st.bootstrap_mean(values)
    m = float(np.mean(values))
    assert ci == {"mean": m, "ci_low": m, "ci_high": m, "n": len(values)}


def test_two_values_and_an_outlier_stay_finite():
    for values in ([0.0, 1.0], [0.5, 0.5, 0.5, 0.5, 3.0]):
        ci = st.bootstrap_mean(values)
        assert np.isfinite([ci["ci_low"], ci["ci_high"]]).all()
        assert min(values) <= ci["ci_low"] <= ci["mean"] <= ci["ci_high"] <= max(values)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: st.bootstrap_mean([]), r"^values: no value given"),
        (
            lambda: st.bootstrap_mean([0.1, np.nan]),
            r"^values: value nan at position 1 is not allowed \(finite numbers only\)$",
        ),
        (
            lambda: st.bootstrap_mean([0.1, 0.2], n_resamples=10),
            r"^n_resamples: 10 is not allowed \(an integer ≥ 100\)$",
        ),
        (
            lambda: st.paired_ranking(pd.DataFrame({"a": [1.0], "b": [2.0]}), alpha=1.5),
            r"^alpha: 1.5 is not allowed \(a significance level in \(0, 1\)\)$",
        ),
        (lambda: st.paired_ranking(pd.DataFrame({"a": [1.0], "b": [np.nan]})), r"^values: method 'b' has no value"),
        (lambda: st.holm([0.2, 1.3]), r"^pvalues: 1.3 is not allowed"),
        (lambda: st.wilcoxon_p([1, 2], [1, 2, 3]), r"^x, y: lengths 2 and 3 are not allowed"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(call, message):
    with pytest.raises(ParamError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- Holm and the paired ranking


def test_holm_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 × (4, 3, 2, 1) = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(st.holm(p), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 0.2, 30)
    adj = st.holm(q)
    assert (adj >= q).all() and (adj <= np.minimum(1, 30 * q) + 1e-15).all()  # between raw and Bonferroni
    assert (np.diff(adj[np.argsort(q)]) >= 0).all()  # monotone in the raw p
    assert st.holm([]).size == 0


def test_identical_methods_share_a_rank():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, 20)
    values = pd.DataFrame({"a": base, "b": base.copy(), "c": base + 0.25})
    assert st.wilcoxon_p(base, base) == (1.0, 20)  # scipy alone gives NaN here
    ranks = st.paired_ranking(values)
    assert ranks.loc["a", "rank"] == ranks.loc["b", "rank"] == 1
    assert ranks.loc["c", "rank"] == 3  # competition ranking: 1, 1, 3


@pytest.mark.parametrize("n, separated", [(12, True), (5, False)])
def test_a_clear_shift_gets_its_own_rank_only_with_enough_images(n, separated):
    rng = np.random.default_rng(2)
    robust = rng.uniform(0.1, 0.5, n)
    values = pd.DataFrame(
        {
            "robust": robust,
            "fragile": robust + 0.3 + rng.uniform(0, 0.05, n),
            "also_fragile": robust + 0.3 + rng.uniform(0, 0.05, n),
        }
    )
    ranks = st.paired_ranking(values, alpha=0.05)
    pairs = st.pairwise_wilcoxon(values).set_index(["a", "b"])
    assert list(ranks.index)[0] == "robust" and ranks.loc["robust", "rank"] == 1
    if separated:  # the exact test's p is 2/2^12; Holm over 3 pairs keeps it far below 0.05
        assert ranks.loc["fragile", "rank"] == ranks.loc["also_fragile", "rank"] == 2
        assert (ranks["n"] == 12).all()
    else:  # 2/2^5 = 0.0625 > 0.05: no test can separate 5 images, so every method shares rank 1
        assert (ranks["rank"] == 1).all()
        assert (pairs["p"] >= 0.0625 - 1e-12).all()
