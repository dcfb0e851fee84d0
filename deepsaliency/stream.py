"""Streaming a prepared image set through a stage in batches, on the backend ``compute`` names.

A stage never stacks the whole prepared set: :func:`prepared_batches` reads ``compute.batch_size`` images at a
time, the batch goes to :func:`deepsaliency.backend.map_batches` (this process or Ray workers) with a task
function from this module, and the stage writes each image's artifact as its batch comes back. Peak memory is
one batch per worker, whatever the number of images.

The task functions are module-level so Ray can pickle them by reference; each receives the worker's model and
a plain-dict payload, and returns NumPy arrays (cheap to ship back).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .artifacts import PREPARED, load_images, read_manifest
from .shards import batched


def prepared_batches(
    batch_size: int, prepared: str | Path = PREPARED, shard: int | None = None
) -> Iterator[tuple[pd.DataFrame, torch.Tensor]]:
    """The manifest's rows and their images, ``batch_size`` at a time, in manifest order.

    Args:
        batch_size: images per batch, ≥ 1 (``compute.batch_size``); the last batch may be smaller.
        prepared: the prepare stage's folder (``manifest.csv``, ``shard-<k>/`` with the images).
        shard: stream only this shard's images (``shard-<k>/manifest.csv``); None = every image.

    Yields:
        ``(rows, x)``: a slice of the manifest and its images (len(rows), 3, H, W) in [0, 1].

    Raises:
        DeepSaliencyError: the manifest is missing. ParamError: ``batch_size`` < 1.
    """
    manifest = read_manifest(prepared, shard)
    for index in batched(range(len(manifest)), batch_size):  # the one place batch boundaries are cut
        rows = manifest.iloc[index[0] : index[-1] + 1]
        yield rows, load_images(list(rows["stem"]), prepared)


def explain_task(model: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Task of the explain stage: attribution and map of ``payload["method"]`` for each image of a batch.

    Args:
        model: the worker's classifier.
        payload: ``method``, ``x`` (B, 3, H, W) in [0, 1], ``stems`` and ``targets`` (B names and class
            indices), ``params`` (the method's keyword arguments, :func:`deepsaliency.experiments.method_kwargs`).

    Returns:
        ``stems`` and ``targets`` as given, ``attributions`` (B arrays (C, H, W)) and ``maps`` (B arrays (H, W)),
        float32. Images are explained one at a time (:func:`deepsaliency.attribution.explain_images`), so the
        result does not depend on the batch size or on the backend.
    """
    from .attribution import explain_images

    results = explain_images(
        model, payload["x"], payload["method"], payload["stems"], payload["targets"], **payload["params"]
    )
    return {
        "stems": payload["stems"],
        "targets": payload["targets"],
        "attributions": [attr.numpy() for attr, _ in results],
        "maps": [smap.numpy() for _, smap in results],
    }
