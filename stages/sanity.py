"""Stage sanity: data/prepared (+ data/masks for rise) → model-parameter randomisation (Adebayo et al. 2018).

Writes ``reports/sanity/per_image.csv``, ``reports/sanity/summary.csv`` (bootstrap CIs over images),
``reports/sanity/sanity.png`` (rows = methods, columns = depth, cascading, first image),
``reports/sanity.json`` (the deepest depth, a dvc metric) and ``reports/plots/sanity_curves.csv``.
The algorithm lives in :mod:`deepsaliency.metrics.sanity`; this script applies it image by image
(one image per explanation call, as the explain stage does, so depth 0 is that stage's map exactly).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepsaliency.artifacts import MASKS
from deepsaliency.attribution import check_model_params
from deepsaliency.errors import ParamError
from deepsaliency.experiments import method_kwargs
from deepsaliency.metrics.sanity import SANITY_METRICS, layer_groups, randomization_test
from deepsaliency.metrics.statistics import bootstrap_mean
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.plots.sanity import plot_sanity
from deepsaliency.rise import RiseMasks
from deepsaliency.stage import atomic_dir, atomic_file, run_stage
from deepsaliency.stream import prepared_batches

PER_IMAGE_COLUMNS = ["image", "method", "variant", "depth", "layer", *SANITY_METRICS]
SUMMARY_COLUMNS = ["method", "variant", "depth", "layer", "metric", "mean", "ci_low", "ci_high", "n"]


def check_depth(params: dict, model: torch.nn.Module) -> int:
    """The number of layer groups to randomise: ``sanity.max_depth`` checked against the model's groups.

    Raises:
        ParamError: the model has no automatic layer groups, or ``sanity.max_depth`` exceeds their number.
    """
    try:
        groups = layer_groups(model)
    except ParamError:
        raise ParamError(
            f"model.name: {params['model']['name']!r} is not allowed for the sanity stage "
            "(it needs a timm EfficientNet's layer groups)"
        ) from None
    depth = params["sanity"]["max_depth"]
    if depth is not None and depth > len(groups):
        raise ParamError(
            f"sanity.max_depth: {depth!r} is not allowed (null or an integer in [0, {len(groups)}], "
            "the model's layer groups)"
        )
    return len(groups) if depth is None else depth


def run_sanity(
    model: torch.nn.Module, x: torch.Tensor, stems: list[str], targets: list[int], params: dict, masks: Any = None
) -> tuple[pd.DataFrame, dict[tuple[str, str, str, int], np.ndarray]]:
    """Every variant of ``sanity.variants`` on every image, one image per call.

    Returns:
        The per-image table (:data:`PER_IMAGE_COLUMNS`) and ``{(variant, method, image, depth): map (H, W)}``.
    """
    section = params["sanity"]
    methods = {m: method_kwargs(params, m, model, masks) for m in section["methods"]}
    depth = check_depth(params, model)
    tables, maps = [], {}
    for variant in section["variants"]:
        for xi, stem, target in zip(x, stems, targets, strict=True):
            table, got = randomization_test(
                model,
                xi[None],
                methods,
                target=[int(target)],
                mode=variant,
                max_depth=depth,
                seed=section["seed"],
                images=[stem],
                return_maps=True,
            )
            tables.append(table)
            maps.update({(variant, m, stem, d): red[0].numpy() for (m, d), (_, red) in got.items()})
            print(f"sanity: {variant} {stem}: {len(methods)} methods × {depth + 1} depths", flush=True)
    table = pd.concat(tables, ignore_index=True).rename(columns={"mode": "variant", "group": "layer"})
    return table[PER_IMAGE_COLUMNS], maps


def summarize(table: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """Mean and 95 % bootstrap CI over images (:func:`bootstrap_mean`) per method × variant × depth × metric."""
    rows = []
    for (method, variant, depth, layer), part in table.groupby(["method", "variant", "depth", "layer"], sort=False):
        for metric in SANITY_METRICS:
            stats = bootstrap_mean(part[metric], n_resamples=n_resamples, seed=seed)
            rows.append(
                {"method": method, "variant": variant, "depth": depth, "layer": layer, "metric": metric, **stats}
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def deepest(summary: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {variant: {"depth": d, metric: {mean, ci_low, ci_high, n}}}}`` at each one's deepest depth."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (method, variant), part in summary.groupby(["method", "variant"], sort=False):
        last = part[part.depth == part.depth.max()]
        entry: dict[str, Any] = {"depth": int(last.depth.iloc[0])}
        for row in last.itertuples():
            entry[str(row.metric)] = {
                "mean": round(float(row.mean), 6),
                "ci_low": round(float(row.ci_low), 6),
                "ci_high": round(float(row.ci_high), 6),
                "n": int(row.n),
            }
        out.setdefault(str(method), {})[str(variant)] = entry
    return out


def curves(summary: pd.DataFrame) -> pd.DataFrame:
    """One line per method and variant for dvc plots: the mean over images of each metric at each depth."""
    wide = summary.pivot_table(
        index=["method", "variant", "depth", "layer"], columns="metric", values="mean", sort=False
    ).reset_index()
    return wide[["method", "variant", "depth", "layer", *SANITY_METRICS]].sort_values(["variant", "method", "depth"])


def figure_maps(maps: dict, params: dict, stem: str, depth: int) -> tuple[str, dict[str, list[np.ndarray]]]:
    """The figure's variant (cascading when run) and ``{method: [map at depth 0..depth]}`` of one image."""
    variants = params["sanity"]["variants"]
    variant = "cascading" if "cascading" in variants else variants[0]
    rows = {m: [maps[(variant, m, stem, d)] for d in range(depth + 1)] for m in params["sanity"]["methods"]}
    return variant, rows


def main() -> None:
    params = load_params()
    model = load_model(**params["model"])
    check_model_params(params, model)  # gradcam layers and explain.target, before any work
    depth = check_depth(params, model)
    target = params["explain"]["target"]
    masks = RiseMasks.load(MASKS) if "rise" in params["sanity"]["methods"] else None
    tables, first = [], None
    for rows, x in prepared_batches(params["compute"]["batch_size"]):  # one batch of images in memory at a time
        stems = list(rows["stem"])
        targets = [target if target is not None else int(c) for c in rows["class_idx"]]
        batch_table, maps = run_sanity(model, x, stems, targets, params, masks)
        tables.append(batch_table)
        if first is None:  # the figure shows the first image: keep its maps only
            first = (stems[0], x[0], {k: v for k, v in maps.items() if k[2] == stems[0]})
    assert first is not None  # prepare never writes an empty manifest
    table = pd.concat(tables, ignore_index=True)
    stem, x0, maps = first
    boot = params["metrics"]["bootstrap"]
    summary = summarize(table, boot["n_resamples"], boot["seed"])
    variant, rows = figure_maps(maps, params, stem, depth)
    layers = table[(table.image == stem) & (table.variant == variant)].drop_duplicates("depth").layer.tolist()
    image = x0.permute(1, 2, 0).numpy()
    fig = plot_sanity(
        rows,
        layers,
        image,
        cmap=params["plots"]["map_cmap"],
        clip_percentile=params["plots"]["clip_percentile"],
        title=f"{variant} randomisation from the logits down, {stem} (Adebayo et al. 2018)",
    )
    with atomic_dir("reports/sanity") as out:
        table.to_csv(out / "per_image.csv", index=False, float_format="%.6g")
        summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
        fig.savefig(out / "sanity.png", dpi=params["plots"]["dpi"])
    with atomic_file("reports/plots/sanity_curves.csv") as tmp:
        curves(summary).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_file("reports/sanity.json") as tmp:
        tmp.write_text(json.dumps(deepest(summary), indent=2, allow_nan=False) + "\n")
    print(
        "sanity: reports/sanity/{per_image,summary}.csv, reports/sanity/sanity.png, reports/sanity.json, "
        "reports/plots/sanity_curves.csv"
    )


if __name__ == "__main__":
    run_stage(main)
