"""Reading and writing the pipeline's artifacts (the contract between stages).

Layout (``<k>`` = ``shard-0``, ``shard-1``, ...: one folder per shard of ``compute.shards``, written by
one DVC stage item each, so a study caches its work per shard)::

    data/prepared/manifest.csv                      prepare   (every image, with its ``shard``)
    data/prepared/<k>/<stem>.png, manifest.csv      prepare   (one folder per shard: what a shard's stages read)
    data/masks/masks.npz                            masks
    data/explanations/<method>/<k>/<stem>.npz       explain   (attribution, map, target)
    data/attacks/<k>/<method>/eps<e>/<stem>.npz     attack    (x_adv, map_<method>..., target_stem, label_adv,
                                                              prob_adv, converged, steps, passes), per budget e (/255)
    data/attacks/<k>/pgd/<stem>.npz                 pgd       (x_adv, map_<method>..., label_adv, prob_adv)
    reports/attack_loss/<method>-eps<e>/<k>.csv     attack    (per-step losses)
    data/untargeted/<method>/eps<e>/<k>/<stem>.npz  untargeted (x_adv_<kind>, map_<kind> per kind)
    reports/untargeted/<method>-eps<e>/<k>.csv      untargeted (per image × kind: top-k intersection, ...)

The attacks are written shard first (``data/attacks/<k>/...``) so that one DVC dependency,
``data/attacks/shard-<k>``, is every attack of shard k: the per-image metrics of a shard rerun only when an
attack of that shard changes. Readers find a file in its shard folder, or in the two earlier layouts
(``data/attacks/<method>/eps<e>/<k>/`` and the one before shards, the file directly in the folder), so older
artifacts and hand-made fixtures stay readable; a CSV ``<name>.csv`` is read whole or as the
concatenation of ``<name>/<k>.csv`` in shard order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .data import to_tensor
from .errors import DeepSaliencyError
from .shards import shard_index, shard_name

PREPARED = Path("data/prepared")
MASKS = Path("data/masks/masks.npz")
EXPLANATIONS = Path("data/explanations")
ATTACKS = Path("data/attacks")
ATTACK_LOSSES = Path("reports/attack_loss")
UNTARGETED = Path("reports/untargeted")
UNTARGETED_ATTACKS = Path("data/untargeted")
#: The prediction attack: one folder, its budget is ``pgd.eps``.
PGD = "pgd"
#: The columns of an attack stage's per-step loss CSV.
LOSS_COLUMNS = ["step", "image", "expl_loss", "output_loss", "beta"]
SHARD_GLOB = "shard-*"


def _in_shard_order(paths: Iterable[Path]) -> list[Path]:
    """Shard folders/files by index (``shard-2`` before ``shard-10``), anything else left out."""
    return sorted((p for p in paths if shard_index(p.name) >= 0), key=lambda p: shard_index(p.name))


def shard_folders(root: str | Path) -> list[Path]:
    """The folders ``root/shard-<k>`` in shard order (``shard-2`` before ``shard-10``); [] when there are none."""
    return _in_shard_order(p for p in Path(root).glob(SHARD_GLOB) if p.is_dir())


def sharded(folder: str | Path, shard: int | None) -> Path:
    """``folder/shard-<k>`` for shard ``k``; ``folder`` itself for None (every shard, or an unsharded layout)."""
    return Path(folder) if shard is None else Path(folder) / shard_name(shard)


def locate(folder: str | Path, name: str, within: str | Path = "") -> Path:
    """The file ``name`` of an image: ``folder/shard-<k>/<within>/name`` (the layout written today), else
    ``folder/<within>/shard-<k>/name`` (the attacks' layout before shard-first), else ``folder/<within>/name``
    (the layout before shards; also what the error names when none exists). ``within`` is empty for the
    explanations (``<method>`` is part of ``folder``). Shard folders win, so a file left over from an unsharded
    run never shadows the current one; and the lowest shard wins, because a folder left over when
    ``compute.shards`` shrank has an index above every current shard."""
    inner = Path(folder) / within
    candidates = [shard / within / name for shard in shard_folders(folder)]
    candidates += [shard / name for shard in shard_folders(inner)] if within else []
    return next((path for path in candidates if path.is_file()), inner / name)


def table_path(path: str | Path, shard: int | None = None) -> Path:
    """Where a per-stage CSV ``<name>.csv`` is written: itself, or ``<name>/shard-<k>.csv`` for shard ``k``."""
    path = Path(path)
    return path if shard is None else path.with_suffix("") / f"{shard_name(shard)}.csv"


def table_exists(path: str | Path) -> bool:
    """Whether :func:`read_table` finds ``path`` whole or in shards."""
    path = Path(path)
    return path.is_file() or bool(_in_shard_order(path.with_suffix("").glob(f"{SHARD_GLOB}.csv")))


def read_table(path: str | Path) -> pd.DataFrame:
    """The shards ``<name>/shard-*.csv`` of a CSV concatenated in shard order, or else ``<name>.csv`` whole.

    Raises:
        DeepSaliencyError: neither exists (names ``path``).
    """
    path = Path(path)
    parts = _in_shard_order(path.with_suffix("").glob(f"{SHARD_GLOB}.csv"))
    if parts:
        return pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    if path.is_file():
        return pd.read_csv(path)
    raise DeepSaliencyError(f"{path}: missing; run the stage that writes it first (dvc repro)")


def read_manifest(prepared: str | Path = PREPARED, shard: int | None = None) -> pd.DataFrame:
    """The prepare stage's manifest (one row per image): every image, or shard ``shard``'s. A folder prepared
    before shards (no ``shard`` column, no shard folders) is shard 0."""
    path = sharded(prepared, shard) / "manifest.csv"
    flat = Path(prepared) / "manifest.csv"
    if not path.is_file() and shard == 0 and flat.is_file():
        manifest = pd.read_csv(flat)
        if "shard" not in manifest.columns:
            return manifest
    if not path.is_file():
        raise DeepSaliencyError(f"{path}: missing; run the prepare stage first (dvc repro prepare)")
    return pd.read_csv(path)


def prepared_image_path(stem: str, prepared: str | Path = PREPARED) -> Path:
    """The prepared PNG of image ``stem`` (in its shard folder)."""
    return locate(prepared, f"{stem}.png")


def load_images(stems: list[str], prepared: str | Path = PREPARED) -> torch.Tensor:
    """The prepared images ``stems`` as (B, 3, H, W) in [0, 1], in the given order."""
    return torch.cat(
        [to_tensor(np.asarray(Image.open(prepared_image_path(s, prepared)).convert("RGB"))) for s in stems]
    )


def read_prepared(prepared: str | Path = PREPARED, shard: int | None = None) -> tuple[pd.DataFrame, torch.Tensor]:
    """The manifest (every image's, or shard ``shard``'s) and its images stacked as (B, 3, H, W) in [0, 1],
    in manifest order. Holds every image in memory: the streaming stages use
    :func:`deepsaliency.stream.prepared_batches` instead."""
    manifest = read_manifest(prepared, shard)
    return manifest, load_images(list(manifest["stem"]), prepared)


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
    return read_npz(locate(Path(root) / method, f"{stem}.npz"))


def eps_name(eps: float) -> str:
    """The folder/key name of an L∞ budget in /255 units: ``eps8``, ``eps0.5`` (``%g``, so 8 and 8.0 agree)."""
    return f"eps{float(eps):g}"


def _attack_within(attack: str, eps: float | None) -> Path:
    return Path(attack) if attack == PGD or eps is None else Path(attack) / eps_name(eps)


def attack_dir(attack: str, eps: float | None = None, root: str | Path = ATTACKS, shard: int | None = None) -> Path:
    """Where one attack run's images of shard ``shard`` are written: ``<root>/shard-<k>/<method>/eps<e>`` for an
    explanation attack at budget ``eps`` (/255 units), ``<root>/shard-<k>/pgd`` for PGD (``eps`` None or PGD's own
    budget: one folder). ``shard`` None: the layout before shards (``<root>/<method>/eps<e>``), which is also the
    name readers give a run in messages."""
    return sharded(root, shard) / _attack_within(attack, eps)


def attack_file(attack: str, stem: str, eps: float | None = None, root: str | Path = ATTACKS) -> Path:
    """The file of image ``stem`` of one attack run, in whichever layout it was written (:func:`locate`)."""
    return locate(root, f"{stem}.npz", _attack_within(attack, eps))


def attack_ran(attack: str, eps: float | None = None, root: str | Path = ATTACKS) -> bool:
    """Whether a folder of this attack run exists in any shard (or in a layout before shard-first)."""
    within = _attack_within(attack, eps)
    return any((shard / within).is_dir() for shard in shard_folders(root)) or (Path(root) / within).is_dir()


def attack_names(root: str | Path = ATTACKS) -> list[str]:
    """The attacks (method folders, ``pgd``) present under ``root`` in any shard or earlier layout, sorted."""
    folders = [p for r in [Path(root), *shard_folders(root)] if r.is_dir() for p in r.iterdir()]
    return sorted({p.name for p in folders if p.is_dir() and not p.name.startswith(".") and shard_index(p.name) < 0})


def attack_loss_file(method: str, eps: float, root: str | Path = ATTACK_LOSSES, shard: int | None = None) -> Path:
    """The per-step loss CSV of the attack on ``method`` at budget ``eps`` (/255): the whole run's name
    (read it with :func:`read_table`), or the file shard ``shard`` writes."""
    return table_path(Path(root) / f"{method}-{eps_name(eps)}.csv", shard)


def untargeted_dir(method: str, eps: float, root: str | Path = UNTARGETED_ATTACKS) -> Path:
    """Where the untargeted attack on ``method`` at budget ``eps`` (/255) writes ``<stem>.npz``: per kind,
    ``x_adv_<kind>`` (3, H, W) and ``map_<kind>`` (H, W), the method's map on it."""
    return Path(root) / method / eps_name(eps)


def untargeted_file(method: str, eps: float, root: str | Path = UNTARGETED, shard: int | None = None) -> Path:
    """The per-image CSV of the untargeted attack (Ghorbani et al. 2019) on ``method`` at budget ``eps`` (/255):
    the whole run's name (read it with :func:`read_table`), or the file shard ``shard`` writes."""
    return table_path(Path(root) / f"{method}-{eps_name(eps)}.csv", shard)


def read_attack(attack: str, stem: str, eps: float | None = None, root: str | Path = ATTACKS) -> dict[str, np.ndarray]:
    """``x_adv`` (3, H, W), ``map_<method>`` (H, W) for each method, ``target_stem``, ``label_adv``, ``prob_adv``
    (and for explanation attacks ``converged``, ``steps``, ``passes``) of one image of one attack run."""
    return read_npz(attack_file(attack, stem, eps, root))
