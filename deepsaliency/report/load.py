"""Reading the report's inputs: the prepare stage's manifest, the maps, the attacks and the metrics stage's outputs.

Files are read through :mod:`deepsaliency.artifacts` (paths and ``.npz`` layout live there). Every input is
optional: an absent or unreadable one is None (or empty) with a sentence in :attr:`Artifacts.notes`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import artifacts
from ..methods import METHODS
from ..metrics.aggregates import ATTACK_ORDER, ORIGINAL, RANDOM, SUMMARY_TABLES, adversarials, ordered, originals

__all__ = [
    "ATTACK_ORDER", "ORIGINAL", "OPTIONAL_TABLES", "PGD", "RANDOM", "Artifacts", "adversarials", "load_artifacts",
    "ordered", "originals", "read_table", "tidy",
]  # fmt: skip

#: The untargeted attack (no target map, no attacked method).
PGD = artifacts.PGD

# Column names older metric tables used; read as the metrics stage names them today.
_ALIASES = {
    "stem": "image", "img": "image",
    "explain_method": "method", "explanation": "method", "evaluated_method": "method",
    "attacked_method": "attack", "attack_method": "attack",
    "topk": "top_k", "top_k_intersection": "top_k",
    "deletion_auc": "deletion", "insertion_auc": "insertion", "del_auc": "deletion", "ins_auc": "insertion",
    "comparison": "pair",
    "linf": "linf_255", "l_inf": "linf_255", "l2": "l2_255",
    "frac": "fraction", "x": "fraction", "probability": "prob", "p": "prob",
}  # fmt: skip


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Lower-case, stripped column names with known aliases renamed (never onto a column that exists);
    string cells stripped; ``pair`` values with ``-`` or spaces written with ``_``."""
    df = df.rename(columns=lambda c: str(c).strip().lower())
    df = df.rename(columns={c: _ALIASES[c] for c in df.columns if c in _ALIASES and _ALIASES[c] not in df.columns})
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].map(lambda v: v.strip() if isinstance(v, str) else v)
    if "pair" in df.columns:
        df["pair"] = df["pair"].map(lambda v: re.sub(r"[\s\-→>]+", "_", v.lower()) if isinstance(v, str) else v)
    return df


def read_table(path: Path, notes: list[str], what: str) -> pd.DataFrame | None:
    """A CSV through :func:`tidy`, or None with a note when the file is absent, empty or not CSV."""
    if not path.is_file():
        notes.append(f"{what}: {path} is missing (the stage that writes it has not run).")
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        notes.append(f"{what}: {path} could not be read as CSV ({str(exc).splitlines()[0]}).")
        return None
    if df.empty:
        notes.append(f"{what}: {path} has no rows.")
        return None
    return tidy(df)


@dataclass
class Artifacts:
    """Everything the report reads; absent inputs are None (or empty) and explained in ``notes``.

    ``extra`` holds the optional tables of later stages (``manipulability``, ``sanity``, ``stability``, ``defence``,
    ``untargeted``); ``summary`` the metrics stage's summary tables (:data:`SUMMARY_TABLES`, indexed), the only
    source of the report's numbers besides metrics.json. The per-image tables only say which budgets exist.
    """

    root: Path
    manifest: pd.DataFrame | None = None
    methods: list[str] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    metrics: dict | None = None
    map_similarity: pd.DataFrame | None = None
    attack_quality: pd.DataFrame | None = None
    faithfulness: pd.DataFrame | None = None
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    attack_loss: dict[str, pd.DataFrame] = field(default_factory=dict)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The images the per-image figures draw (None = every image): :func:`select_images`.
    shown: list[str] | None = None

    def image(self, stem: str) -> np.ndarray:
        """The prepared image ``stem`` as uint8 (H, W, 3)."""
        path = artifacts.prepared_image_path(stem, self.root / artifacts.PREPARED)
        return np.asarray(Image.open(path).convert("RGB"))

    def explanation_path(self, method: str, stem: str) -> Path:
        """The explanation file of ``method`` on image ``stem`` (in its shard folder)."""
        return artifacts.locate(self.root / artifacts.EXPLANATIONS / method, f"{stem}.npz")

    def explanation(self, method: str, stem: str) -> dict[str, np.ndarray]:
        """``attribution`` and ``map`` of ``method`` on image ``stem``."""
        return artifacts.read_explanation(method, stem, self.root / artifacts.EXPLANATIONS)

    def attack_path(self, attack: str, stem: str, eps: float | None = None) -> Path:
        """The attack file of ``stem`` at budget ``eps`` (/255); an old run without budget folders: ``eps`` ignored."""
        path = artifacts.attack_file(attack, stem, eps, self.root / artifacts.ATTACKS)
        old = artifacts.attack_file(attack, stem, None, self.root / artifacts.ATTACKS)
        return old if not path.is_file() and old.is_file() else path

    def attack(self, attack: str, stem: str, eps: float | None = None) -> dict[str, np.ndarray]:
        """``x_adv``, ``map_<method>``, ``target_stem``, ... of ``stem`` under ``attack`` at budget ``eps``."""
        return artifacts.read_npz(self.attack_path(attack, stem, eps))


def _folders(path: Path) -> list[str]:
    return [p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")] if path.is_dir() else []


def _load_names(art: Artifacts, methods: Sequence[str] | None, attacks: Sequence[str] | None) -> None:
    expl, atk = art.root / artifacts.EXPLANATIONS, art.root / artifacts.ATTACKS
    found = _folders(expl)
    wanted = list(methods) if methods is not None else ordered(found, METHODS)
    art.methods = [m for m in wanted if m in found]
    art.notes += [
        f"Explanations: {expl / m} is missing (run the explain stage for {m})." for m in wanted if m not in found
    ]
    found = artifacts.attack_names(atk)
    art.attacks = ordered(found, ATTACK_ORDER) if attacks is None else [a for a in attacks if a in found]
    for a in attacks or []:
        if a not in found:
            art.notes.append(f"Attacks: no {a} folder under {atk} (run the {a if a == PGD else 'attack@' + a} stage).")
    if not art.attacks:
        art.notes.append(f"Attacks: {atk} has no attack folder (run the attack stages).")


def _load_losses(art: Artifacts, attacks: Sequence[str] | None) -> None:
    path = art.root / "reports/plots/attack_loss.csv"
    losses = read_table(path, art.notes, "Attack loss curves")
    if losses is not None and "attack" not in losses.columns:
        art.notes.append(f"Attack loss curves: {path} has no attack column.")
        return
    if losses is None:
        return
    names = ordered(losses["attack"].astype(str), ATTACK_ORDER) if attacks is None else art.attacks
    for name in names:
        df = losses[losses["attack"].astype(str) == name].drop(columns="attack")
        if not df.empty:
            art.attack_loss[name] = df.reset_index(drop=True)
    if not art.attack_loss:
        art.notes.append(f"Attack loss curves: {path} has no row of {names or 'any attack'}.")


def _load_metrics(art: Artifacts) -> None:
    mj = art.root / "reports/metrics.json"
    if not mj.is_file():
        art.notes.append(f"Summary metrics: {mj} is missing (run the metrics stage).")
        return
    try:
        art.metrics = json.loads(mj.read_text())
    except json.JSONDecodeError as exc:
        art.notes.append(f"Summary metrics: {mj} is not valid JSON ({exc.msg} at line {exc.lineno}).")


#: Optional inputs of later stages: key → (path under root, what). Absent → the section is left out, no note.
OPTIONAL_TABLES = {
    "manipulability": ("reports/metrics/manipulability.csv", "Manipulability"),
    "sanity": ("reports/sanity/summary.csv", "Sanity checks"),
    "stability": ("reports/stability/summary.csv", "Stability"),
    "defence": ("reports/metrics/defence.csv", "Defence"),
    "untargeted": ("reports/metrics/untargeted.csv", "Untargeted attack"),
}


def select_images(stems: Sequence[str], max_images: int, seed: int = 0) -> list[str]:
    """At most ``max_images`` of ``stems``: all of them if they fit, else the first ``max_images`` of a permutation
    drawn with ``seed`` (the same set on every run), in the given order."""
    if len(stems) <= max_images:
        return list(stems)
    chosen = set(np.random.default_rng(seed).permutation(len(stems))[:max_images].tolist())
    return [s for i, s in enumerate(stems) if i in chosen]


def load_artifacts(
    root: str | Path = ".", methods: Sequence[str] | None = None, attacks: Sequence[str] | None = None
) -> Artifacts:
    """Read every report input under ``root`` that exists.

    A folder or loss curve of a method or attack that is not listed is left out: DVC keeps the outputs
    of a stage dropped from a ``foreach`` list on disk, and the report shows only what the params list.

    Args:
        root: the repository root (where ``data/`` and ``reports/`` are).
        methods: explanation methods to show, in order (e.g. ``explain.methods``); None → every folder found.
        attacks: attacks to show, in order (``attack.methods`` and ``pgd``); None → every folder found.

    Returns:
        The :class:`Artifacts`; a missing input is None/empty with a sentence in ``notes``.
    """
    art = Artifacts(root=Path(root))
    manifest = art.root / artifacts.PREPARED / "manifest.csv"
    if manifest.is_file():
        art.manifest = tidy(artifacts.read_manifest(art.root / artifacts.PREPARED))
        if "image" in art.manifest.columns and "stem" not in art.manifest.columns:
            art.manifest["stem"] = art.manifest["image"]  # tidy renamed it; the manifest keeps both names
    else:
        art.notes.append(f"Images and predictions: {manifest} is missing (run the prepare stage).")
    _load_names(art, methods, attacks)
    _load_metrics(art)
    mdir = art.root / "reports/metrics"
    art.map_similarity = read_table(mdir / "map_similarity.csv", art.notes, "Map similarity")
    art.attack_quality = read_table(mdir / "attack_quality.csv", art.notes, "Attack quality")
    art.faithfulness = read_table(mdir / "faithfulness.csv", art.notes, "Faithfulness")
    for kind in ("deletion", "insertion"):
        df = read_table(art.root / "reports/plots" / f"{kind}_curves.csv", art.notes, f"{kind.capitalize()} curves")
        if df is not None:
            art.curves[kind] = df
    _load_losses(art, attacks)
    for name, index in SUMMARY_TABLES.items():
        df = read_table(mdir / f"{name}.csv", art.notes, "Summary table")
        if df is not None and set(index) <= set(df.columns):
            art.summary[name] = df.set_index(index)
    for key, (rel, what) in OPTIONAL_TABLES.items():
        if (art.root / rel).is_file():
            df = read_table(art.root / rel, art.notes, what)
            if df is not None:
                art.extra[key] = df
    return art
