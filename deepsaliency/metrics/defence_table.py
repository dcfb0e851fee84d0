"""The smoothing defences measured against the attack (Dombrowski et al. 2019, "Explanations can be manipulated and
geometry is to blame", https://arxiv.org/abs/1906.07983, section 5), and the stability columns of the leaderboard.

A defence is a method of its own: the same explanation computed on the softplus-β network (``<base>_smoothed``),
or SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825) for saliency, attacked with the same ε and
attack as its base method. Per (base, defended method, ε) :func:`defence_table` puts side by side

* r(adv, target) of each method's own attack (Pearson r in [-1, 1], lower = harder to manipulate), mean over images
  with the leaderboard's seeded 95 % bootstrap CI and n, and the two-sided Wilcoxon signed-rank p of the paired
  difference over the images both were attacked on;
* the cost: deletion (lower = more faithful) and insertion (higher = more faithful) AUC in [0, 1] of the clean maps,
  without and with the defence, mean and CI over images.

A defended method that was not attacked (or not explained) leaves its cells empty, with a ``note`` saying why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import PGD, eps_name
from .statistics import Bootstrap, bootstrap_mean, wilcoxon_p

#: (base method, defended method) in table order; SmoothGrad is the other smoothing defence of saliency.
DEFENCE_PAIRS = (
    ("saliency", "saliency_smoothed"),
    ("saliency", "smoothgrad"),
    ("input_x_gradient", "input_x_gradient_smoothed"),
    ("integrated_gradients", "integrated_gradients_smoothed"),
)
#: The per-method quantities, each written as ``<q>_plain`` / ``<q>_defended`` with ``_ci_low``, ``_ci_high``.
QUANTITIES = ("r", "deletion", "insertion")
NOT_ATTACKED = "not in attack.methods"
NOT_EXPLAINED = "not in explain.methods"


def defence_labels(params: dict) -> dict[str, str]:
    """The defence of each defended method as a reader names it: ``softplus β=<beta>`` (``<method>.beta`` in params,
    — when unset) or ``SmoothGrad``."""
    labels = {"smoothgrad": "SmoothGrad"}
    for _, defended in DEFENCE_PAIRS:
        if defended.endswith("_smoothed"):
            beta = (params.get(defended) or {}).get("beta")
            labels[defended] = f"softplus β={beta:g}" if isinstance(beta, (int, float)) else "softplus β"
    return labels


def _own_r(similarity: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (method, eps) × image: ``metric`` of the attacked method's own map on x_adv against the target map."""
    own = similarity[
        (similarity["pair"] == "adv_target")
        & (similarity["method"] == similarity["attack"])
        & (similarity["attack"] != PGD)
    ]
    return own.pivot_table(index="image", columns=["method", "eps"], values=metric, aggfunc="mean", sort=False)


def _ci_cells(prefix: str, values: pd.Series | None, boot: Bootstrap) -> dict[str, float]:
    values = None if values is None else values.dropna()
    if values is None or values.empty:
        return {prefix: np.nan, f"{prefix}_ci_low": np.nan, f"{prefix}_ci_high": np.nan, f"{prefix}_n": 0}
    ci = bootstrap_mean(values.to_numpy(dtype=float), boot.n_resamples, boot.seed)
    return {
        prefix: ci["mean"],
        f"{prefix}_ci_low": ci["ci_low"],
        f"{prefix}_ci_high": ci["ci_high"],
        f"{prefix}_n": ci["n"],
    }


def defence_table(
    similarity: pd.DataFrame,
    faithfulness: pd.DataFrame,
    budgets: list[float],
    labels: dict[str, str] | None = None,
    bootstrap: Bootstrap = Bootstrap(),
    metric: str = "pearson",
) -> pd.DataFrame:
    """``reports/metrics/defence.csv``: one row per (base, defended, ε) of :data:`DEFENCE_PAIRS` × ``budgets``.

    Args:
        similarity: the map-similarity table (image, attack, eps, method, pair, ``metric``).
        faithfulness: the faithfulness table; its ``attack == "none"`` rows (the clean maps) give the cost.
        budgets: the attack budgets ε (/255), ``attack.eps``.
        labels: defended method → defence name (:func:`defence_labels`).
        bootstrap: resamples and seed, the leaderboard's (``metrics.bootstrap``).
        metric: the similarity column (Pearson r, as in the leaderboard).

    Returns:
        Columns ``base, defended, defence, eps``, then per quantity of :data:`QUANTITIES` and side (plain, defended)
        the mean, ``_ci_low``, ``_ci_high`` and ``_n``, then ``p_wilcoxon`` (NaN unless both were attacked at ε),
        ``n_paired`` and ``note``.
    """
    wide = _own_r(similarity, metric) if len(similarity) else pd.DataFrame()
    clean = faithfulness[faithfulness["attack"].astype(str) == "none"]
    explained = set(clean["method"])
    cost = {
        k: clean.pivot_table(index="image", columns="method", values=k, aggfunc="mean")
        for k in ("deletion", "insertion")
    }
    rows = []
    for base, defended in DEFENCE_PAIRS:
        for eps in budgets:
            r = {m: wide[(m, float(eps))] if (m, float(eps)) in wide.columns else None for m in (base, defended)}
            row: dict[str, Any] = {"base": base, "defended": defended, "eps": float(eps)}
            row["defence"] = (labels or {}).get(defended, defended)
            for side, m in (("plain", base), ("defended", defended)):
                row.update(_ci_cells(f"r_{side}", r[m], bootstrap))
                for k in ("deletion", "insertion"):
                    row.update(_ci_cells(f"{k}_{side}", cost[k][m] if m in cost[k] else None, bootstrap))
            plain, smooth = r[base], r[defended]  # columns of one frame: aligned by image, NaN pairs dropped
            p, n = (np.nan, 0) if plain is None or smooth is None else wilcoxon_p(list(plain), list(smooth))
            notes = [f"{m} {NOT_ATTACKED}" for m in (base, defended) if r[m] is None]
            notes += [f"{m} {NOT_EXPLAINED}" for m in (base, defended) if m not in explained]
            rows.append({**row, "p_wilcoxon": p, "n_paired": n, "note": "; ".join(notes)})
    cells = [
        f"{q}_{s}{x}" for q in QUANTITIES for s in ("plain", "defended") for x in ("", "_ci_low", "_ci_high", "_n")
    ]
    columns = ["base", "defended", "defence", "eps", *cells, "p_wilcoxon", "n_paired", "note"]
    return pd.DataFrame(rows, columns=columns)


def defence_summary(table: pd.DataFrame) -> dict[str, Any]:
    """``defence.<base>.<defended>.eps<e>`` for metrics.json: ``r_plain``, ``r_defended``, ``deletion_plain``, ...
    as ``{mean, ci_low, ci_high, n}`` where measured, ``p_wilcoxon`` and ``n_paired`` where both were attacked.
    Unmeasured values are left out (never NaN)."""
    out: dict[str, Any] = {}
    for r in table.to_dict("records"):
        entry: dict[str, Any] = {}
        for q in (f"{q}_{s}" for q in QUANTITIES for s in ("plain", "defended")):
            if r[f"{q}_n"]:
                entry[q] = {
                    "mean": r[q],
                    "ci_low": r[f"{q}_ci_low"],
                    "ci_high": r[f"{q}_ci_high"],
                    "n": int(r[f"{q}_n"]),
                }
        if r["n_paired"]:
            entry.update(p_wilcoxon=float(r["p_wilcoxon"]), n_paired=int(r["n_paired"]))
        out.setdefault(r["base"], {}).setdefault(r["defended"], {})[eps_name(r["eps"])] = entry
    return out


def stability_board(summary: pd.DataFrame | None, methods: list[str]) -> dict[str, Any]:
    """``leaderboard.stability.<method>.{sensitivity_max, infidelity}`` as ``{mean, ci_low, ci_high, n}`` from the
    stability stage's ``reports/stability/summary.csv`` (Yeh et al. 2019, captum.metrics; the same seeded bootstrap
    over images), for the ``methods`` it measured; {} without the file."""
    if summary is None or summary.empty:
        return {}
    out: dict[str, Any] = {}
    for r in summary[summary["method"].isin(methods)].to_dict("records"):
        ci = {"mean": float(r["mean"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "n": int(r["n"])}
        out.setdefault(str(r["method"]), {})[str(r["metric"])] = ci
    return {m: out[m] for m in methods if m in out}
