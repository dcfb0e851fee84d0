"""Reading and writing the pipeline's artifacts (the contract between stages).

Layout::

    data/prepared/<stem>.png, manifest.csv       prepare
    data/masks/masks.npz                          masks
    data/explanations/<method>/<stem>.npz         explain   (attribution, map, target)
    data/attacks/<method>/eps<e>/<stem>.npz       attack    (x_adv, map_<method>..., target_stem, label_adv, prob_adv,
                                                            converged, steps, passes), one folder per budget e (/255)
    data/attacks/pgd/<stem>.npz                   pgd       (x_adv, map_<method>..., label_adv, prob_adv)
    reports/attack_loss/<method>-eps<e>.csv       attack    (per-step losses)
    data/untargeted/<method>/eps<e>/<stem>.npz    untargeted (x_adv_<kind>, map_<kind> per kind)
    reports/untargeted/<method>-eps<e>.csv        untargeted (per image × kind: top-k intersection, ...)
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
ATTACK_LOSSES = Path("reports/attack_loss")
UNTARGETED = Path("reports/untargeted")
UNTARGETED_ATTACKS = Path("data/untargeted")
#: The prediction attack: one folder, its budget is ``pgd.eps``.
PGD = "pgd"
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
    x = torch.cat(
        [to_tensor(np.asarray(Image.open(Path(prepared) / f"{s}.png").convert("RGB"))) for s in manifest["stem"]]
    )
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


def eps_name(eps: float) -> str:
    """The folder/key name of an L∞ budget in /255 units: ``eps8``, ``eps0.5`` (``%g``, so 8 and 8.0 agree)."""
    return f"eps{float(eps):g}"


def attack_dir(attack: str, eps: float | None = None, root: str | Path = ATTACKS) -> Path:
    """Where one attack run's images live: ``<root>/<method>/eps<e>`` for an explanation attack at budget ``eps``
    (/255 units), ``<root>/pgd`` for PGD (``eps`` None or PGD's own budget: one folder)."""
    if attack == PGD or eps is None:
        return Path(root) / attack
    return Path(root) / attack / eps_name(eps)


def attack_loss_file(method: str, eps: float, root: str | Path = ATTACK_LOSSES) -> Path:
    """The per-step loss CSV of the attack on ``method`` at budget ``eps`` (/255)."""
    return Path(root) / f"{method}-{eps_name(eps)}.csv"


def untargeted_dir(method: str, eps: float, root: str | Path = UNTARGETED_ATTACKS) -> Path:
    """Where the untargeted attack on ``method`` at budget ``eps`` (/255) writes ``<stem>.npz``: per kind,
    ``x_adv_<kind>`` (3, H, W) and ``map_<kind>`` (H, W), the method's map on it."""
    return Path(root) / method / eps_name(eps)


def untargeted_file(method: str, eps: float, root: str | Path = UNTARGETED) -> Path:
    """The per-image CSV of the untargeted attack (Ghorbani et al. 2019) on ``method`` at budget ``eps`` (/255)."""
    return Path(root) / f"{method}-{eps_name(eps)}.csv"


def read_attack(attack: str, stem: str, eps: float | None = None, root: str | Path = ATTACKS) -> dict[str, np.ndarray]:
    """``x_adv`` (3, H, W), ``map_<method>`` (H, W) for each method, ``target_stem``, ``label_adv``, ``prob_adv``
    (and for explanation attacks ``converged``, ``steps``, ``passes``) of one image of one attack run."""
    return read_npz(attack_dir(attack, eps, root) / f"{stem}.npz")
