"""The report's "Defence" and "Untargeted attack" sections: the metrics stage's ``reports/metrics/defence.csv`` and
``reports/metrics/untargeted.csv`` formatted, and the facts the template's plain reading states. Nothing is
computed here: every number is a cell of those tables (means, 95 % bootstrap CIs, Wilcoxon p), only written out.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..errors import DeepSaliencyError
from .render import format_number
from .sections import Sections
from .tables import pick_budget, require_columns


def _ci_text(row: dict, prefix: str) -> str:
    """``mean [ci_low, ci_high]`` of ``prefix`` in ``row``; "—" when the table has no number."""
    mean = row.get(prefix)
    if mean is None or not math.isfinite(float(mean)):
        return "—"
    return (
        f"{format_number(mean)} [{format_number(row[f'{prefix}_ci_low'])}, {format_number(row[f'{prefix}_ci_high'])}]"
    )


def _change(row: dict, kind: str) -> str:
    return f"{_ci_text(row, kind + '_plain')} → {_ci_text(row, kind + '_defended')}"


def _defence_shown(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in table.to_dict("records"):
        p = r.get("p_wilcoxon")
        rows.append(
            {
                "method": r["base"],
                "defence": f"{r['defence']} ({r['defended']})",
                "ε (/255)": r["eps"],
                "r(adv, target) without ↓": _ci_text(r, "r_plain"),
                "r(adv, target) with ↓": _ci_text(r, "r_defended"),
                "Wilcoxon p (n)": "—" if p is None or p != p else f"{format_number(p)} ({int(r['n_paired'])})",
                "deletion AUC without → with ↓": _change(r, "deletion"),
                "insertion AUC without → with ↑": _change(r, "insertion"),
                "note": r.get("note") if isinstance(r.get("note"), str) else "",
            }
        )
    return pd.DataFrame(rows)


def _defence_readings(table: pd.DataFrame, eps: float | None, alpha: float) -> list[dict[str, Any]]:
    """Per pair measured with and without the defence at the shown budget: the numbers the prose names."""
    shown = pick_budget(table["eps"], eps)
    out = []
    for r in table[table["eps"] == shown].to_dict("records"):
        if not (r["r_plain_n"] and r["r_defended_n"]):
            continue
        out.append(
            {
                "base": r["base"], "defence": r["defence"], "eps": format_number(r["eps"]),
                "plain": _ci_text(r, "r_plain"), "defended": _ci_text(r, "r_defended"),
                "lower": bool(r["r_defended"] < r["r_plain"]), "p": format_number(r["p_wilcoxon"]),
                "n": int(r["n_paired"]), "significant": bool(r["p_wilcoxon"] < alpha), "alpha": f"{alpha:g}",
                "deletion": f"{format_number(r['deletion_plain'])} → {format_number(r['deletion_defended'])}",
                "insertion": f"{format_number(r['insertion_plain'])} → {format_number(r['insertion_defended'])}",
                "costlier": bool(r["deletion_defended"] > r["deletion_plain"]
                                 or r["insertion_defended"] < r["insertion_plain"]),
            }
        )  # fmt: skip
    return out


def section_defence(s: Sections) -> dict[str, Any]:
    """``reports/metrics/defence.csv`` as the "Defence" table, and per measured pair the numbers of the reading."""
    table = s.art.extra.get("defence")
    if table is None:
        return {"available": False}
    try:
        require_columns(table, ["base", "defended", "defence", "eps", "r_plain", "r_defended", "p_wilcoxon"], "defence")
        s.table("defence", _defence_shown(table), index=False)
    except DeepSaliencyError as exc:
        s.art.notes.append(f"Defence table left out: {exc}")
        return {"available": False}
    alpha = float(((s.art.metrics or {}).get("leaderboard") or {}).get("alpha", 0.05))
    readings = _defence_readings(table, s.eps, alpha)
    return {"available": True, "readings": readings, "unattacked": sorted({n for n in table["note"].dropna() if n})}


def section_untargeted(s: Sections) -> dict[str, Any]:
    """``reports/metrics/untargeted.csv`` as the "Untargeted attack" table and, at the shown budget, the method
    whose top-k intersection fell furthest and the one that kept most (the numbers the reading names)."""
    table = s.art.extra.get("untargeted")
    if table is None:
        return {"available": False}
    need = ["method", "eps", "kind", "n", "topk_intersection", "com_shift_px", "label_kept", "converged", "linf_max"]
    try:
        require_columns(table, need, "untargeted")
    except DeepSaliencyError as exc:
        s.art.notes.append(f"Untargeted attack table left out: {exc}")
        return {"available": False}
    rows = table.to_dict("records")
    shown = pd.DataFrame(
        {
            "method": [r["method"] for r in rows], "ε (/255)": [r["eps"] for r in rows],
            "attack": [r["kind"] for r in rows], "n": [r["n"] for r in rows],
            "top-k intersection ↑ [95 % CI]": [_ci_text(r, "topk_intersection") for r in rows],
            "centre-of-mass shift, px ↓ [95 % CI]": [_ci_text(r, "com_shift_px") for r in rows],
            "class kept": [r["label_kept"] for r in rows], "converged": [r["converged"] for r in rows],
            "L∞ max (/255)": [r["linf_max"] for r in rows],
        }
    )  # fmt: skip
    s.table("untargeted", shown, index=False)
    budget = pick_budget(table["eps"], s.eps)
    topk = table[(table["eps"] == budget) & (table["kind"] == "topk")].sort_values("topk_intersection", kind="stable")
    facts = [
        {"method": r["method"], "value": _ci_text(r, "topk_intersection"), "n": int(r["n"])}
        for r in topk.to_dict("records")
    ]
    tie = len(topk) > 1 and topk["topk_intersection"].nunique() == 1  # "smallest … largest" would read as a contrast
    strongest = [] if tie else facts[1:][-1:]
    return {"available": True, "eps": format_number(budget), "weakest": facts[:1], "strongest": strongest, "tie": tie}
