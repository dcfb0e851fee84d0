"""Stage stability: data/prepared (+ data/masks for rise) → max-sensitivity and infidelity (Yeh et al. 2019).

Writes ``reports/stability/per_image.csv`` (image, method, sensitivity_max, infidelity),
``reports/stability/summary.csv`` (method, metric, mean, ci_low, ci_high, n: bootstrap CIs over images)
and ``reports/stability.json`` (``{method: {metric: {mean, ci_low, ci_high, n}}}``, a dvc metric).
Both metrics come from ``captum.metrics`` via :mod:`deepsaliency.metrics.stability`, whose docstring says
how the perturbations are seeded.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd

from deepsaliency.artifacts import MASKS
from deepsaliency.attribution import check_model_params
from deepsaliency.experiments import method_kwargs
from deepsaliency.metrics.stability import STABILITY_METRICS, stability_table
from deepsaliency.metrics.statistics import bootstrap_mean
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.rise import RiseMasks
from deepsaliency.stage import atomic_dir, atomic_file, run_stage
from deepsaliency.stream import prepared_batches

SUMMARY_COLUMNS = ["method", "metric", "mean", "ci_low", "ci_high", "n"]


def summarize(table: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """Mean and 95 % bootstrap CI over images (:func:`bootstrap_mean`) per method × metric."""
    rows = []
    for method, part in table.groupby("method", sort=False):
        for metric in STABILITY_METRICS:
            stats = bootstrap_mean(part[metric], n_resamples=n_resamples, seed=seed)
            rows.append({"method": method, "metric": metric, **stats})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def as_metrics(summary: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {metric: {mean, ci_low, ci_high, n}}}``, rounded to 6 significant places for dvc metrics diff."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in summary.itertuples():
        out.setdefault(str(row.method), {})[str(row.metric)] = {
            "mean": float(f"{row.mean:.6g}"),
            "ci_low": float(f"{row.ci_low:.6g}"),
            "ci_high": float(f"{row.ci_high:.6g}"),
            "n": int(row.n),
        }
    return out


def main() -> None:
    params = load_params()
    section = params["stability"]
    model = load_model(**params["model"])
    check_model_params(params, model)  # gradcam layers and explain.target, before any work
    target = params["explain"]["target"]
    masks = RiseMasks.load(MASKS) if "rise" in section["methods"] else None
    methods = {m: method_kwargs(params, m, model, masks) for m in section["methods"]}
    t0 = time.perf_counter()
    tables, stems = [], []
    for rows, x in prepared_batches(params["compute"]["batch_size"]):  # one batch of images in memory at a time
        tables.append(
            stability_table(
                model,
                x,
                methods,
                [target if target is not None else int(c) for c in rows["class_idx"]],
                list(rows["stem"]),
                radius=section["radius"],
                n_perturb_samples=section["n_perturb_samples"],
                seed=section["seed"],
                batch_size=section["batch_size"],
            )
        )
        stems += list(rows["stem"])
    table = pd.concat(tables, ignore_index=True)
    print(f"stability: {len(stems)} images × {len(methods)} methods in {time.perf_counter() - t0:.1f} s")
    boot = params["metrics"]["bootstrap"]
    summary = summarize(table, boot["n_resamples"], boot["seed"])
    with atomic_dir("reports/stability") as out:
        table.to_csv(out / "per_image.csv", index=False, float_format="%.6g")
        summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    with atomic_file("reports/stability.json") as tmp:
        tmp.write_text(json.dumps(as_metrics(summary), indent=2, allow_nan=False) + "\n")
    print("stability: reports/stability/{per_image,summary}.csv, reports/stability.json")


if __name__ == "__main__":
    run_stage(main)
