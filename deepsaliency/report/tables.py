"""The report's tables: the metrics stage's summary tables and metrics.json, selected, ordered and labelled.

Every number is read: the per-method leaderboard numbers, transfer matrices and summaries from
``reports/metrics/<table>.csv`` (:mod:`deepsaliency.metrics.aggregates`, written by the metrics stage), ranks,
confidence intervals, p values, areas under r-vs-ε curves and convergence rates from ``reports/metrics.json``
(:mod:`deepsaliency.metrics.summary`). Nothing here averages, tests or resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..metrics.aggregates import (  # re-exported: the report's public names since before the metrics stage had them
    at_budget,
    attack_budgets,
    faithfulness_summary,
    leaderboard_numbers,
    own_map_shift,
    pick_budget,
    quality_summary,
    random_baseline,
    require_columns,
    transfer_matrix,
)

__all__ = [
    "LEADERBOARD_COLUMNS", "OPTIONAL_COLUMNS", "RANKING_COLUMNS", "STABILITY_COLUMNS", "at_budget", "attack_budgets",
    "faithfulness_summary", "faithfulness_uncertainty", "flatten", "leaderboard", "manipulability_table",
    "own_map_shift", "pick_budget", "present_leaderboard", "quality_summary", "random_baseline", "require_columns",
    "transfer_matrix",
]  # fmt: skip

#: Leaderboard columns: key → header (their meaning is written in the report template).
LEADERBOARD_COLUMNS = {
    "rank": "rank", "method": "method", "adv_target": "r(adv, target) own attack ↓",
    "ci_low": "95 % CI low", "ci_high": "95 % CI high", "n": "n", "orig_target": "r(orig, target) before",
    "moved": "moved by", "worst_moved": "worst moved by, any attack ↓", "linf_255": "attack L∞ (/255)",
    "top1_kept": "top-1 kept", "converged_rate": "converged", "flag": "flag", "deletion": "deletion AUC ↓",
    "deletion_gain": "deletion: random − method ↑", "insertion": "insertion AUC ↑",
    "insertion_gain": "insertion: method − random ↑", "rank_auc": "rank by area",
    "auc": "area under r(adv, target) vs ε ↓", "sensitivity_max": "max-sensitivity ↓ [95 % CI]",
    "infidelity": "infidelity ↓ [95 % CI]",
}  # fmt: skip
#: Columns that come from ``reports/metrics.json``'s ``leaderboard`` block, not from the CSV tables.
RANKING_COLUMNS = ("rank", "ci_low", "ci_high", "n", "rank_auc", "auc", "converged_rate", "flag")
#: Leaderboard columns left out of the shown table when every row is empty (one budget, old metrics.json).
OPTIONAL_COLUMNS = ("rank_auc", "auc", "converged_rate", "flag", "sensitivity_max", "infidelity")
#: Stability metrics (Yeh et al. 2019) shown as ``mean [ci_low, ci_high]`` from ``leaderboard.stability``.
STABILITY_COLUMNS = ("sensitivity_max", "infidelity")


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


def _stability_columns(out: pd.DataFrame, stability: dict, fmt: Any) -> None:
    """metrics.json's ``leaderboard.stability`` per method as text ``mean [low, high]`` (numbers written by ``fmt``),
    None (shown as '—') where the stability stage did not measure the method."""
    for col in STABILITY_COLUMNS:
        cells = [(stability.get(m) or {}).get(col) or {} for m in out.index]
        out[col] = [f"{fmt(c['mean'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]" if c else None for c in cells]


def present_leaderboard(numbers: pd.DataFrame, ranking: dict | None = None, fmt: Any = str) -> pd.DataFrame:
    """The robustness leaderboard as shown: the metrics stage's per-method numbers next to metrics.json's ranks.

    Not computed here: ``numbers`` is ``reports/metrics/leaderboard.csv``
    (:func:`deepsaliency.metrics.aggregates.leaderboard_numbers`, index ``method``); ``rank``, the 95 % CI and ``n``
    of ``adv_target``, ``rank_auc``/``auc`` (several budgets), ``converged_rate`` and ``flag`` (or
    ``converged_majority``) and the stability columns are read from ``ranking``, the ``leaderboard`` block of
    ``reports/metrics.json`` (:func:`deepsaliency.metrics.summary.leaderboard`: paired Wilcoxon signed-rank tests
    over images, Holm-corrected; the attack of Dombrowski et al. 2019).
    Rows: by rank, then metrics.json's order, then ``adv_target`` (Pearson r of the own map on x_adv with the target
    map, in [-1, 1], lowest = most robust). Methods without an attack of their own come last, ordered by
    ``worst_moved`` (largest ``adv_target − orig_target`` over all attacks).

    Args:
        numbers: index ``method``, the columns of :data:`LEADERBOARD_NUMBERS` (NaN = not available).
        ranking: ``metrics["leaderboard"]`` or None; its ``stability`` block gives the max-sensitivity and
            infidelity columns (Yeh et al. 2019, the stability stage's 95 % CIs), None where not measured.
        fmt: how the stability cells write a number.

    Returns:
        Columns of :data:`LEADERBOARD_COLUMNS` (keys); a number that is not available is NaN, a flag "".
    """
    out = numbers.reindex(columns=[k for k in LEADERBOARD_COLUMNS if k != "method"]).astype(float)
    out.index.name = "method"
    out["flag"] = ""
    board = (ranking.get("methods") or {}) if isinstance(ranking, dict) else {}
    majority = ranking.get("converged_majority") if isinstance(ranking, dict) else None
    _ranking_columns(out, board, None if majority is None else float(majority))
    _stability_columns(out, (ranking.get("stability") or {}) if isinstance(ranking, dict) else {}, fmt)
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


def leaderboard(*args: Any, ranking: dict | None = None, fmt: Any = str, **kwargs: Any) -> pd.DataFrame:
    """:func:`present_leaderboard` of :func:`~deepsaliency.metrics.aggregates.leaderboard_numbers` (same arguments:
    per-image similarity, faithfulness, quality tables at one budget, methods, metric): what the metrics stage writes
    and the report shows, in one call (for notebooks and the contract test)."""
    return present_leaderboard(leaderboard_numbers(*args, **kwargs), ranking, fmt)


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


def manipulability_table(table: pd.DataFrame) -> pd.DataFrame:
    """``reports/metrics/manipulability.csv`` (method, eps /255, n, mean r(adv, target) in [-1, 1], 95 % CI,
    converged_rate in [0, 1]) in the metrics stage's row order, with readable headers.

    Raises:
        DeepSaliencyError: ``method``, ``eps`` or ``mean`` is missing.
    """
    require_columns(table, ["method", "eps", "mean"], "manipulability")
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
