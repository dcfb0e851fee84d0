"""The per-image part of the metrics, computed per shard, and its tables read back whole (issue 14).

The ``metrics_images@<k>`` stage computes, for the images of shard k only, every per-image table of
:mod:`.tables` (map similarity, attack quality, convergence, deletion/insertion AUC and curves) and writes each
to ``data/metrics/shard-<k>/<table>.csv``; the ``metrics`` stage reads them back over all shards
(:func:`read_per_image_tables`) and computes only the summaries. So no process holds more than one shard's maps,
and each shard's forward passes are cached by DVC with its shard.

The CSVs keep full precision (``repr`` floats round-trip exactly), ``NaN`` written as such and the text columns
read back as text (a stem ``0001`` stays ``0001``), so the summaries equal those of one in-process computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..artifacts import ATTACKS, PREPARED, load_images, read_manifest, shard_folders, sharded
from ..errors import DeepSaliencyError
from ..shards import batched
from . import tables

#: Where the per-image tables of every shard live: ``<root>/shard-<k>/<table>.csv``.
PER_IMAGE = Path("data/metrics")
#: The per-image tables, by the file name the metrics stage writes them under in reports/metrics/.
TABLES = (
    "map_similarity",
    "attack_quality",
    "convergence",
    "faithfulness",
    "deletion_curves",
    "insertion_curves",
)
#: Columns that hold names, never numbers.
TEXT_COLUMNS = ("image", "attack", "method", "pair", "target", "label")


def compute_per_image_tables(
    model: torch.nn.Module,
    params: dict,
    shard: int | None = None,
    prepared: str | Path = PREPARED,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Every per-image table (:data:`TABLES`) of the images of ``shard`` (None: every image), computed
    ``compute.batch_size`` images at a time so that memory holds one batch's images and maps (plus the maps of
    their attack targets), never the shard's.

    Args:
        model: the classifier the faithfulness curves query.
        params: the validated params (``explain.methods``, ``attack``, ``pgd``, ``metrics``, ``faithfulness``,
            ``compute.batch_size``).
        shard: a shard index of ``compute.shards``; None reads every prepared image.
        prepared: the prepare stage's folder.
        progress: a tqdm bar over the faithfulness curves of each batch.

    Returns:
        ``{table name: DataFrame}`` (the columns of :mod:`.tables`): the same values, and the rows in the order
        one batch of every image would give (attack run, then image in manifest order), whatever the batch size.

    Raises:
        DeepSaliencyError: no explanation folder of ``explain.methods`` exists, or an artifact is missing or broken.
        AttributionError: a map has NaN/infinite or negative values.
    """
    # A shard's attacks are read from its own folder only (what its DVC item depends on): a file missing there is
    # an error, never a stale copy from another layout. A workspace from before shard-first layouts reads as before.
    attacks = sharded(ATTACKS, shard)
    attacks = attacks if shard is not None and attacks.is_dir() else ATTACKS
    methods, runs = tables.available_methods(params), tables.available_attacks(params, attacks)
    if not methods:
        raise DeepSaliencyError(
            f"data/explanations: no folder for any of explain.methods {params['explain']['methods']}; "
            "run the explain stages first"
        )
    manifest = read_manifest(prepared, shard)
    classes = dict(zip((str(s) for s in manifest["stem"]), (int(c) for c in manifest["class_idx"]), strict=True))
    stems = list(classes)
    parts = [
        _batch_tables(model, params, chunk, classes, methods, runs, prepared, attacks, progress)
        for chunk in (batched(stems, params["compute"]["batch_size"]) if stems else [[]])
    ]
    order = {run: i for i, run in enumerate([("none", 0.0), *((a, float(e)) for a, e in runs)])}
    return {name: _in_run_order(pd.concat([p[name] for p in parts], ignore_index=True), order) for name in TABLES}


def _in_run_order(df: pd.DataFrame, order: dict[tuple[str, float], int]) -> pd.DataFrame:
    """Rows stably sorted by attack run: each batch lists run-major, so this restores the order of one batch."""
    if df.empty:
        return df
    key = [order[(str(a), float(e))] for a, e in zip(df["attack"], df["eps"], strict=True)]
    return df.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)


def _batch_tables(
    model: torch.nn.Module,
    params: dict,
    stems: Sequence[str],
    classes: dict[str, int],
    methods: list[str],
    runs: list[tables.Run],
    prepared: str | Path,
    attacks: Path,
    progress: bool,
) -> dict[str, pd.DataFrame]:
    x = load_images(list(stems), prepared) if stems else torch.empty(0)
    images = {s: xi.numpy() for s, xi in zip(stems, x, strict=True)}
    batch_classes = {s: classes[s] for s in stems}
    adv = tables.load_attacks(runs, stems, methods, attacks)
    targets = sorted({str(rec["target_stem"]) for rec in adv.values() if rec["target_stem"]} - set(stems))
    # every input map checked (NaN/inf → AttributionError) before any work; the targets' maps for the pairs
    maps = tables.load_maps(methods, [*stems, *(t for t in targets if t in classes)])
    # exact (the manifest's are rounded), one image at a time so that no value depends on compute.batch_size
    probs = tables.class_probabilities(model, images, batch_classes, batch_size=1)
    settings = tables.settings_from_params(params)
    faith, deletion, insertion = tables.faithfulness_table(
        model, images, batch_classes, maps, adv, methods, settings, progress=progress
    )
    return {
        "map_similarity": tables.map_similarity_table(maps, adv, methods, settings.top_k),
        "attack_quality": tables.attack_quality_table(images, batch_classes, probs, adv),
        "convergence": tables.convergence_table(adv),
        "faithfulness": faith,
        "deletion_curves": deletion,
        "insertion_curves": insertion,
    }


def write_per_image_tables(computed: dict[str, pd.DataFrame], folder: Path) -> None:
    """Write each table to ``folder/<table>.csv`` (full precision, ``NaN`` spelled out); ``folder`` is one
    shard's (the stage passes an atomic temporary folder)."""
    for name in TABLES:
        computed[name].to_csv(Path(folder) / f"{name}.csv", index=False, na_rep="NaN")


def read_per_image_tables(root: str | Path = PER_IMAGE) -> dict[str, pd.DataFrame]:
    """Every shard's per-image tables, concatenated in shard order (:func:`deepsaliency.artifacts.read_table`).

    Raises:
        DeepSaliencyError: a table has no shard file (names it; run the metrics_images stages first).
    """
    folders = shard_folders(root)
    if not folders:
        raise DeepSaliencyError(f"{root}: no shard-<k> folder; run the metrics_images stages first (dvc repro)")
    out = {}
    for name in TABLES:
        frames = []
        for folder in folders:
            path = folder / f"{name}.csv"
            if not path.is_file():
                raise DeepSaliencyError(f"{path}: missing; rerun the metrics_images stage of {folder.name}")
            if path.stat().st_size > 1:  # an empty shard writes a table without rows or columns
                text = dict.fromkeys(TEXT_COLUMNS, str)
                frames.append(pd.read_csv(path, dtype=text, keep_default_na=False, na_values=["NaN"]))
        out[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out
