"""Stage metrics: prepared images, explanations and attacks → reports/metrics.json, reports/metrics/*.csv
(per-image tables, the convergence of each attack and the manipulability curves), reports/plots/*.csv.
The logic lives in deepsaliency.metrics.tables (per-image tables) and deepsaliency.metrics.summary (CIs, ranks)."""

import json
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from deepsaliency.artifacts import ATTACK_LOSSES, PGD, attack_loss_file, read_prepared
from deepsaliency.config import load_params
from deepsaliency.errors import DeepSaliencyError
from deepsaliency.metrics import summary as summaries
from deepsaliency.metrics import tables
from deepsaliency.models import load_model
from deepsaliency.stage import atomic_dir, atomic_file, run_stage

#: The columns each attack@<method>-<eps> stage writes to its per-step loss CSV.
LOSS_COLUMNS = ["step", "image", "expl_loss", "output_loss", "beta"]


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
        if not path.is_file():
            raise DeepSaliencyError(
                f"{path}: missing, but the attack's images exist; rerun the attack@{attack}-{eps:g} stage"
            )
        df = pd.read_csv(path)
        lack = [c for c in LOSS_COLUMNS if c not in df.columns]
        if lack:
            raise DeepSaliencyError(f"{path}: columns {list(df.columns)} lack {lack}")
        frames.append(df[LOSS_COLUMNS].assign(attack=attack, eps=eps))
    if not frames:
        return pd.DataFrame(columns=["attack", "eps", *LOSS_COLUMNS])
    return pd.concat(frames, ignore_index=True)[["attack", "eps", *LOSS_COLUMNS]]


def main() -> None:
    params = load_params()
    settings = tables.settings_from_params(params)
    methods, attacks = tables.available_methods(params), tables.available_attacks(params)
    if not methods:
        raise DeepSaliencyError(
            f"data/explanations: no folder for any of explain.methods "
            f"{params['explain']['methods']}; run the explain stages first"
        )
    manifest, x = read_prepared()
    stems = list(manifest["stem"])
    images = {s: xi.numpy() for s, xi in zip(stems, x, strict=True)}
    classes = dict(zip(stems, (int(c) for c in manifest["class_idx"]), strict=True))
    print(f"metrics: {len(stems)} images, methods {methods}, attacks {attacks or 'none'}")
    maps = tables.load_maps(methods, stems)  # every input map checked (NaN/inf → AttributionError) before any work
    adv = tables.load_attacks(attacks, stems, methods)
    losses = attack_loss_table([r for r in attacks if r[0] != PGD])  # PGD logs no loss curve
    model = load_model(**params["model"])
    probs = tables.class_probabilities(model, images, classes)  # exact; the manifest's are rounded to 6 decimals

    t0 = time.perf_counter()
    similarity = tables.map_similarity_table(maps, adv, methods, settings.top_k)
    quality = tables.attack_quality_table(images, classes, probs, adv)
    convergence = tables.convergence_table(adv)
    t1 = time.perf_counter()
    faith, deletion, insertion = tables.faithfulness_table(model, images, classes, maps, adv, methods, settings)
    t2 = time.perf_counter()
    print(f"metrics: map similarity + attack quality {t1 - t0:.1f} s, faithfulness ({len(faith)} maps) {t2 - t1:.1f} s")

    # CIs over images and the ranked leaderboard
    summary = summaries.rounded(summaries.summarize(similarity, quality, faith, settings, convergence))
    curves = summaries.manipulability_table(similarity, convergence, settings.bootstrap)
    named = {
        "map_similarity.csv": similarity,
        "attack_quality.csv": quality,
        "faithfulness.csv": faith,
        "convergence.csv": convergence,
        "manipulability.csv": curves,
    }
    for name, df in {**named, "deletion_curves.csv": deletion, "insertion_curves.csv": insertion}.items():
        summaries.assert_finite_table(df, name)
    with atomic_dir("reports/metrics") as out:
        for name, df in named.items():
            df.to_csv(out / name, index=False, float_format="%.6g")
    for name, df in (("deletion_curves.csv", deletion), ("insertion_curves.csv", insertion)):
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
