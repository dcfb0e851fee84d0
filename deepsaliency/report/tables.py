"""The report's tables, selected and reshaped from the metrics stage's outputs.

Ranks, confidence intervals, p values, areas under r-vs-ε curves and convergence rates are read from
``reports/metrics.json`` (:func:`deepsaliency.metrics.tables.summarize`); nothing here tests or resamples.
The cells that metrics.json does not hold yet (the attack × method transfer matrix, the per-method columns of
the leaderboard) are the mean over images of the per-image rows of ``reports/metrics/*.csv``, at one budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DeepSaliencyError
from ..methods import METHODS
from .load import ATTACK_ORDER, PGD, RANDOM, adversarials, ordered, originals

#: Leaderboard columns: key → header (their meaning is written in the report template).
LEADERBOARD_COLUMNS = {
    "rank": "rank", "method": "method", "adv_target": "r(adv, target) own attack ↓",
    "ci_low": "95 % CI low", "ci_high": "95 % CI high", "n": "n", "orig_target": "r(orig, target) before",
    "moved": "moved by", "worst_moved": "worst moved by, any attack ↓", "linf_255": "attack L∞ (/255)",
    "top1_kept": "top-1 kept", "converged_rate": "converged", "flag": "flag", "deletion": "deletion AUC ↓",
    "deletion_gain": "deletion: random − method ↑", "insertion": "insertion AUC ↑",
    "insertion_gain": "insertion: method − random ↑", "rank_auc": "rank by area",
    "auc": "area under r(adv, target) vs ε ↓",
}  # fmt: skip
#: Columns that come from ``reports/metrics.json``'s ``leaderboard`` block, not from the CSV tables.
RANKING_COLUMNS = ("rank", "ci_low", "ci_high", "n", "rank_auc", "auc", "converged_rate", "flag")
#: Leaderboard columns left out of the shown table when every row is empty (one budget, old metrics.json).
OPTIONAL_COLUMNS = ("rank_auc", "auc", "converged_rate", "flag")


def _require(df: pd.DataFrame | None, columns: Iterable[str], what: str) -> pd.DataFrame:
    if df is None:
        raise DeepSaliencyError(f"{what}: the table is missing")
    lack = [c for c in columns if c not in df.columns]
    if lack:
        raise DeepSaliencyError(f"{what}: columns {list(df.columns)} lack {lack}")
    return df


def pick_budget(budgets: Iterable[float], eps: float | None) -> float | None:
    """``eps`` if it is one of ``budgets`` (/255), else the largest budget; None without budgets."""
    values = sorted({float(b) for b in budgets if b == b})
    match = [b for b in values if eps is not None and math.isclose(b, eps, rel_tol=1e-6, abs_tol=1e-9)]
    return match[0] if match else (values[-1] if values else None)


def attack_budgets(df: pd.DataFrame | None, eps: float | None) -> dict[str, float]:
    """Per attack of ``df`` (column ``eps``), the budget the report shows: :func:`pick_budget`; {} without budgets."""
    if df is None or not {"attack", "eps"} <= set(df.columns):
        return {}
    e = pd.to_numeric(df["eps"], errors="coerce")
    chosen = {str(a): pick_budget(g.dropna(), eps) for a, g in e.groupby(df["attack"].astype(str))}
    return {a: b for a, b in chosen.items() if b is not None}


def at_budget(df: pd.DataFrame | None, eps: float | None) -> pd.DataFrame | None:
    """The rows of ``df`` at each attack's shown budget (:func:`attack_budgets`); rows without a budget
    (originals, PGD, a table without ``eps``) are kept. None stays None."""
    budgets = attack_budgets(df, eps)
    if df is None or not budgets:
        return df
    e = pd.to_numeric(df["eps"], errors="coerce")
    chosen = df["attack"].astype(str).map(budgets).astype(float)
    return df[e.isna() | np.isclose(e, chosen, rtol=1e-6, atol=1e-9)]


def transfer_matrix(
    similarity: pd.DataFrame,
    metric: str = "pearson",
    pair: str = "adv_target",
    attacks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Attack (rows) × evaluated method (columns): ``metric`` for ``pair``, mean over images.

    Args:
        similarity: the long map-similarity table (columns image, attack, method, pair, ``metric``), at one
            budget (see :func:`at_budget`).
        metric: e.g. ``pearson``.
        pair: ``adv_target`` (adversarial map vs the target map: how far the attack pulled it),
            ``orig_adv`` (map before vs after) or ``orig_target``.
        attacks, methods: row and column order (None → as found, in :data:`ATTACK_ORDER` / METHODS order).

    Returns:
        The matrix; a cell with no rows is NaN, attacks without any row for ``pair`` are left out.

    Raises:
        DeepSaliencyError: a column is missing.
    """
    _require(similarity, ["attack", "method", "pair", metric], "map similarity")
    sub = similarity[similarity["pair"] == pair]
    mat = sub.pivot_table(index="attack", columns="method", values=metric, aggfunc="mean", sort=False)
    rows = ordered(mat.index, ATTACK_ORDER) if attacks is None else [a for a in attacks if a in mat.index]
    cols = ordered(mat.columns, METHODS) if methods is None else list(methods)
    mat = mat.reindex(index=rows, columns=cols)
    mat.index.name, mat.columns.name = "attack", "method"
    return mat


def _similarity_columns(out: pd.DataFrame, similarity: pd.DataFrame, metric: str) -> None:
    adv_t = transfer_matrix(similarity, metric, "adv_target")
    orig_t = transfer_matrix(similarity, metric, "orig_target")
    diagonal = pd.Series({m: adv_t.loc[m, m] for m in adv_t.index if m in adv_t.columns}, dtype=float)
    before = pd.Series({m: orig_t.loc[m, m] for m in orig_t.index if m in orig_t.columns}, dtype=float)
    out["adv_target"] = diagonal.reindex(out.index)
    out["orig_target"] = before.reindex(out.index)
    out["worst_moved"] = (adv_t - orig_t.reindex_like(adv_t)).max().reindex(out.index)
    out["moved"] = out["adv_target"] - out["orig_target"]


def _faithfulness_columns(out: pd.DataFrame, faithfulness: pd.DataFrame) -> None:
    orig = originals(faithfulness).groupby("method")[["deletion", "insertion"]].mean()
    for col in ("deletion", "insertion"):
        out[col] = orig[col].reindex(out.index)
    if RANDOM in orig.index:
        out["deletion_gain"] = orig.loc[RANDOM, "deletion"] - out["deletion"]
        out["insertion_gain"] = out["insertion"] - orig.loc[RANDOM, "insertion"]


def _ranking_columns(out: pd.DataFrame, board: dict, majority: float | None) -> None:
    """metrics.json's numbers per method; ``flag`` as written there, else "not converged" when the converged rate
    is below the metrics stage's ``converged_majority``."""
    for m in out.index:
        entry = board.get(m) or {}
        ci, auc = entry.get("r_adv_target") or {}, entry.get("auc") or {}
        values = {
            "rank": entry.get("rank"),
            "ci_low": ci.get("ci_low"),
            "ci_high": ci.get("ci_high"),
            "n": ci.get("n"),
            "rank_auc": entry.get("rank_auc"),
            "auc": auc.get("mean"),
            "converged_rate": entry.get("converged_rate"),
        }
        for col, value in values.items():
            out.loc[m, col] = np.nan if value is None else float(value)
        rate = entry.get("converged_rate")
        below = majority is not None and rate is not None and float(rate) < majority
        out.loc[m, "flag"] = str(entry.get("flag") or ("not converged" if below else ""))


def leaderboard(
    similarity: pd.DataFrame | None,
    faithfulness: pd.DataFrame | None = None,
    quality: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
    metric: str = "pearson",
    ranking: dict | None = None,
) -> pd.DataFrame:
    """The robustness leaderboard: per explanation method, how far its own attack moved it, next to its faithfulness.

    Not ranked here: ``rank``, the 95 % CI and ``n`` of ``adv_target``, ``rank_auc``/``auc`` (several budgets),
    ``converged_rate`` and ``flag`` (or ``converged_majority``) are read from ``ranking``, the ``leaderboard`` block
    of ``reports/metrics.json`` (:func:`deepsaliency.metrics.summary.leaderboard`: paired Wilcoxon signed-rank
    tests over images, Holm-corrected; the attack of Dombrowski et al. 2019).
    Rows: by rank, then metrics.json's order, then ``adv_target`` (Pearson r of the
    own map on x_adv with the target map, in [-1, 1], lowest = most robust). Methods without an attack of their own
    come last, ordered by ``worst_moved`` (largest ``adv_target − orig_target`` over all attacks).

    Args:
        similarity: the long map-similarity table at one budget (or None).
        faithfulness: the faithfulness table (``random`` rows are the baseline) or None.
        quality: the attack-quality table (image, attack, linf_255, top1_kept) or None.
        methods: rows, in order (None → every method found in the tables).
        metric: the similarity column.
        ranking: ``metrics["leaderboard"]`` or None.

    Returns:
        Columns of :data:`LEADERBOARD_COLUMNS` (keys); a number that is not available is NaN, a flag "".
    """
    found: list[str] = []
    for df in (similarity, faithfulness):
        if df is not None and "method" in df.columns:
            found += [m for m in df["method"].dropna().unique() if m != RANDOM]
    rows = list(methods) if methods is not None else ordered(found, METHODS)
    out = pd.DataFrame(
        index=pd.Index(rows, name="method"), columns=[k for k in LEADERBOARD_COLUMNS if k != "method"], dtype=float
    )
    out["flag"] = ""
    if similarity is not None and {"attack", "method", "pair", metric} <= set(similarity.columns):
        _similarity_columns(out, similarity, metric)
    if quality is not None and "attack" in quality.columns:
        for col in [c for c in ("linf_255", "top1_kept") if c in quality.columns]:
            out[col] = quality.groupby("attack")[col].mean().reindex(out.index)
    if faithfulness is not None and {"method", "deletion", "insertion"} <= set(faithfulness.columns):
        _faithfulness_columns(out, faithfulness)
    board = (ranking.get("methods") or {}) if isinstance(ranking, dict) else {}
    majority = ranking.get("converged_majority") if isinstance(ranking, dict) else None
    _ranking_columns(out, board, None if majority is None else float(majority))
    out = out.reset_index()
    ranked = out["adv_target"].notna() | out["rank"].notna()
    # Within a shared rank, metrics.json's order (by median over images), then the mean.
    out["_order"] = [list(board).index(m) if m in board else len(board) for m in out["method"]]
    order = (
        out[ranked]
        .sort_values(["rank", "_order", "adv_target", "worst_moved"], kind="stable", na_position="last")
        .index
    )
    rest = out[~ranked].sort_values("worst_moved", kind="stable", na_position="last").index
    return out.loc[list(order) + list(rest)].reset_index(drop=True)[list(LEADERBOARD_COLUMNS)]


def random_baseline(faithfulness: pd.DataFrame | None) -> dict[str, float] | None:
    """Mean deletion and insertion AUC of the random map on the original images, or None when absent."""
    if faithfulness is None or "method" not in faithfulness.columns:
        return None
    r = originals(faithfulness)
    r = r[r["method"] == RANDOM]
    if r.empty:
        return None
    return {"deletion": float(r["deletion"].mean()), "insertion": float(r["insertion"].mean())}


def faithfulness_summary(faithfulness: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Method × {deletion, insertion} AUC (in [0, 1]) on x and on x_adv of the method's own attack, mean over images."""
    _require(faithfulness, ["method", "deletion", "insertion"], "faithfulness")
    orig = originals(faithfulness).groupby("method")[["deletion", "insertion"]].mean()
    adv = adversarials(faithfulness)
    own = adv[adv["method"] == adv["attack"]].groupby("method")[["deletion", "insertion"]].mean()
    names = [n for n in ordered(faithfulness["method"].unique(), [*(methods or METHODS), RANDOM]) if n != RANDOM]
    names += [RANDOM] if RANDOM in set(faithfulness["method"]) else []  # the baseline last
    return pd.DataFrame(
        {
            "deletion on x ↓": orig["deletion"].reindex(names),
            "insertion on x ↑": orig["insertion"].reindex(names),
            "deletion on x_adv (own attack)": own["deletion"].reindex(names),
            "insertion on x_adv (own attack)": own["insertion"].reindex(names),
        }
    ).rename_axis("method")


def faithfulness_uncertainty(table: pd.DataFrame, metrics: dict | None, fmt: Any = str) -> tuple[pd.DataFrame, int]:
    """``table`` (:func:`faithfulness_summary`) with the originals' 95 % CIs (text, numbers written by ``fmt``) and
    p vs random from metrics.json, and the number of images n (0 when metrics.json has none)."""
    orig = ((metrics or {}).get("faithfulness") or {}).get("original") if isinstance(metrics, dict) else None
    if not isinstance(orig, dict) or not orig:
        return table, 0
    out = table.copy()
    at = list(out.columns).index("insertion on x ↑") + 1
    for kind in ("insertion", "deletion"):  # inserted in reverse so that deletion's columns come first
        cells = [(orig.get(m) or {}).get(kind) or {} for m in out.index]
        ci = [f"[{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]" if "ci_low" in c else None for c in cells]
        out.insert(at, f"{kind} p vs random", [c.get("p_random", np.nan) for c in cells])
        out.insert(at, f"{kind} on x: 95 % CI", ci)
    ns = {int(c[k]["n"]) for c in orig.values() if isinstance(c, dict) for k in ("deletion", "insertion") if k in c}
    return out, max(ns) if ns else 0


def quality_summary(quality: pd.DataFrame, attacks: Sequence[str] | None = None) -> pd.DataFrame:
    """Attack × attack-quality metric (norms in /255), mean over images, numeric columns only."""
    _require(quality, ["attack"], "attack quality")
    num = quality.drop(columns=[c for c in ("label_orig", "label_adv", "image") if c in quality.columns])
    num = num.select_dtypes(include=[np.number, "bool"]).astype(float)
    out = num.groupby(quality["attack"]).mean()
    return out.reindex(ordered(out.index, attacks or ATTACK_ORDER))


def own_map_shift(similarity: pd.DataFrame) -> pd.DataFrame:
    """Per attack, every similarity metric of the attacked method's own map (PGD: mean over methods), per pair."""
    _require(similarity, ["attack", "method", "pair"], "map similarity")
    metrics = [c for c in ("pearson", "spearman", "ssim", "top_k", "mse", "psnr", "com_shift") if c in similarity]
    own = similarity[(similarity["attack"] == similarity["method"]) | (similarity["attack"] == PGD)]
    out = own.groupby(["attack", "pair"], sort=False)[metrics].mean()
    order = {a: i for i, a in enumerate(ordered(out.index.get_level_values(0), ATTACK_ORDER))}
    pairs = {"orig_adv": 0, "orig_target": 1, "adv_target": 2}
    return out.sort_index(
        key=lambda idx: idx.map(order) if idx.name == "attack" else idx.map(lambda p: pairs.get(p, 9))
    )


def manipulability_table(table: pd.DataFrame) -> pd.DataFrame:
    """``reports/metrics/manipulability.csv`` (method, eps /255, n, mean r(adv, target) in [-1, 1], 95 % CI,
    converged_rate in [0, 1]) in the metrics stage's row order, with readable headers.

    Raises:
        DeepSaliencyError: ``method``, ``eps`` or ``mean`` is missing.
    """
    _require(table, ["method", "eps", "mean"], "manipulability")
    names = {
        "eps": "ε (/255)",
        "mean": "r(adv, target)",
        "ci_low": "95 % CI low",
        "ci_high": "95 % CI high",
        "converged_rate": "converged",
    }
    return table.rename(columns=names).reset_index(drop=True)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": value}``."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}
