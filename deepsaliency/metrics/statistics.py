"""Uncertainty of the summary numbers: bootstrap confidence intervals and a paired ranking with shared ranks.

* :func:`bootstrap_mean`: the mean over images with a seeded 95 % bootstrap confidence interval
  (``scipy.stats.bootstrap``, BCa; Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993) and n.
* :func:`wilcoxon_p`: two-sided Wilcoxon signed-rank test of paired per-image values (``scipy.stats.wilcoxon``;
  Wilcoxon 1945), p = 1 when the pairs do not differ at all.
* :func:`holm`: Holm's step-down correction of a family of p-values (Holm 1979), written here because
  scipy has none and statsmodels is not a dependency.
* :func:`pairwise_wilcoxon` / :func:`paired_ranking`: every pair of methods tested over images, Holm-corrected,
  and ranks that differ only where the tests say so.

Everything is deterministic: each bootstrap draws from its own ``numpy.random.default_rng(seed)``, so a
number does not depend on which other numbers were computed before it, and reruns are byte-identical.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._validate import check_float, check_int
from ..errors import ParamError
from ..params import DEFAULTS as D  # the one default of each parameter: the params section's

#: Confidence level of every interval.
CONFIDENCE = 0.95
#: The test named in the report's captions.
TEST_NAME = "two-sided Wilcoxon signed-rank over images, Holm-corrected over the pairs"


@dataclass(frozen=True)
class Bootstrap:
    """``metrics.bootstrap`` in params.yaml: resamples per interval and the seed of every draw."""

    n_resamples: int = D.metrics.bootstrap.n_resamples
    seed: int = D.metrics.bootstrap.seed


def _finite_1d(values: Iterable[float], name: str) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, (np.ndarray, pd.Series)) else values, dtype=float).ravel()
    if arr.size == 0:
        raise ParamError(f"{name}: no value given (expected at least one finite number)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ParamError(
            f"{name}: value {float(arr[bad][0])!r} at position {int(np.argmax(bad))} is not allowed "
            "(finite numbers only)"
        )
    return arr


def bootstrap_mean(
    values: Iterable[float],
    n_resamples: int = D.metrics.bootstrap.n_resamples,
    seed: int = D.metrics.bootstrap.seed,
    confidence_level: float = CONFIDENCE,
) -> dict[str, float | int]:
    """The mean of ``values`` with its bootstrap confidence interval.

    Args:
        values: one number per image (any 1-D array-like of finite floats; bools count as 0/1).
        n_resamples: bootstrap resamples (≥ 100).
        seed: seed of ``numpy.random.default_rng`` for this interval alone.
        confidence_level: in (0, 1); 0.95 gives the 95 % interval.

    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``: floats in the units of ``values`` and the number of values.
        BCa interval (bias-corrected and accelerated; Efron 1987); where BCa is undefined the percentile
        interval. Two cases have no spread to resample, and the interval is the point [mean, mean]:
        n = 1 (a single image: the ``n`` says so) and constant values. Never NaN.

    Raises:
        ParamError: ``values`` is empty or holds NaN/inf, or ``n_resamples``/``confidence_level`` out of range.
    """
    x = _finite_1d(values, "values")
    n_resamples = check_int(n_resamples, "n_resamples", 100)
    check_float(confidence_level, "confidence_level", 0, 1, low_open=True, high_open=True, allowed="a number in (0, 1)")
    mean = float(np.mean(x))
    out = {"mean": mean, "ci_low": mean, "ci_high": mean, "n": int(x.size)}
    if x.size == 1 or np.ptp(x) == 0:
        return out
    for method in ("BCa", "percentile"):  # BCa is NaN when the jackknife has no spread (e.g. one outlier in 2)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DegenerateDataWarning for tiny n: handled by the fallback
            ci = stats.bootstrap(
                (x,),
                np.mean,
                n_resamples=int(n_resamples),
                confidence_level=confidence_level,
                method=method,
                rng=np.random.default_rng(seed),
            ).confidence_interval
        low, high = float(ci.low), float(ci.high)
        if math.isfinite(low) and math.isfinite(high):
            # Floating-point round-off can put a bound a few ulps beyond the mean of a near-constant sample.
            out["ci_low"], out["ci_high"] = min(low, mean), max(high, mean)
            return out
    return out  # unreachable in practice: the percentile interval of finite data is finite


def wilcoxon_p(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of the paired samples ``x`` and ``y`` (Wilcoxon 1945).

    Pairs where either value is NaN are dropped; zero differences are dropped too (``zero_method="wilcox"``,
    scipy's default). The null distribution, always deterministic: exact (``method="exact"``) for n ≤ 50 without
    tied |differences|; with ties and n ≤ 13 the exact permutation distribution (scipy enumerates all 2ⁿ sign
    flips); otherwise the normal approximation with tie correction (``method="approx"``).

    Returns:
        ``(p, n)``: p in [0, 1] and the number of pairs used. p = 1 when no pair differs (identical values do
        not differ; scipy itself would return NaN). With fewer than 6 non-zero differences the exact
        two-sided p is ≥ 0.0625, so nothing is significant at α = 0.05: that is the honest answer for few images.

    Raises:
        ParamError: ``x`` and ``y`` differ in length.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ParamError(f"x, y: lengths {a.size} and {b.size} are not allowed (paired samples of equal length)")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    if not np.any(d != 0):
        return 1.0, n
    nonzero = np.abs(d[d != 0])
    ties = np.unique(nonzero).size < nonzero.size
    if not ties and nonzero.size <= 50:
        method: str | stats.PermutationMethod = "exact"
    elif ties and nonzero.size <= 13:  # 2^13 ≤ 9999 resamples: scipy enumerates every sign flip, no randomness
        method = stats.PermutationMethod(n_resamples=9999, rng=np.random.default_rng(0))
    else:
        method = "approx"
    p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=method).pvalue)
    return (p if math.isfinite(p) else 1.0), n


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm, *A simple sequentially rejective multiple test procedure*,
    Scand. J. Statist. 6, 65–70, 1979), in the input order.

    Sorted ascending p₍₁₎ ≤ … ≤ p₍ₘ₎: adjusted p₍ᵢ₎ = max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎). Rejecting
    where the adjusted p < α controls the family-wise error rate at α. Written by hand: scipy has no Holm.

    Raises:
        ParamError: a p-value outside [0, 1] or NaN.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if p.size and not np.all((p >= 0) & (p <= 1)):
        raise ParamError(f"pvalues: {float(p[~((p >= 0) & (p <= 1))][0])!r} is not allowed (p-values in [0, 1])")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def _check_values(values: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(values, pd.DataFrame) or values.shape[1] == 0:
        raise ParamError("values: expected a DataFrame image × method with at least one method column")
    num = values.apply(pd.to_numeric, errors="coerce").astype(float)
    if np.isinf(num.to_numpy()).any():
        raise ParamError("values: an infinite value is not allowed (finite numbers or NaN for a missing image)")
    empty = [c for c in num.columns if num[c].notna().sum() == 0]
    if empty:
        raise ParamError(f"values: method {empty[0]!r} has no value for any image (at least one is needed)")
    return num


def pairwise_wilcoxon(values: pd.DataFrame) -> pd.DataFrame:
    """Every pair of methods (columns of ``values``, image × method) tested with :func:`wilcoxon_p`, Holm-corrected.

    Returns:
        One row per unordered pair: columns ``a``, ``b``, ``n`` (images where both have a value), ``p``, ``p_holm``.

    Raises:
        ParamError: ``values`` is not a DataFrame with method columns, or a method has no value.
    """
    num = _check_values(values)
    rows = []
    for a, b in itertools.combinations(num.columns, 2):
        p, n = wilcoxon_p(num[a].to_numpy(), num[b].to_numpy())
        rows.append({"a": a, "b": b, "n": n, "p": p})
    out = pd.DataFrame(rows, columns=["a", "b", "n", "p"])
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    return out


def paired_ranking(values: pd.DataFrame, alpha: float = D.report.alpha) -> pd.DataFrame:
    """Ranks of methods, lower values first, that differ only where a paired test over images says so.

    The rule (a "shared rank" variant of the compact letter display, chosen here and deterministic):

    1. methods are ordered by their median over images (ascending: lower = better here), ties by mean, then name;
    2. walking that order, the first method opens rank group 1; a method opens a new group only if it differs
       significantly (Holm-adjusted two-sided Wilcoxon p < ``alpha``, :func:`pairwise_wilcoxon`) from **every**
       method already in the current group; otherwise it joins the group and shares its rank;
    3. a group's rank is the position of its first method (competition ranking: 1, 1, 3, …).

    So two methods with identical per-image values always share a rank, and with fewer than 6 images no two
    methods can get different ranks at α = 0.05 (the exact test cannot reach it).

    Args:
        values: image × method (rows images, columns methods); NaN = no value for that image.
        alpha: family-wise significance level in (0, 1).

    Returns:
        Indexed by method in rank order; columns ``rank`` (int ≥ 1), ``median``, ``mean``, ``n`` (images with a value).

    Raises:
        ParamError: ``alpha`` out of (0, 1), ``values`` empty, infinite, or a method without any value.
    """
    alpha = check_float(alpha, "alpha", 0, 1, low_open=True, high_open=True, allowed="a significance level in (0, 1)")
    num = _check_values(values)
    summary = pd.DataFrame({"median": num.median(), "mean": num.mean(), "n": num.notna().sum().astype(int)})
    summary["name"] = summary.index.astype(str)
    order = list(summary.sort_values(["median", "mean", "name"], kind="stable").index)
    pairs = pairwise_wilcoxon(num[order])
    p_holm = {frozenset((r.a, r.b)): r.p_holm for r in pairs.itertuples()}
    ranks: dict[object, int] = {}
    group: list[object] = []
    rank = 1
    for i, m in enumerate(order):
        if group and all(p_holm[frozenset((m, g))] < alpha for g in group):
            group, rank = [], i + 1
        group.append(m)
        ranks[m] = rank
    out = summary.loc[order, ["median", "mean", "n"]]
    out.insert(0, "rank", [ranks[m] for m in order])
    out.index.name = "method"
    return out
