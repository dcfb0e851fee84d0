"""The summary tables behind the report, computed by the metrics stage from its per-image tables: the leaderboard's
per-method numbers, the transfer matrices, each attack's own-map shift, the attack-quality and faithfulness
summaries, all means over images at the budget the report shows (each attack's :func:`pick_budget`).

The report (:mod:`deepsaliency.report`) reads them from ``reports/metrics/<table>.csv`` (:data:`SUMMARY_TABLES`)
and only formats them; the means with confidence intervals and the ranks are in ``reports/metrics.json``
(:mod:`.summary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import PGD
from ..errors import DeepSaliencyError
from ..methods import METHODS

#: Attacks in report order (explanation attacks first, then PGD); others follow alphabetically.
ATTACK_ORDER = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise", "pgd")
#: Name of the random baseline map in the faithfulness tables.
RANDOM = "random"
#: Value of ``attack`` that marks rows computed on the original images.
ORIGINAL = "none"
#: The per-method leaderboard numbers (means over images at the shown budget), in column order.
LEADERBOARD_NUMBERS = (
    "adv_target", "orig_target", "moved", "worst_moved", "linf_255", "top1_kept", "deletion", "deletion_gain",
    "insertion", "insertion_gain",
)  # fmt: skip
#: ``reports/metrics/<name>.csv`` → its index columns.
SUMMARY_TABLES = {
    "leaderboard": ["method"],
    "transfer_adv_target": ["attack"],
    "transfer_orig_adv": ["attack"],
    "own_map_shift": ["attack", "pair"],
    "attack_quality_summary": ["attack"],
    "faithfulness_summary": ["method"],
}


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """``names`` without duplicates: those in ``order`` first (in that order), the rest alphabetically."""
    names = list(dict.fromkeys(names))
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)


def _is_original(attack: pd.Series) -> pd.Series:
    return attack.isna() | attack.astype(str).str.lower().isin(["", ORIGINAL, "original", "nan"])


def originals(df: pd.DataFrame) -> pd.DataFrame:
    """Rows computed on the original images: ``which == original``, else ``attack`` empty or ``none``, else all."""
    if "which" in df.columns:
        return df[df["which"].astype(str).str.lower().str.startswith("orig")]
    if "attack" in df.columns:
        return df[_is_original(df["attack"])]
    return df


def adversarials(df: pd.DataFrame) -> pd.DataFrame:
    """Rows computed on adversarial images (an attack named, not the original)."""
    if "attack" not in df.columns:
        return df.iloc[0:0]
    if "which" in df.columns:
        df = df[~df["which"].astype(str).str.lower().str.startswith("orig")]
    return df[~_is_original(df["attack"])]


def require_columns(df: pd.DataFrame | None, columns: Iterable[str], what: str) -> pd.DataFrame:
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
    require_columns(similarity, ["attack", "method", "pair", metric], "map similarity")
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
    require_columns(faithfulness, ["method", "deletion", "insertion"], "faithfulness")
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


def quality_summary(quality: pd.DataFrame, attacks: Sequence[str] | None = None) -> pd.DataFrame:
    """Attack × attack-quality metric (norms in /255), mean over images, numeric columns only."""
    require_columns(quality, ["attack"], "attack quality")
    num = quality.drop(columns=[c for c in ("label_orig", "label_adv", "image") if c in quality.columns])
    num = num.select_dtypes(include=[np.number, "bool"]).astype(float)
    out = num.groupby(quality["attack"]).mean()
    return out.reindex(ordered(out.index, attacks or ATTACK_ORDER))


def own_map_shift(similarity: pd.DataFrame) -> pd.DataFrame:
    """Per attack, every similarity metric of the attacked method's own map (PGD: mean over methods), per pair."""
    require_columns(similarity, ["attack", "method", "pair"], "map similarity")
    metrics = [c for c in ("pearson", "spearman", "ssim", "top_k", "mse", "psnr", "com_shift") if c in similarity]
    own = similarity[(similarity["attack"] == similarity["method"]) | (similarity["attack"] == PGD)]
    out = own.groupby(["attack", "pair"], sort=False)[metrics].mean()
    order = {a: i for i, a in enumerate(ordered(out.index.get_level_values(0), ATTACK_ORDER))}
    pairs = {"orig_adv": 0, "orig_target": 1, "adv_target": 2}
    return out.sort_index(
        key=lambda idx: idx.map(order) if idx.name == "attack" else idx.map(lambda p: pairs.get(p, 9))
    )


def leaderboard_numbers(
    similarity: pd.DataFrame | None,
    faithfulness: pd.DataFrame | None = None,
    quality: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
    metric: str = "pearson",
) -> pd.DataFrame:
    """The leaderboard's per-method numbers (:data:`LEADERBOARD_NUMBERS`), means over images at one budget.

    ``adv_target``/``orig_target``: ``metric`` (Pearson r in [-1, 1]) of the method's own map on x_adv / on x with
    the target map, under the attack on that method (Dombrowski et al. 2019); ``moved`` their difference;
    ``worst_moved`` the largest such difference under any explanation attack; ``linf_255`` (/255) and ``top1_kept``
    (fraction) of the method's own attack; deletion/insertion AUC in [0, 1] on the originals and the gains over
    the random map (> 0 = better than random, Petsiuk et al. 2018). A number that is not available is NaN.

    Args:
        similarity, faithfulness, quality: the per-image tables at one budget (:func:`at_budget`), or None.
        methods: rows, in order (None → every method found in the tables, in METHODS order).
        metric: the similarity column.

    Returns:
        Index ``method``, columns :data:`LEADERBOARD_NUMBERS`.
    """
    found: list[str] = []
    for df in (similarity, faithfulness):
        if df is not None and "method" in df.columns:
            found += [m for m in df["method"].dropna().unique() if m != RANDOM]
    rows = list(methods) if methods is not None else ordered(found, METHODS)
    out = pd.DataFrame(index=pd.Index(rows, name="method"), columns=list(LEADERBOARD_NUMBERS), dtype=float)
    if similarity is not None and {"attack", "method", "pair", metric} <= set(similarity.columns):
        _similarity_columns(out, similarity, metric)
    if quality is not None and "attack" in quality.columns:
        for col in [c for c in ("linf_255", "top1_kept") if c in quality.columns]:
            out[col] = quality.groupby("attack")[col].mean().reindex(out.index)
    if faithfulness is not None and {"method", "deletion", "insertion"} <= set(faithfulness.columns):
        _faithfulness_columns(out, faithfulness)
    return out


def summary_tables(
    similarity: pd.DataFrame | None,
    quality: pd.DataFrame | None,
    faithfulness: pd.DataFrame | None,
    eps: float | None = None,
    methods: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of :data:`SUMMARY_TABLES` at the shown budget ``eps`` (/255; each attack's :func:`pick_budget`).

    Args:
        similarity, quality, faithfulness: the metrics stage's per-image tables (None = not available).
        eps: the budget the leaderboard ranks at (``leaderboard.eps`` of metrics.json, else ``report.rank_eps``).
        methods, attacks: row/column order (``explain.methods``; ``attack.methods`` and pgd); None → as found.

    Returns:
        ``{name: table}``; a table whose input is missing or lacks a column is left out.
    """
    sim, qual, faith = (at_budget(df, eps) for df in (similarity, quality, faithfulness))
    out = {"leaderboard": leaderboard_numbers(sim, faith, qual, methods)}
    jobs = {
        "transfer_adv_target": lambda: transfer_matrix(sim, "pearson", "adv_target", methods=methods),
        "transfer_orig_adv": lambda: transfer_matrix(sim, "pearson", "orig_adv", methods=methods),
        "own_map_shift": lambda: own_map_shift(sim),
        "attack_quality_summary": lambda: quality_summary(qual, attacks),
        "faithfulness_summary": lambda: faithfulness_summary(faith, methods),
    }
    for name, job in jobs.items():
        try:
            out[name] = job()
        except DeepSaliencyError:
            continue  # the report says which table is missing
    return out


def write_summary_tables(folder: str | Path, tables: dict[str, pd.DataFrame]) -> None:
    """``<folder>/<name>.csv`` for each table, index columns first, floats written exactly (round-trip)."""
    for name, df in tables.items():
        df.to_csv(Path(folder) / f"{name}.csv", index=True)  # full precision: the report shows these numbers
