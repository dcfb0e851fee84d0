"""The report's figures: each is drawn by :mod:`deepsaliency.plots` from the artifacts and saved as PNG.

A figure whose input is missing or malformed (a :class:`~deepsaliency.errors.DeepSaliencyError`) is left out
with a note; any other error propagates, so the report stage fails and writes nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import plots
from ..errors import DeepSaliencyError
from .load import Artifacts


@dataclass
class FigureFile:
    """A written figure: file name (relative to the figures folder) and title (the image's alt text)."""

    name: str
    title: str


class FigureWriter:
    """Draws figures into ``folder`` at ``dpi``; keeps the list of files written and the notes of those left out."""

    def __init__(self, folder: Path, dpi: int, notes: list[str]):
        self.folder, self.dpi, self.notes = Path(folder), dpi, notes
        self.written: dict[str, FigureFile] = {}

    def draw(self, name: str, title: str, make: Callable[[], Figure]) -> bool:
        """``make()`` saved as ``<name>.png``; a :class:`DeepSaliencyError` becomes a note and False."""
        try:
            fig = make()
        except DeepSaliencyError as exc:
            self.notes.append(f"Figure '{title}' left out: {exc}")
            return False
        plots.save_figure(fig, self.folder / f"{name}.png", dpi=self.dpi)
        self.written[name] = FigureFile(f"{name}.png", title)
        return True

    def copy(self, name: str, title: str, source: Path) -> bool:
        """An existing PNG (another stage's figure) copied in as ``<name>.png``."""
        shutil.copyfile(source, self.folder / f"{name}.png")
        self.written[name] = FigureFile(f"{name}.png", title)
        return True


def _string(value: np.ndarray) -> str:
    return str(np.asarray(value).reshape(()).item()) if np.size(value) else ""


def manifest_rows(art: Artifacts) -> dict[str, dict]:
    """``{stem: manifest row}`` of the images the figures draw (``art.shown``; None = all), in manifest order
    ({} without a manifest)."""
    if art.manifest is None or "stem" not in art.manifest.columns:
        return {}
    rows = {str(r["stem"]): r for r in art.manifest.to_dict("records")}
    return rows if art.shown is None else {s: rows[s] for s in art.shown if s in rows}


def explanations(art: Artifacts, stem: str, row: dict, p: dict) -> Figure:
    """The image ``stem`` and every method's map and signed attribution (:func:`plots.plot_methods`)."""
    maps, attrs = {}, {}
    for m in art.methods:
        path = art.explanation_path(m, stem)
        if not path.is_file():
            raise DeepSaliencyError(f"{path} is missing")
        z = art.explanation(m, stem)
        maps[m] = z["map"]
        if "attribution" in z:
            attrs[m] = z["attribution"]
    prob = row.get("prob")
    title = f"{stem}: {row.get('label', '')} (p = {float(prob):.2f})" if prob is not None and prob == prob else stem
    return plots.plot_methods(
        art.image(stem),
        maps,
        attrs or None,
        map_cmap=p["map_cmap"],
        signed_cmap=p["signed_cmap"],
        overlay=p["overlay"],
        overlay_alpha=p["overlay_alpha"],
        clip_percentile=p["clip_percentile"],
        min_max_methods=p["min_max_methods"],
        title=title,
    )


def _attack_file(art: Artifacts, attack: str, stem: str, eps: float | None, keys: Sequence[str]) -> dict:
    path = art.attack_path(attack, stem, eps)
    if not path.is_file():
        raise DeepSaliencyError(f"{path} is missing")
    z = art.attack(attack, stem, eps)
    if any(k not in z for k in keys):
        raise DeepSaliencyError(f"{path} lacks {' or '.join(keys)}")
    return z


def attack_rows(art: Artifacts, attack: str, eps: float | None, label: Callable[[int], str]) -> list[plots.AttackRow]:
    """One :class:`plots.AttackRow` per image of the attack on ``attack`` at budget ``eps`` (/255; None: one budget).

    Raises:
        DeepSaliencyError: an attack file or the target's explanation is missing, or lacks ``x_adv``/the map.
    """
    from ..metrics.similarity import pearson  # the metrics' own Pearson (maps scaled by their max; constant map → 0)

    rows = []
    for stem, r in manifest_rows(art).items():
        z = _attack_file(art, attack, stem, eps, ["x_adv", f"map_{attack}"])
        orig = art.explanation(attack, stem)["map"]
        target_stem = _string(z["target_stem"]) if "target_stem" in z else ""
        target = None
        if target_stem:
            tpath = art.explanation_path(attack, target_stem)
            if not tpath.is_file():
                raise DeepSaliencyError(
                    f"{art.attack_path(attack, stem, eps)}: target_stem {target_stem!r} has no explanation {tpath}"
                )
            target = art.explanation(attack, target_stem)["map"]
        adv = z[f"map_{attack}"]
        rows.append(plots.AttackRow(
            name=stem, x=art.image(stem), x_adv=z["x_adv"], orig_map=orig, adv_map=adv, target_map=target,
            label=str(r.get("label", "")), prob=r.get("prob"),
            label_adv=label(int(z["label_adv"])) if "label_adv" in z else "?",
            prob_adv=float(z["prob_adv"]) if "prob_adv" in z else None, target_name=target_stem,
            r_orig_target=None if target is None else pearson(orig, target),
            r_adv_target=None if target is None else pearson(adv, target)))  # fmt: skip
    return rows


def attack(art: Artifacts, name: str, eps: float | None, p: dict, label: Callable[[int], str]) -> Figure:
    """Dombrowski et al. (2019) Fig. 1 for the attack on ``name`` at budget ``eps``."""
    at = "" if eps is None else f" at ε = {eps:g}/255"
    return plots.plot_attack(
        attack_rows(art, name, eps, label),
        name,
        map_cmap=p["map_cmap"],
        clip_percentile=p["clip_percentile"],
        min_max=name in p["min_max_methods"],
        title=f"Explanation attack on {name.replace('_', ' ')}{at}",
    )


def transfer(art: Artifacts, name: str, eps: float | None, p: dict) -> Figure:
    """Every method's map on x and on x_adv of ``name`` (an untargeted attack such as PGD), with r(before, after)."""
    from ..metrics.similarity import pearson

    images: list[Any] = []
    orig_maps: list[dict] = []
    adv_maps: list[dict] = []
    sims: list[dict] = []
    for stem in manifest_rows(art):
        path = art.attack_path(name, stem, eps)
        z = _attack_file(art, name, stem, eps, ["x_adv"])
        methods = [m for m in art.methods if f"map_{m}" in z]
        if not methods:
            raise DeepSaliencyError(f"{path} lacks x_adv or any map_<method>")
        o = {m: art.explanation(m, stem)["map"] for m in methods}
        a = {m: z[f"map_{m}"] for m in methods}
        images.append((stem, art.image(stem), z["x_adv"]))
        orig_maps.append(o)
        adv_maps.append(a)
        sims.append({m: pearson(o[m], a[m]) for m in methods})
    return plots.plot_attack_transfer(
        images,
        orig_maps,
        adv_maps,
        similarity=sims,
        map_cmap=p["map_cmap"],
        clip_percentile=p["clip_percentile"],
        min_max_methods=p["min_max_methods"],
        title=f"Attack {name}: maps before and after",
    )


def manipulability(table: pd.DataFrame) -> Figure:
    """r(adv, target) vs ε, one line per method with its CI band (:func:`plots.plot_manipulability`)."""
    draw = getattr(plots, "plot_manipulability", None)
    if draw is None:  # engineer P's figure; until it exists the table alone is shown
        raise DeepSaliencyError("deepsaliency.plots has no plot_manipulability yet")
    return draw(table)
