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

from pathlib import Path

import pandas as pd
import torch

from ..artifacts import PREPARED, load_images, read_manifest
from ..errors import DeepSaliencyError
from ..shards import shard_index
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
    """Every per-image table (:data:`TABLES`) of the images of ``shard`` (None: every image).

    Args:
        model: the classifier the faithfulness curves query.
        params: the validated params (``explain.methods``, ``attack``, ``pgd``, ``metrics``, ``faithfulness``).
        shard: a shard index of ``compute.shards``; None reads every prepared image.
        prepared: the prepare stage's folder.
        progress: a tqdm bar over the faithfulness curves.

    Returns:
        ``{table name: DataFrame}`` (the columns of :mod:`.tables`).

    Raises:
        DeepSaliencyError: no explanation folder of ``explain.methods`` exists, or an artifact is missing or broken.
        AttributionError: a map has NaN/infinite or negative values.
    """
    settings = tables.settings_from_params(params)
    methods, attacks = tables.available_methods(params), tables.available_attacks(params)
    if not methods:
        raise DeepSaliencyError(
            f"data/explanations: no folder for any of explain.methods {params['explain']['methods']}; "
            "run the explain stages first"
        )
    manifest = read_manifest(prepared, shard)
    stems = [str(s) for s in manifest["stem"]]
    x = load_images(stems, prepared) if stems else torch.empty(0)
    images = {s: xi.numpy() for s, xi in zip(stems, x, strict=True)}
    classes = dict(zip(stems, (int(c) for c in manifest["class_idx"]), strict=True))
    maps = tables.load_maps(methods, stems)  # every input map checked (NaN/inf → AttributionError) before any work
    adv = tables.load_attacks(attacks, stems, methods)
    probs = tables.class_probabilities(model, images, classes)  # exact; the manifest's are rounded to 6 decimals
    faith, deletion, insertion = tables.faithfulness_table(
        model, images, classes, maps, adv, methods, settings, progress=progress
    )
    return {
        "map_similarity": tables.map_similarity_table(maps, adv, methods, settings.top_k),
        "attack_quality": tables.attack_quality_table(images, classes, probs, adv),
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
    folders = sorted(
        (p for p in Path(root).glob("shard-*") if shard_index(p.name) >= 0), key=lambda p: shard_index(p.name)
    )
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
