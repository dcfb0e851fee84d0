"""The summary of the metrics stage: means over images with confidence intervals, the ranked leaderboard and the
manipulability curves — what ``reports/metrics.json`` and ``reports/metrics/manipulability.csv`` hold.

Every mean is ``{"mean", "ci_low", "ci_high", "n"}``: the mean over images, its seeded 95 % bootstrap interval
(:func:`~deepsaliency.metrics.statistics.bootstrap_mean`) and the number of images. Where a table has an ``eps``
column (one explanation attack per L∞ budget, /255), every attack's block is split by budget, keyed ``eps<e>``
(:func:`~deepsaliency.artifacts.eps_name`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import PGD, eps_name
from ..errors import DeepSaliencyError, ParamError
from ..params import DEFAULTS as D  # the one default of each parameter: the params section's
from .attack_quality import QUALITY_METRICS
from .similarity import MAP_METRICS
from .statistics import Bootstrap, bootstrap_mean, holm, paired_ranking, pairwise_wilcoxon, wilcoxon_p
from .tables import PAIRS, RANDOM, Settings

#: A method whose attack converged on fewer than this fraction of the images is flagged, not ranked as robust.
CONVERGED_MAJORITY = 0.5


def _ci(values: Iterable[float], boot: Bootstrap) -> dict[str, float | int]:
    return bootstrap_mean(np.asarray(list(values), dtype=float), boot.n_resamples, boot.seed)


def _per_image(df: pd.DataFrame, column: str) -> pd.Series:
    """One value per image: the mean of ``column`` over that image's rows (other methods, budgets)."""
    return df.groupby("image", sort=False)[column].mean()


def _cis(df: pd.DataFrame, columns: Iterable[str], boot: Bootstrap) -> dict[str, dict]:
    return {c: _ci(_per_image(df, c), boot) for c in columns}


def _faithfulness_group(g: pd.DataFrame, boot: Bootstrap) -> dict[str, dict]:
    """Per method: deletion and insertion {mean, ci_low, ci_high, n}; ``p_random`` = Holm-corrected (over the
    methods of the group) two-sided Wilcoxon p of the method against the :data:`RANDOM` map on the same images."""
    out = {m: _cis(gm, ["deletion", "insertion"], boot) for m, gm in g.groupby("method", sort=False)}
    if RANDOM not in out:
        return out
    tested = [m for m in out if m != RANDOM]
    for kind in ("deletion", "insertion"):
        wide = g.pivot_table(index="image", columns="method", values=kind, aggfunc="mean")
        raw = [wilcoxon_p(wide[m].to_numpy(), wide[RANDOM].to_numpy())[0] for m in tested]
        for m, p in zip(tested, holm(raw), strict=False):
            out[m][kind]["p_random"] = float(p)
    return out


def _eps_values(df: pd.DataFrame) -> list[float]:
    return sorted(float(e) for e in df["eps"].dropna().unique()) if "eps" in df.columns else []


def _by_budget(df: pd.DataFrame) -> Iterator[tuple[str | None, pd.DataFrame]]:
    """``(eps<e>, rows)`` per budget when ``df`` has an ``eps`` column, else one ``(None, df)``."""
    if "eps" not in df.columns:
        yield None, df
        return
    for e, g in df.groupby("eps", sort=True):
        yield eps_name(float(e)), g


def _nested(out: dict, key: str | None, value: Any) -> None:
    if key is None:
        out.update(value)
    else:
        out[key] = value


def _own_rows(similarity: pd.DataFrame) -> pd.DataFrame:
    """Each explanation attack's own map against its target: the manipulation's success per image."""
    return similarity[
        (similarity["pair"] == "adv_target")
        & (similarity["method"] == similarity["attack"])
        & (similarity["attack"] != PGD)
    ]


def _match_budget(budgets: list[float], rank_eps: float | None) -> float:
    eps = budgets[-1] if rank_eps is None else rank_eps
    match = [b for b in budgets if math.isclose(b, eps, rel_tol=1e-6, abs_tol=1e-9)]
    if not match:
        raise ParamError(
            f"rank_eps: {rank_eps!r} is not allowed (one of the budgets in the table: "
            f"{', '.join(f'{b:g}' for b in budgets)}, or null for the largest)"
        )
    return match[0]


def _converged_rates(convergence: pd.DataFrame | None, eps: float | None) -> dict[str, float]:
    """Per attacked method, the fraction of images whose attack converged at budget ``eps`` (all rows if None)."""
    if convergence is None or convergence.empty:
        return {}
    rows = convergence if eps is None else convergence[np.isclose(convergence["eps"].astype(float), eps)]
    return {str(a): float(g["converged"].mean()) for a, g in rows.groupby("attack", sort=False)}


def _auc_ranking(own: pd.DataFrame, metric: str, alpha: float, bootstrap: Bootstrap) -> tuple[dict, int]:
    """Per method the area under each image's metric-vs-ε curve (trapezoid, units r·(/255)), ranked."""
    from scipy.integrate import trapezoid

    auc: dict[str, dict[str, float]] = {}
    for (m, image), g in own.groupby(["method", "image"], sort=False):
        curve = g.groupby("eps")[metric].mean().sort_index()
        if len(curve) >= 2:
            auc.setdefault(m, {})[image] = float(trapezoid(curve.to_numpy(), curve.index.to_numpy(dtype=float)))
    if not auc:
        return {}, 0
    wide = pd.DataFrame(auc)
    by_auc = paired_ranking(wide, alpha)
    differ = int((pairwise_wilcoxon(wide)["p_holm"] < alpha).sum())
    return {
        m: {"rank_auc": int(by_auc.loc[m, "rank"]), "auc": _ci(wide[m].dropna(), bootstrap)} for m in by_auc.index
    }, differ


def leaderboard(
    similarity: pd.DataFrame,
    alpha: float = D.report.alpha,
    rank_eps: float | None = None,
    bootstrap: Bootstrap = Bootstrap(),
    metric: str = "pearson",
    convergence: pd.DataFrame | None = None,
) -> dict:
    """The ranking block of ``reports/metrics.json``: each attacked method's r(adv, target), ranked by paired tests.

    The quantity, per image: ``metric`` (Pearson r) between the attacked method's own map on ``x_adv`` and the
    target map (rows with ``pair == "adv_target"`` and ``method == attack``); lower = more robust. Ranks come from
    :func:`~deepsaliency.metrics.statistics.paired_ranking` (Wilcoxon signed-rank over images, Holm-corrected over
    the pairs of methods; shared ranks where no test rejects at ``alpha``).

    With an ``eps`` column (one attack per budget, /255), methods are ranked at ``rank_eps`` (None = the largest
    budget) and, with ≥ 2 budgets, also by the area under each image's r(adv, target)-vs-ε curve (trapezoid over ε,
    units r·(/255)). Without the column every row is the single budget and there is no area. With a
    ``convergence`` table (:func:`~deepsaliency.metrics.tables.convergence_table`) each method gets
    ``converged_rate`` at the ranked budget; below :data:`CONVERGED_MAJORITY` its rank does not mean robust
    (the report flags it).

    Returns:
        ``{"alpha", "images", "pairs", "pairs_differ", ["eps", "pairs_differ_auc"], "converged_majority",
        "methods": {method: {"rank", "r_adv_target", ["rank_auc", "auc", "converged_rate"]}}}`` with each value
        ``{mean, ci_low, ci_high, n}`` (:func:`bootstrap_mean`), methods in rank order; numbers only
        (``dvc metrics diff`` reads it). Empty dict when no attacked method has rows.

    Raises:
        ParamError: ``rank_eps`` is not one of the table's budgets, or ``alpha`` is out of (0, 1).
    """
    own = _own_rows(similarity)
    if own.empty:
        return {}
    budgets = _eps_values(own)
    at, eps = own, None
    out: dict[str, Any] = {"alpha": float(alpha)}
    if budgets:
        eps = _match_budget(budgets, rank_eps)
        at = own[np.isclose(own["eps"].astype(float), eps, rtol=1e-6, atol=1e-9)]
        out["eps"] = eps
    values = at.pivot_table(index="image", columns="method", values=metric, aggfunc="mean", sort=False)
    ranking = paired_ranking(values, alpha)
    pairs = pairwise_wilcoxon(values)
    out.update(images=int(len(values)), pairs=int(len(pairs)), pairs_differ=int((pairs["p_holm"] < alpha).sum()))
    methods = {
        m: {"rank": int(ranking.loc[m, "rank"]), "r_adv_target": _ci(values[m].dropna(), bootstrap)}
        for m in ranking.index
    }
    if len(budgets) >= 2:
        by_auc, differ = _auc_ranking(own, metric, alpha, bootstrap)
        if by_auc:
            out["pairs_differ_auc"] = differ
            for m, entry in by_auc.items():
                methods.setdefault(m, {}).update(entry)
    rates = _converged_rates(convergence, eps)
    if rates:
        out["converged_majority"] = CONVERGED_MAJORITY
        for m in methods:
            if m in rates:
                methods[m]["converged_rate"] = rates[m]
    out["methods"] = methods
    return out


def manipulability_table(
    similarity: pd.DataFrame,
    convergence: pd.DataFrame | None = None,
    bootstrap: Bootstrap = Bootstrap(),
    metric: str = "pearson",
) -> pd.DataFrame:
    """The manipulability curves: per attacked method and budget, the mean r(adv, target) with its 95 % CI.

    Returns:
        Columns ``method, eps, n, mean, ci_low, ci_high`` and, with a ``convergence`` table, ``converged_rate``
        (the fraction of images whose attack converged); sorted by method (table order), then ε.
    """
    own = _own_rows(similarity)
    if "eps" not in own.columns:
        own = own.assign(eps=np.nan)
    rows = []
    for (m, e), g in own.groupby(["method", "eps"], sort=False, dropna=False):
        rows.append({"method": m, "eps": float(e), **_ci(_per_image(g, metric), bootstrap)})
    table = pd.DataFrame(rows, columns=["method", "eps", "mean", "ci_low", "ci_high", "n"])
    table = table[["method", "eps", "n", "mean", "ci_low", "ci_high"]]
    if convergence is not None and not convergence.empty:
        rates = convergence.groupby(["attack", "eps"])["converged"].mean()
        keys = zip(table["method"], table["eps"], strict=True)
        table["converged_rate"] = [float(rates.get(key, np.nan)) for key in keys]
    order = {m: i for i, m in enumerate(dict.fromkeys(own["method"]))}
    return table.sort_values(
        ["method", "eps"], key=lambda c: c.map(order) if c.name == "method" else c, kind="stable"
    ).reset_index(drop=True)


def _attack_block(g: pd.DataFrame, attack: str, boot: Bootstrap) -> dict[str, dict]:
    block = _cis(g, [c for c in QUALITY_METRICS if c != "prob_orig"], boot)
    if attack == PGD:
        flipped = g.assign(flipped=(g["label_orig"] != g["label_adv"]).astype(float))
        block["success_rate"] = _ci(_per_image(flipped, "flipped"), boot)
    return block


def _similarity_block(g: pd.DataFrame, attack: str, boot: Bootstrap) -> dict[str, dict]:
    groups = {"all": g} if attack == PGD else {"diagonal": g[g["diagonal"]], "transfer": g[~g["diagonal"]]}
    entry = {}
    for name, gg in groups.items():
        per_pair = {p: _cis(gp, MAP_METRICS, boot) for p, gp in gg.groupby("pair", sort=False)}
        if per_pair:
            entry[name] = {p: per_pair[p] for p in PAIRS if p in per_pair}
    return entry


def summarize(
    similarity: pd.DataFrame,
    quality: pd.DataFrame,
    faithfulness: pd.DataFrame,
    settings: Settings = Settings(),
    convergence: pd.DataFrame | None = None,
) -> dict:
    """The summary written to ``reports/metrics.json``: means over images with 95 % CIs, nested for ``dvc metrics``.

    Where a group has several rows per image (the transfer methods), they are averaged per image first, so the
    interval is over images. With an ``eps`` column, each attack's block below is one level deeper: per budget
    ``eps<e>`` (PGD's own budget included).

    * ``attack.<attack>.<quality metric>`` (and ``attack.pgd.success_rate``, the fraction of labels flipped);
      ``attack.<attack>.converged_rate`` and ``steps``/``passes`` means where the convergence table has the run;
    * ``similarity.<attack>.diagonal.<pair>.<metric>``: the attacked method's own map;
      ``similarity.<attack>.transfer.<pair>.<metric>``: mean over the other methods;
      ``similarity.pgd.all.orig_adv.<metric>``: mean over every method;
    * ``faithfulness.original.<method>`` and ``faithfulness.<attack>.<method>`` with ``{deletion, insertion}``,
      with ``p_random``: Holm-corrected Wilcoxon p against the random map on the same images (absent when the
      group has no random map);
    * ``leaderboard``: :func:`leaderboard` at ``settings.rank_eps`` and ``settings.alpha`` (absent without rows).

    Empty groups are left out (never a NaN). Per-method detail stays in the CSV tables.

    Raises:
        DeepSaliencyError: a value is NaN or infinite (see :func:`assert_finite`).
        ParamError: ``settings.rank_eps`` is not a budget of the table.
    """
    boot = settings.bootstrap
    out: dict[str, Any] = {"images": int(faithfulness["image"].nunique()) if len(faithfulness) else 0}
    out["attack"], out["similarity"], out["faithfulness"] = {}, {}, {}
    conv = convergence if convergence is not None else pd.DataFrame(columns=["attack", "eps", "image"])
    for a, ga in quality.groupby("attack", sort=False):
        out["attack"][a] = {}
        for key, g in _by_budget(ga):
            block = _attack_block(g, str(a), boot)
            runs = conv[conv["attack"] == a]
            if key is not None and len(runs):
                runs = runs[[eps_name(float(e)) == key for e in runs["eps"]]]
            if len(runs):
                block.update(
                    converged_rate=_ci(_per_image(runs, "converged"), boot), **_cis(runs, ["steps", "passes"], boot)
                )
            _nested(out["attack"][a], key, block)
    for a, ga in similarity.groupby("attack", sort=False):
        out["similarity"][a] = {}
        for key, g in _by_budget(ga):
            _nested(out["similarity"][a], key, _similarity_block(g, str(a), boot))
    for a, ga in faithfulness.groupby("attack", sort=False):
        name = "original" if a == "none" else str(a)
        out["faithfulness"][name] = {}
        for key, g in _by_budget(ga):
            _nested(out["faithfulness"][name], None if a == "none" else key, _faithfulness_group(g, boot))
    board = (
        leaderboard(similarity, settings.alpha, settings.rank_eps, boot, convergence=convergence)
        if len(similarity)
        else {}
    )
    if board:
        out["leaderboard"] = board
    assert_finite(out)
    return out


def assert_finite(tree: Any, path: str = "metrics") -> None:
    """Raise :class:`DeepSaliencyError` naming the first NaN/infinite number in a nested dict."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            assert_finite(v, f"{path}.{k}")
    elif isinstance(tree, (float, int, np.floating, np.integer)) and not isinstance(tree, bool):
        if not math.isfinite(float(tree)):
            raise DeepSaliencyError(f"{path}: {tree!r} is not finite; refusing to write a NaN/infinite metric")


def assert_finite_table(df: pd.DataFrame, name: str) -> None:
    """Raise :class:`DeepSaliencyError` if a numeric column of ``df`` holds NaN/inf (names table, column and row)."""
    numeric = df.select_dtypes(include=[np.number, "bool"]).astype(float)
    bad = ~np.isfinite(numeric.to_numpy())
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DeepSaliencyError(
            f"{name}: column {numeric.columns[c]!r} row {r} is {numeric.iat[r, c]!r}; "
            "refusing to write a NaN/infinite metric"
        )


def rounded(tree: Any, digits: int = 6) -> Any:
    """``tree`` with every float rounded to ``digits`` decimals (readable ``dvc metrics`` output)."""
    if isinstance(tree, dict):
        return {k: rounded(v, digits) for k, v in tree.items()}
    if isinstance(tree, float):
        return round(tree, digits)
    return tree
