"""Reading the metrics stage's inputs: which runs exist, the maps, the attack records and the class probabilities.

Paths and the ``.npz`` layout live in :mod:`deepsaliency.artifacts`; this module only picks the listed runs
(params order, never a glob: a dropped run's folder stays on disk) and checks every map it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..artifacts import ATTACKS, EXPLANATIONS, PGD, attack_file, attack_ran, locate, read_npz
from ..errors import DeepSaliencyError
from ..methods import ATTACK_METHODS
from ..models import model_device
from .similarity import check_map

#: One attack run: (attack, L∞ budget in /255 units).
Run = tuple[str, float]


def available_methods(params: dict, root: str | Path = EXPLANATIONS) -> list[str]:
    """``explain.methods`` whose explanation folder exists, in params order."""
    return [m for m in params.get("explain", {}).get("methods", []) if (Path(root) / m).is_dir()]


def pgd_budget(params: dict) -> float:
    """PGD's L∞ budget in /255 units (``pgd.eps`` is in pixel units), rounded to 4 decimals."""
    return round(float((params.get("pgd") or {}).get("eps", 8 / 255)) * 255, 4)


def available_attacks(params: dict, root: str | Path = ATTACKS) -> list[Run]:
    """Every run of ``attack.methods`` × ``attack.eps`` whose folder exists (params order), then PGD's if it ran.

    A run whose stage left dvc.yaml (a dropped method or budget) leaves its folder on disk; it is never read.
    """
    attack = params.get("attack") or {}
    runs = [
        (m, float(e))
        for m in attack.get("methods", ATTACK_METHODS)
        for e in attack.get("eps", [])
        if attack_ran(m, e, root)
    ]
    if attack_ran(PGD, None, root):
        runs.append((PGD, pgd_budget(params)))
    return runs


def _string(value: np.ndarray) -> str:
    return str(np.asarray(value).reshape(()).item()) if np.size(value) else ""


def load_maps(
    methods: Iterable[str], stems: Iterable[str], root: str | Path = EXPLANATIONS
) -> dict[tuple[str, str], np.ndarray]:
    """``{(method, stem): map}`` from ``<root>/<method>/shard-<k>/<stem>.npz`` (or unsharded), each checked.

    Raises:
        AttributionError: a map has NaN/infinite or negative values (names method and image).
    """
    maps = {}
    for m in methods:
        for s in stems:
            maps[(m, s)] = check_map(read_npz(locate(Path(root) / m, f"{s}.npz"))["map"], m, s)
    return maps


def load_attacks(
    runs: Iterable[Run], stems: Iterable[str], methods: Iterable[str], root: str | Path = ATTACKS
) -> dict[tuple[str, float, str], dict]:
    """``{(attack, eps, stem): record}`` with ``x_adv``, ``maps`` ({method: map on x_adv}), ``target_stem``,
    ``label_adv``, ``prob_adv`` and, for explanation attacks, ``converged``, ``steps``, ``passes``; maps checked.

    Raises:
        DeepSaliencyError: a file lacks a key of the contract.
        AttributionError: a map has NaN/infinite or negative values (names method, image and attack).
    """
    methods, stems = list(methods), list(stems)
    out = {}
    for a, eps in runs:
        for s in stems:
            path = attack_file(a, s, eps, root)
            z = read_npz(path)
            need = ["x_adv", "label_adv", "prob_adv"] + [f"map_{m}" for m in methods]
            need += [] if a == PGD else ["converged", "steps", "passes"]
            missing = [k for k in need if k not in z]
            if missing:
                raise DeepSaliencyError(
                    f"{path}: missing {', '.join(missing)} (the attack contract needs x_adv, "
                    "label_adv, prob_adv, map_<method> per method, and converged, steps, passes)"
                )
            rec = {
                "x_adv": np.asarray(z["x_adv"], dtype=np.float32),
                "maps": {m: check_map(z[f"map_{m}"], m, f"{s} (attack {a})") for m in methods},
                "target_stem": _string(z["target_stem"]) if "target_stem" in z else "",
                "label_adv": int(z["label_adv"]),
                "prob_adv": float(z["prob_adv"]),
            }
            if a != PGD:
                rec.update(converged=bool(z["converged"]), steps=int(z["steps"]), passes=int(z["passes"]))
            out[(a, float(eps), s)] = rec
    return out


def class_probabilities(
    model: torch.nn.Module, x: dict[str, np.ndarray], classes: dict[str, int], batch_size: int = 16
) -> dict[str, float]:
    """Softmax probability of ``classes[stem]`` on each image ``x[stem]`` (3, H, W), batched under inference mode."""
    stems = list(x)
    device = model_device(model)
    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(stems), batch_size):
            chunk = stems[i : i + batch_size]
            batch = torch.from_numpy(np.stack([x[s] for s in chunk])).float().to(device)
            p = model(batch).float().softmax(-1)[torch.arange(len(chunk)), torch.tensor([classes[s] for s in chunk])]
            out += p.double().cpu().tolist()
    return dict(zip(stems, out, strict=True))
