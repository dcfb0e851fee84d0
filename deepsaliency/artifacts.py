"""Reading and writing the pipeline's artifacts (the contract between stages).

Layout::

    data/prepared/<stem>.png, manifest.csv       prepare
    data/masks/masks.npz                          masks
    data/explanations/<method>/<stem>.npz         explain   (attribution, map, target)
    data/attacks/<attack>/<stem>.npz              attack    (x_adv, map_<method>..., target_stem, label_adv, prob_adv)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .data import to_tensor
from .errors import DeepSaliencyError

PREPARED = Path("data/prepared")
MASKS = Path("data/masks/masks.npz")
EXPLANATIONS = Path("data/explanations")
ATTACKS = Path("data/attacks")
MANIFEST_COLUMNS = ["file", "stem", "class_idx", "label", "prob"]


def read_manifest(prepared: str | Path = PREPARED) -> pd.DataFrame:
    """The prepare stage's manifest (one row per image)."""
    path = Path(prepared) / "manifest.csv"
    if not path.is_file():
        raise DeepSaliencyError(f"{path}: missing; run the prepare stage first (dvc repro prepare)")
    return pd.read_csv(path)


def read_prepared(prepared: str | Path = PREPARED) -> tuple[pd.DataFrame, torch.Tensor]:
    """The manifest and the prepared images stacked as (B, 3, H, W) in [0, 1], in manifest order."""
    manifest = read_manifest(prepared)
    x = torch.cat([to_tensor(np.asarray(Image.open(Path(prepared) / f"{s}.png").convert("RGB"))) for s in manifest["stem"]])
    return manifest, x


def write_npz(path: str | Path, **arrays) -> None:
    """Write arrays to ``path`` (no ``.npz`` appended, uncompressed so bytes are reproducible)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, loaded eagerly."""
    path = Path(path)
    if not path.is_file():
        raise DeepSaliencyError(f"{path}: missing; run the stage that writes it first (dvc repro)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_explanation(method: str, stem: str, root: str | Path = EXPLANATIONS) -> dict[str, np.ndarray]:
    """``attribution`` (C, H, W), ``map`` (H, W) and ``target`` of one image."""
    return read_npz(Path(root) / method / f"{stem}.npz")


def read_attack(attack: str, stem: str, root: str | Path = ATTACKS) -> dict[str, np.ndarray]:
    """``x_adv`` (3, H, W), ``map_<method>`` (H, W) for each method, ``target_stem``, ``label_adv``, ``prob_adv``."""
    return read_npz(Path(root) / attack / f"{stem}.npz")
