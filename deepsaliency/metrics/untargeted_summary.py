"""The untargeted attack's summary (Ghorbani, Abid & Zou 2019, "Interpretation of Neural Networks is Fragile",
https://arxiv.org/abs/1710.10547): per (method, ε, kind) the mean top-k intersection and centre-of-mass shift
over images with seeded 95 % bootstrap CIs, the class-kept and converged rates, and the largest L∞ spent.

Reads ``reports/untargeted/<method>-eps<e>/shard-*.csv`` (:func:`~deepsaliency.artifacts.untargeted_file`,
:func:`~deepsaliency.artifacts.read_table`; or an unsharded ``<method>-eps<e>.csv``) of exactly the
runs that ``untargeted.methods`` × ``untargeted.eps`` list and that ran, by name: a run dropped from params leaves
its CSV on disk (DVC keeps outputs of a stage that left dvc.yaml), and it is never read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..artifacts import UNTARGETED, eps_name, read_table, table_exists, untargeted_file
from ..errors import DeepSaliencyError, ParamError
from .load import Run
from .statistics import Bootstrap, bootstrap_mean

#: The columns of each run's CSV, exactly (the untargeted stage's contract).
UNTARGETED_COLUMNS = [
    "image", "method", "eps", "kind", "topk_intersection", "com_shift_px", "label_kept", "prob_adv", "linf",
    "converged", "steps", "passes",
]  # fmt: skip
#: The two attacks of Ghorbani et al.: push the top-k pixels out of the top-k; move the map's centre of mass.
KINDS = ("topk", "center_of_mass")
#: Per-image columns summarised with a CI: fraction in [0, 1], pixels, 0/1 class kept, 0/1 converged.
CI_COLUMNS = ("topk_intersection", "com_shift_px", "label_kept", "converged")
#: Slack on the budget check, in /255 units: issue 15's 1e-6 in [0, 1] pixel units (float32 images).
LINF_TOL = 255 * 1e-6


def untargeted_runs(params: dict, root: str | Path | None = None) -> list[Run]:
    """``untargeted.methods`` × ``untargeted.eps`` (params order); [] without an ``untargeted`` section. With a
    ``root``, only the runs whose CSV exists there (as :func:`~deepsaliency.metrics.load.available_attacks` does:
    a listed stage that has not run is left out, an unlisted file is never read).

    Raises:
        ParamError: ``methods`` or ``eps`` is not a list.
    """
    section = params.get("untargeted") or {}
    for key in ("methods", "eps"):
        if not isinstance(section.get(key, []), list):
            raise ParamError(f"untargeted.{key}: {section.get(key)!r} is not allowed (a list)")
    runs = [(str(m), float(e)) for m in section.get("methods", []) for e in section.get("eps", [])]
    return runs if root is None else [r for r in runs if table_exists(untargeted_file(*r, root))]


def _check(df: pd.DataFrame, path: Path, eps: float) -> None:
    lack = [c for c in UNTARGETED_COLUMNS if c not in df.columns]
    if lack:
        raise DeepSaliencyError(f"{path}: columns {list(df.columns)} lack {lack}")
    kinds = sorted(set(df["kind"]) - set(KINDS))
    if kinds:
        raise DeepSaliencyError(f"{path}: kind {kinds[0]!r} is not allowed (one of {', '.join(KINDS)})")
    top = df["topk_intersection"].to_numpy(dtype=float)
    outside = ~((top >= 0) & (top <= 1))  # NaN included
    if outside.any():
        raise DeepSaliencyError(f"{path}: topk_intersection {float(top[outside][0]):g} is not in [0, 1]")
    worst = float(df["linf"].max()) if len(df) else 0.0
    if worst > eps + LINF_TOL:  # the budget is the point of the comparison: never summarise a run that broke it
        raise DeepSaliencyError(f"{path}: linf {worst:g} exceeds the budget eps {eps:g} (/255)")


def load_untargeted(runs: Iterable[Run], root: str | Path = UNTARGETED) -> pd.DataFrame:
    """The per-image rows of exactly ``runs``, read by name, checked, as one table.

    Args:
        runs: ``(method, eps /255)`` of the untargeted stages, in report order.
        root: the folder of ``<method>-eps<e>.csv`` files.

    Returns:
        Columns :data:`UNTARGETED_COLUMNS`, ``method``/``eps`` set from the run (one row per image × kind).

    Raises:
        DeepSaliencyError: a listed CSV is missing, lacks a column, has an unknown ``kind``, a top-k intersection
            outside [0, 1], or an L∞ above its budget (names the file).
    """
    frames = []
    for method, eps in runs:
        path = untargeted_file(method, eps, root)
        if not table_exists(path):
            raise DeepSaliencyError(f"{path}: missing; rerun the untargeted@{method}-{eps:g} stages")
        df = read_table(path)
        _check(df, path, eps)
        frames.append(df[UNTARGETED_COLUMNS].assign(method=method, eps=eps))
    if not frames:
        return pd.DataFrame(columns=UNTARGETED_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def untargeted_table(rows: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """Per (method, eps, kind), in the rows' order: ``n`` images, then for each of :data:`CI_COLUMNS` its mean over
    images with ``_ci_low``/``_ci_high`` (``label_kept`` and ``converged`` are rates in [0, 1]), ``linf_max``
    (/255, ≤ eps), and the mean ``steps`` and ``passes`` (forward/backward passes) spent.

    Returns:
        ``reports/metrics/untargeted.csv``; no row when ``rows`` is empty.
    """
    out = []
    for (m, e, k), g in rows.groupby(["method", "eps", "kind"], sort=False):
        per_image = g.groupby("image", sort=False)
        row: dict[str, Any] = {"method": m, "eps": float(e), "kind": k, "n": int(per_image.ngroups)}
        for col in CI_COLUMNS:
            ci = bootstrap_mean(per_image[col].mean().astype(float), bootstrap.n_resamples, bootstrap.seed)
            row.update({col: ci["mean"], f"{col}_ci_low": ci["ci_low"], f"{col}_ci_high": ci["ci_high"]})
        row.update(linf_max=float(g["linf"].max()), steps=float(g["steps"].mean()), passes=float(g["passes"].mean()))
        out.append(row)
    columns = ["method", "eps", "kind", "n", *[f"{c}{s}" for c in CI_COLUMNS for s in ("", "_ci_low", "_ci_high")]]
    return pd.DataFrame(out, columns=[*columns, "linf_max", "steps", "passes"])


def untargeted_summary(table: pd.DataFrame) -> dict[str, Any]:
    """``untargeted.<method>.eps<e>.<kind>`` for metrics.json: each of :data:`CI_COLUMNS` as
    ``{mean, ci_low, ci_high, n}``, plus ``linf_max``; {} for an empty table."""
    out: dict[str, Any] = {}
    for r in table.to_dict("records"):
        entry: dict[str, Any] = {
            c: {"mean": r[c], "ci_low": r[f"{c}_ci_low"], "ci_high": r[f"{c}_ci_high"], "n": int(r["n"])}
            for c in CI_COLUMNS
        }
        entry["linf_max"] = r["linf_max"]
        out.setdefault(r["method"], {}).setdefault(eps_name(r["eps"]), {})[r["kind"]] = entry
    return out
