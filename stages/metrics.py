"""Stage metrics: every shard's per-image tables (the metrics_images stages), the attack losses and the untargeted
and stability stages' tables → reports/metrics.json, reports/metrics/*.csv (per-image tables, the convergence of
each attack, the manipulability curves, the defence and untargeted-attack summaries, and the report's summary
tables at the ranked budget), reports/plots/*.csv. Loads no model and no map. The logic lives in
deepsaliency.metrics: per_image and tables (per-image), summary (CIs, ranks), aggregates (the report's tables),
defence_table and untargeted_summary (issue 16)."""

import json
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from deepsaliency.artifacts import (
    ATTACK_LOSSES,
    LOSS_COLUMNS,
    PGD,
    UNTARGETED,
    attack_loss_file,
    read_table,
    table_exists,
)
from deepsaliency.errors import DeepSaliencyError
from deepsaliency.metrics import aggregates, tables
from deepsaliency.metrics import defence_table as defence
from deepsaliency.metrics import summary as summaries
from deepsaliency.metrics import untargeted_summary as untargeted
from deepsaliency.metrics.per_image import read_per_image_tables
from deepsaliency.metrics.statistics import Bootstrap
from deepsaliency.params import load_params
from deepsaliency.stage import atomic_dir, atomic_file, run_stage


def attack_loss_table(runs: Iterable[tuple[str, float]], root: str | Path = ATTACK_LOSSES) -> pd.DataFrame:
    """The loss curves of exactly ``runs`` as one long table for ``dvc plots`` and the report.

    A stage whose method or budget was dropped from ``attack.methods``/``attack.eps`` leaves its CSV on disk
    (DVC never deletes outputs of a stage that left dvc.yaml), so this reads the listed files by name,
    never every CSV found.

    Args:
        runs: explanation attack runs ``(method, eps /255)`` whose stage ran, in report order.
        root: the folder of ``<method>-eps<e>.csv`` files (columns step, image, expl_loss, output_loss, beta).

    Returns:
        Columns ``attack, eps, step, image, expl_loss, output_loss, beta``; one row per (run, image, step);
        no row when ``runs`` is empty.

    Raises:
        DeepSaliencyError: a listed run's CSV is missing or lacks a column (names the file).
    """
    frames = []
    for attack, eps in runs:
        path = attack_loss_file(attack, eps, root)
        if not table_exists(path):
            raise DeepSaliencyError(
                f"{path}: missing, but the attack's images exist; rerun the attack@{attack}-{eps:g} stages"
            )
        df = read_table(path)
        lack = [c for c in LOSS_COLUMNS if c not in df.columns]
        if lack:
            raise DeepSaliencyError(f"{path}: columns {list(df.columns)} lack {lack}")
        frames.append(df[LOSS_COLUMNS].assign(attack=attack, eps=eps))
    if not frames:
        return pd.DataFrame(columns=["attack", "eps", *LOSS_COLUMNS])
    return pd.concat(frames, ignore_index=True)[["attack", "eps", *LOSS_COLUMNS]]


#: The stability stage's summary (method, metric, mean, ci_low, ci_high, n); optional.
STABILITY_SUMMARY = Path("reports/stability/summary.csv")


def trust_tables(
    params: dict,
    methods: list[str],
    similarity: pd.DataFrame,
    faith: pd.DataFrame,
    fragile_rows: pd.DataFrame,
    boot: Bootstrap,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The defence table, the untargeted attack's summary (``fragile_rows``: :func:`untargeted.load_untargeted`) and
    the stability columns of the leaderboard: ``({csv name: table}, {metrics.json key: block})``; empty blocks left out.
    """
    budgets = [float(e) for e in (params.get("attack") or {}).get("eps", [])]
    labels = defence.defence_labels(params)
    shield = defence.defence_table(similarity, faith, budgets, labels, boot)
    fragile = untargeted.untargeted_table(fragile_rows, boot)
    stability = pd.read_csv(STABILITY_SUMMARY) if STABILITY_SUMMARY.is_file() else None
    blocks = {
        "defence": defence.defence_summary(shield),
        "untargeted": untargeted.untargeted_summary(fragile),
        "stability": defence.stability_board(stability, methods),
    }
    return {"defence.csv": shield, "untargeted.csv": fragile}, {k: v for k, v in blocks.items() if v}


def main() -> None:
    params = load_params()
    settings = tables.settings_from_params(params)
    methods, attacks = tables.available_methods(params), tables.available_attacks(params)
    if not methods:
        raise DeepSaliencyError(
            f"data/explanations: no folder for any of explain.methods "
            f"{params['explain']['methods']}; run the explain stages first"
        )
    t0 = time.perf_counter()
    per_image = read_per_image_tables()  # every shard's, computed by the metrics_images stages
    similarity, quality, convergence = (per_image[k] for k in ("map_similarity", "attack_quality", "convergence"))
    faith, deletion, insertion = (per_image[k] for k in ("faithfulness", "deletion_curves", "insertion_curves"))
    losses = attack_loss_table([r for r in attacks if r[0] != PGD])  # PGD logs no loss curve
    fragile_rows = untargeted.load_untargeted(untargeted.untargeted_runs(params, UNTARGETED))  # checked up front
    images = quality["image"].nunique() if len(quality) else len(set(faith.get("image", [])))
    print(
        f"metrics: {images} images, methods {methods}, attacks {attacks or 'none'}; "
        f"per-image tables of {len(faith)} scored maps read in {time.perf_counter() - t0:.1f} s"
    )

    # CIs over images and the ranked leaderboard
    summary = summaries.rounded(summaries.summarize(similarity, quality, faith, settings, convergence))
    curves = summaries.manipulability_table(similarity, convergence, settings.bootstrap)
    extra, blocks = trust_tables(params, methods, similarity, faith, fragile_rows, settings.bootstrap)
    if "stability" in blocks and "leaderboard" in summary:
        summary["leaderboard"]["stability"] = blocks.pop("stability")
    summary.update(summaries.rounded({k: v for k, v in blocks.items() if k != "stability"}))
    summaries.assert_finite(summary)
    named = {
        "map_similarity.csv": similarity,
        "attack_quality.csv": quality,
        "faithfulness.csv": faith,
        "convergence.csv": convergence,
        "manipulability.csv": curves,
        **extra,
    }
    # The report's tables, at the budget the leaderboard ranks at: the report reads them and computes nothing.
    shown = (summary.get("leaderboard") or {}).get("eps", settings.rank_eps)
    names = list(dict.fromkeys(a for a, _ in attacks))
    report_tables = aggregates.summary_tables(similarity, quality, faith, shown, methods, names)
    plot_tables = {"deletion_curves.csv": deletion, "insertion_curves.csv": insertion}
    write_outputs(named, report_tables, plot_tables, losses, summary)


def write_outputs(
    named: dict[str, pd.DataFrame],
    report_tables: dict[str, pd.DataFrame],
    curves: dict[str, pd.DataFrame],
    losses: pd.DataFrame,
    summary: dict,
) -> None:
    """Check every long table for NaN/inf, then write reports/metrics/*.csv (``report_tables`` with their index:
    :func:`aggregates.summary_tables`, NaN = not available), the plots' CSVs and metrics.json."""
    for name, df in {**named, **curves}.items():
        if name != "defence.csv":  # its empty cells are pairs not measured, each with a note saying why
            summaries.assert_finite_table(df, name)
    with atomic_dir("reports/metrics") as out:
        for name, df in named.items():
            df.to_csv(out / name, index=False, float_format="%.6g")
        aggregates.write_summary_tables(out, report_tables)
    for name, df in curves.items():
        with atomic_file(f"reports/plots/{name}") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_file("reports/plots/attack_loss.csv") as tmp:
        losses.to_csv(tmp, index=False)  # full precision: the attack stages' values, regrouped
    with atomic_file("reports/metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    print(
        "metrics: reports/metrics.json, reports/metrics/*.csv, reports/plots/{deletion,insertion}_curves.csv, "
        "reports/plots/attack_loss.csv"
    )


if __name__ == "__main__":
    run_stage(main)
