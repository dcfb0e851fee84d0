"""Stage metrics: prepared images, explanations and attacks → reports/metrics.json, reports/metrics/*.csv,
reports/plots/{deletion,insertion}_curves.csv and reports/plots/attack_loss.csv. The logic lives in
deepsaliency.metrics.tables."""
import json
import time
from pathlib import Path
from typing import Iterable

import pandas as pd

from deepsaliency.artifacts import read_prepared
from deepsaliency.config import load_params
from deepsaliency.errors import DeepSaliencyError
from deepsaliency.metrics import tables
from deepsaliency.models import load_model
from deepsaliency.stage import atomic_dir, atomic_file, run_stage

#: Where each attack@<method> stage writes its per-step losses, and the columns it writes.
ATTACK_LOSS_DIR = Path("reports/attack_loss")
LOSS_COLUMNS = ["step", "image", "expl_loss", "output_loss", "beta"]


def attack_loss_table(attacks: Iterable[str], root: str | Path = ATTACK_LOSS_DIR) -> pd.DataFrame:
    """The loss curves of exactly ``attacks`` as one long table for ``dvc plots`` and the report.

    A stage whose method was dropped from ``attack.methods`` leaves its ``<root>/<method>.csv`` on disk
    (DVC never deletes outputs of a stage that left dvc.yaml), so this reads the listed files by name,
    never every CSV found.

    Args:
        attacks: explanation attacks (``attack.methods`` whose stage ran), in report order.
        root: the folder of ``<attack>.csv`` files (columns step, image, expl_loss, output_loss, beta).

    Returns:
        Columns ``attack, step, image, expl_loss, output_loss, beta``; one row per (attack, image, step);
        no row when ``attacks`` is empty.

    Raises:
        DeepSaliencyError: a listed attack's CSV is missing or lacks a column (names the file).
    """
    tables = []
    for attack in attacks:
        path = Path(root) / f"{attack}.csv"
        if not path.is_file():
            raise DeepSaliencyError(f"{path}: missing, but data/attacks/{attack} exists; "
                                    f"rerun the attack@{attack} stage")
        df = pd.read_csv(path)
        lack = [c for c in LOSS_COLUMNS if c not in df.columns]
        if lack:
            raise DeepSaliencyError(f"{path}: columns {list(df.columns)} lack {lack}")
        tables.append(df[LOSS_COLUMNS].assign(attack=attack))
    if not tables:
        return pd.DataFrame(columns=["attack", *LOSS_COLUMNS])
    return pd.concat(tables, ignore_index=True)[["attack", *LOSS_COLUMNS]]


def main() -> None:
    params = load_params()
    settings = tables.settings_from_params(params)
    methods, attacks = tables.available_methods(params), tables.available_attacks(params)
    if not methods:
        raise DeepSaliencyError(f"data/explanations: no folder for any of explain.methods {params['explain']['methods']}; run the explain stages first")
    manifest, x = read_prepared()
    stems = list(manifest["stem"])
    images = {s: xi.numpy() for s, xi in zip(stems, x)}
    classes = dict(zip(stems, (int(c) for c in manifest["class_idx"])))
    print(f"metrics: {len(stems)} images, methods {methods}, attacks {attacks or 'none'}")
    maps = tables.load_maps(methods, stems)  # every input map checked (NaN/inf → AttributionError) before any work
    adv = tables.load_attacks(attacks, stems, methods)
    losses = attack_loss_table([a for a in attacks if a != tables.PGD])  # PGD logs no loss curve
    model = load_model(**params["model"])
    probs = tables.class_probabilities(model, images, classes)  # exact; the manifest's are rounded to 6 decimals

    t0 = time.perf_counter()
    similarity = tables.map_similarity_table(maps, adv, methods, settings.top_k)
    quality = tables.attack_quality_table(images, classes, probs, adv)
    t1 = time.perf_counter()
    faith, deletion, insertion = tables.faithfulness_table(model, images, classes, maps, adv, methods, settings)
    t2 = time.perf_counter()
    print(f"metrics: map similarity + attack quality {t1 - t0:.1f} s, faithfulness ({len(faith)} maps) {t2 - t1:.1f} s")

    summary = tables.rounded(tables.summarize(similarity, quality, faith, settings))  # CIs and the ranked leaderboard
    named = {"map_similarity.csv": similarity, "attack_quality.csv": quality, "faithfulness.csv": faith}
    for name, df in {**named, "deletion_curves.csv": deletion, "insertion_curves.csv": insertion}.items():
        tables.assert_finite_table(df, name)
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
    print("metrics: reports/metrics.json, reports/metrics/*.csv, reports/plots/{deletion,insertion}_curves.csv, "
          "reports/plots/attack_loss.csv")


if __name__ == "__main__":
    run_stage(main)
