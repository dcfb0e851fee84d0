"""The facts each section of the report states: tables, figures and flags for ``templates/report.md.j2``.

Each ``section_*`` function draws its figures (:class:`~deepsaliency.report.figures.FigureWriter`), registers its
tables in :attr:`Sections.tables` and returns the values the template's prose needs. No prose here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import pandas as pd
import yaml

from ..errors import DeepSaliencyError
from . import figures, tables
from .figures import FigureWriter
from .load import Artifacts, originals
from .render import format_number


@dataclass
class Sections:
    """The shared state of one build: artifacts, plot parameters, the budget shown, figures, tables and notes."""

    art: Artifacts
    writer: FigureWriter
    p: dict
    labels: Sequence[str] | None = None
    eps: float | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    index: dict[str, bool] = field(default_factory=dict)

    def table(self, key: str, df: pd.DataFrame, index: bool = True) -> None:
        """Register ``df`` as the shown table ``key`` (the template writes it with ``table(key)``)."""
        self.tables[key] = df
        self.index[key] = index

    def label(self, idx: int) -> str:
        """The class name of index ``idx`` ("class <idx>" without labels)."""
        if self.labels is not None and 0 <= idx < len(self.labels):
            return str(self.labels[idx])
        return f"class {idx}"


def ranking_facts(ranking: dict | None) -> dict[str, Any]:
    """What the leaderboard's caption states: the test, n, α, the pairs told apart, the budget."""
    if not (ranking or {}).get("methods"):
        return {"ranked": False}
    assert ranking is not None
    n, pairs, differ = (int(ranking.get(k, 0)) for k in ("images", "pairs", "pairs_differ"))
    alpha = float(ranking.get("alpha", 0.05))
    # The exact two-sided Wilcoxon p is at least 2/2^n: with few images no pair can differ.
    return {
        "ranked": True,
        "n": n,
        "pairs": pairs,
        "differ": differ,
        "alpha": alpha,
        "eps": ranking.get("eps"),
        "too_few": bool(pairs) and 2 / 2**n >= alpha,
    }


def section_leaderboard(s: Sections) -> dict[str, Any]:
    """The leaderboard table (``leaderboard``; all columns as ``leaderboard_raw``) and its honest gaps."""
    art = s.art
    numbers = art.summary.get("leaderboard")
    if numbers is None or (art.map_similarity is None and art.faithfulness is None):
        return {"available": False}
    ranking = (art.metrics or {}).get("leaderboard") if isinstance(art.metrics, dict) else None
    lb = tables.present_leaderboard(numbers, ranking, format_number)
    s.tables["leaderboard_raw"] = lb
    hidden = [k for k in tables.OPTIONAL_COLUMNS if lb[k].replace("", float("nan")).isna().all()]
    s.table("leaderboard", lb.drop(columns=hidden).rename(columns=tables.LEADERBOARD_COLUMNS), index=False)
    budgets = lb.loc[lb["rank"].notna(), "linf_255"].dropna()
    unequal = len(budgets) > 1 and budgets.max() > 1.1 * budgets.min()
    return {
        "available": True,
        **ranking_facts(ranking),
        "headers": tables.LEADERBOARD_COLUMNS,
        "legend": [k for k in tables.LEADERBOARD_COLUMNS if k not in ("rank", "method", *hidden)],
        "no_adv_target": bool(lb["adv_target"].isna().all()),
        "some_adv_target": bool(lb["adv_target"].isna().any()),
        "no_random": bool(lb["deletion_gain"].isna().all() and lb["insertion_gain"].isna().all()),
        "no_quality": art.attack_quality is None,
        "unequal": f"{budgets.min():.3g} to {budgets.max():.3g}" if unequal else "",
        "flagged": [str(m) for m, f in zip(lb["method"], lb["flag"], strict=True) if f],
    }


def section_manipulability(s: Sections) -> dict[str, Any]:
    """reports/metrics/manipulability.csv as a table and, when :mod:`deepsaliency.plots` can, a figure."""
    table = s.art.extra.get("manipulability")
    if table is None:
        return {"available": False}
    try:
        shown = tables.manipulability_table(table)
    except DeepSaliencyError as exc:
        s.art.notes.append(f"Manipulability table left out: {exc}")
        return {"available": False}
    s.table("manipulability", shown, index=False)
    s.writer.draw("manipulability", "Manipulability: r(adv, target) vs ε", lambda: figures.manipulability(table))
    budgets = sorted(pd.to_numeric(table["eps"], errors="coerce").dropna().unique())
    return {"available": True, "budgets": ", ".join(f"{b:g}" for b in budgets)}


def section_explanations(s: Sections) -> dict[str, Any]:
    """One figure per image: every method's map and signed attribution."""
    art, p = s.art, s.p
    if art.manifest is not None:
        cols = [c for c in ("file", "stem", "class_idx", "label", "prob") if c in art.manifest.columns]
        s.table("manifest", art.manifest[cols], index=False)
    rows = figures.manifest_rows(art)
    if art.manifest is None or not art.methods:
        return {"available": False, "stems": []}
    for stem, r in rows.items():
        s.writer.draw(
            f"explanations_{stem}",
            f"Explanations of {stem}",
            partial(figures.explanations, art, stem, r, p),
        )
    return {"available": True, "stems": list(rows), "min_max": ", ".join(p["min_max_methods"])}


def section_attacks(s: Sections) -> dict[str, Any]:
    """Per attack its figure at the shown budget, the optimisation curves and the attack-quality table."""
    art, p = s.art, s.p
    budgets = {**tables.attack_budgets(art.map_similarity, s.eps), **tables.attack_budgets(art.attack_quality, s.eps)}
    shown = []
    for name in art.attacks if art.manifest is not None else []:
        eps = budgets.get(name)
        if name in art.methods:
            s.writer.draw(f"attack_{name}", f"Attack on {name}", partial(figures.attack, art, name, eps, p, s.label))
        else:
            s.writer.draw(f"attack_{name}", f"Attack {name}", partial(figures.transfer, art, name, eps, p))
        shown.append({"name": name, "targeted": name in art.methods, "eps": eps})
    losses = {
        a: cast(pd.DataFrame, tables.at_budget(df.assign(attack=a), s.eps)).drop(
            columns=["attack", "eps"], errors="ignore"
        )
        for a, df in art.attack_loss.items()
    }  # one budget's curves per attack
    if losses:
        s.writer.draw("attack_loss", "Attack optimisation curves", lambda: figures.plots.plot_attack_losses(losses))
    quality = art.attack_quality is not None and "attack_quality_summary" in art.summary
    if quality:
        s.table("attack_quality", art.summary["attack_quality_summary"])
    return {
        "available": bool(shown),
        "shown": shown,
        "losses": bool(losses),
        "quality": quality,
        "has_quality_file": art.attack_quality is not None,
    }


def section_transfer(s: Sections) -> dict[str, Any]:
    """The transfer matrices r(adv, target) and r(orig, adv) (figures and table) and the own-map shift table."""
    art = s.art
    if art.map_similarity is None:
        return {"state": "missing"}
    lack = [n for n in ("transfer_adv_target", "transfer_orig_adv") if n not in art.summary]
    if lack:
        error = f"reports/metrics/{lack[0]}.csv is missing or unreadable (rerun the metrics stage)"
        art.notes.append(f"Transfer matrix left out: {error}")
        return {"state": "error", "error": error}
    adv_t, orig_adv = art.summary["transfer_adv_target"], art.summary["transfer_orig_adv"]
    adv_t.columns.name = orig_adv.columns.name = "method"
    label = "Pearson r, mean over images"
    if not adv_t.empty:
        s.writer.draw(
            "transfer_adv_target",
            "Transfer matrix: r(adversarial map, target map)",
            lambda: figures.plots.plot_transfer_matrix(adv_t, title="r(map on x_adv, target map)", value_label=label),
        )
        s.table("transfer_adv_target", adv_t)
    if not orig_adv.empty:
        s.writer.draw(
            "transfer_orig_adv",
            "Transfer matrix: r(original map, adversarial map)",
            lambda: figures.plots.plot_transfer_matrix(orig_adv, title="r(map on x, map on x_adv)", value_label=label),
        )
    if "own_map_shift" in art.summary:
        s.table("own_map_shift", art.summary["own_map_shift"])
    else:
        art.notes.append("Own-map similarity table left out: reports/metrics/own_map_shift.csv is missing.")
    return {"state": "ok", "adv_target": not adv_t.empty}


def section_faithfulness(s: Sections) -> dict[str, Any]:
    """Deletion/insertion curves (figures) and the AUC table with metrics.json's CIs and p against random."""
    art = s.art
    for kind in ("deletion", "insertion"):
        df = art.curves.get(kind)
        if df is not None:
            s.writer.draw(
                f"{kind}_curves",
                f"{kind.capitalize()} curves",
                partial(figures.plots.plot_curves, originals(df), kind),
            )
    out: dict[str, Any] = {"curves": list(art.curves), "table": False, "n": 0, "file": art.faithfulness is not None}
    table = art.summary.get("faithfulness_summary")
    if art.faithfulness is None or table is None:
        return out
    table, out["n"] = tables.faithfulness_uncertainty(table, art.metrics, format_number)
    s.table("faithfulness", table)
    out["table"] = True
    return out


def section_extra(s: Sections, key: str, png: str | None) -> bool:
    """A later stage's summary CSV (``sanity``, ``stability``) as a table, and its PNG ``png`` when it exists."""
    df = s.art.extra.get(key)
    if df is None:
        return False
    s.table(key, df, index=False)
    if png is not None and (s.art.root / png).is_file():
        s.writer.copy(key, key.capitalize(), s.art.root / png)
    return True


def section_params(s: Sections, params: dict | None) -> dict[str, Any]:
    """The run's parameters as YAML and metrics.json's flattened keys as a table."""
    if s.art.metrics:
        flat = tables.flatten(s.art.metrics)
        s.table("metrics_json", pd.DataFrame({"value": list(flat.values())}, index=pd.Index(list(flat), name="metric")))
    text = yaml.safe_dump(params, sort_keys=False, allow_unicode=True).rstrip() if params else ""
    return {"yaml": text, "metrics": bool(s.art.metrics)}
