"""The metrics stage's logic: artifacts in, long tables and a flat summary out.

Reads the artifact contract (see :mod:`deepsaliency.artifacts`)::

    data/prepared/<k>/<stem>.png, manifest.csv      x and the originally predicted class
    data/explanations/<method>/<k>/<stem>.npz       map on x (and the target maps)
    data/attacks/<k>/<method>/eps<e>/<stem>.npz     x_adv, map_<method> on x_adv, target_stem, label_adv,
                                                    prob_adv, converged, steps, passes (one folder per L∞ budget
                                                    e, /255)
    data/attacks/<k>/pgd/<stem>.npz                 the same for PGD (no target, no convergence record)

(``<k>`` = ``shard-<k>``; the layouts before shards are read too, :func:`deepsaliency.artifacts.locate`)

and produces, one row per attack RUN = (attack, eps) where ``eps`` is the L∞ budget in /255 units
(``eps`` = 0 for the original images, attack ``none``; PGD's is ``pgd.eps`` · 255):

* :func:`map_similarity_table`: one row per image × run × evaluated method × pair,
  pairs (original, adversarial), (original, target), (adversarial, target);
  PGD has no target map, so only (original, adversarial). ``diagonal`` marks
  rows where the evaluated method is the attacked one (the attack itself);
  the other rows measure transfer to methods the attack did not target.
* :func:`attack_quality_table`: one row per image × run; :func:`convergence_table`: per image × explanation
  attack run, whether the attack converged and what it spent.
* :func:`faithfulness_table`: deletion / insertion AUC per image × method on the
  originals, and on the adversarial images (by default only the attacked
  method's own map, the diagonal), always with the seeded ``random`` baseline.
The inputs are read by :mod:`.load` (its names are re-exported here); the means, confidence intervals and ranks
over images are in :mod:`.summary`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..artifacts import PGD, attack_file
from ..errors import DeepSaliencyError, ParamError
from ..params import DEFAULTS as D  # the one default of each parameter: the params section's
from . import faithfulness as faith
from .attack_quality import QUALITY_METRICS, attack_quality
from .load import (  # re-exported: the stage and the tests read the inputs through this module's names
    Run,
    available_attacks,
    available_methods,
    class_probabilities,
    load_attacks,
    load_maps,
    pgd_budget,
)
from .similarity import MAP_METRICS, compare_maps
from .statistics import Bootstrap

__all__ = [
    "ADVERSARIAL_MODES", "PAIRS", "RANDOM", "Run", "Settings", "attack_quality_table", "available_attacks",
    "available_methods", "class_probabilities", "convergence_table", "faithfulness_jobs", "faithfulness_table",
    "load_attacks", "load_maps", "map_similarity_table", "pgd_budget", "settings_from_params",
]  # fmt: skip

#: Map pairs, in table order. PGD only has the first.
PAIRS = ("orig_adv", "orig_target", "adv_target")
#: Name of the baseline map in the faithfulness tables.
RANDOM = "random"
#: ``faithfulness.adversarial``: which maps are scored on the adversarial images.
ADVERSARIAL_MODES = ("diagonal", "all", "none")


@dataclass(frozen=True)
class Settings:
    """The metrics stage's parameters (``metrics:`` and ``faithfulness:`` in params.yaml).

    Attributes:
        top_k: pixels compared by the top-k intersection (Ghorbani et al. use 1000 at 224²).
        step: pixels changed per deletion/insertion step.
        substrate: deletion substrate, one of :data:`faithfulness.SUBSTRATES`.
        blur_kernel, blur_sigma: blur of the insertion start (the reference's nearly flat kernel) (odd kernel, σ > 0).
        batch_size: images per forward pass in faithfulness curves.
        seed: seed of the random baseline map and of tie-breaking.
        random_cell: block size of the random baseline map (1 = i.i.d. pixels, see :func:`faithfulness.random_map`).
        adversarial: which maps are scored on adversarial images (:data:`ADVERSARIAL_MODES`).
        bootstrap: resamples and seed of every confidence interval (``metrics.bootstrap``).
        rank_eps: the budget (/255) the leaderboard ranks at (``report.rank_eps``); None = the largest.
        alpha: family-wise significance level of the leaderboard's paired tests (``report.alpha``).
    """

    top_k: int = D.metrics.top_k
    step: int = D.faithfulness.step
    substrate: str = D.faithfulness.substrate
    blur_kernel: int = D.faithfulness.blur_kernel
    blur_sigma: float = D.faithfulness.blur_sigma
    batch_size: int = D.faithfulness.batch_size
    seed: int = D.faithfulness.seed
    random_cell: int = D.faithfulness.random_cell
    adversarial: str = D.faithfulness.adversarial
    bootstrap: Bootstrap = Bootstrap()
    rank_eps: float | None = D.report.rank_eps
    alpha: float = D.report.alpha


def settings_from_params(params: dict) -> Settings:
    """:class:`Settings` from the ``metrics``, ``faithfulness`` and ``report`` sections; absent keys take the defaults.

    Raises:
        ParamError: an unknown key or a value that is not allowed, as one line.
    """
    from ..params import validate_section

    # Absent keys take the defaults; present ones are checked by the params models (deepsaliency.params).
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    defaults["bootstrap"] = dataclasses.asdict(Bootstrap())
    values: dict[str, Any] = {}
    for section in ("metrics", "faithfulness", "report"):
        given = params.get(section) or {}
        if not isinstance(given, dict):
            raise ParamError(f"{section}: {given!r} is not a mapping of keys")
        given = dict(given)
        if section == "metrics" and isinstance(given.get("bootstrap"), dict):
            given["bootstrap"] = defaults["bootstrap"] | given["bootstrap"]
        # Keys of the report section that the metrics stage does not use are checked, not kept.
        checked = validate_section(section, getattr(D, section).model_dump() | given)
        values.update({k: v for k, v in checked.items() if k in defaults})
    values["bootstrap"] = Bootstrap(**values["bootstrap"])
    return Settings(**values)


def map_similarity_table(
    maps: dict[tuple[str, str], np.ndarray],
    attacks: dict[tuple[str, float, str], dict],
    methods: list[str],
    top_k: int = 1000,
) -> pd.DataFrame:
    """One row per image × attack × evaluated method × pair, with every metric of :data:`MAP_METRICS`.

    Args:
        maps: ``{(method, stem): map on x}`` (:func:`load_maps`); must hold the target images too.
        attacks: ``{(attack, eps, stem): record}`` (:func:`load_attacks`).
        methods: the evaluated methods.
        top_k: ``k`` of the top-k intersection.

    Returns:
        Columns image, attack, eps, method, pair, diagonal, target, then the metrics.
    """
    rows = []
    for (a, e, s), rec in attacks.items():
        t = rec["target_stem"]
        if a != PGD and t and (methods[0], t) not in maps:
            raise DeepSaliencyError(
                f"{attack_file(a, s, e)}: target_stem {t!r} has no explanation "
                f"(known images: {sorted({k[1] for k in maps})})"
            )
        for m in methods:
            orig, adv = maps[(m, s)], rec["maps"][m]
            pairs = {"orig_adv": (orig, adv)}
            if a != PGD and t:
                target = maps[(m, t)]
                pairs.update(orig_target=(orig, target), adv_target=(adv, target))
            for pair, (p, q) in pairs.items():
                rows.append(
                    {
                        "image": s,
                        "attack": a,
                        "eps": e,
                        "method": m,
                        "pair": pair,
                        "diagonal": m == a,
                        "target": t,
                        **compare_maps(p, q, top_k),
                    }
                )
    return pd.DataFrame(rows, columns=["image", "attack", "eps", "method", "pair", "diagonal", "target", *MAP_METRICS])


def attack_quality_table(
    x: dict[str, np.ndarray],
    classes: dict[str, int],
    probs: dict[str, float],
    attacks: dict[tuple[str, float, str], dict],
) -> pd.DataFrame:
    """One row per image × attack run with :data:`QUALITY_METRICS` and the labels.

    Args:
        x: ``{stem: image (3, H, W) in [0, 1]}``.
        classes, probs: the class predicted on each original and its probability (the manifest).
        attacks: ``{(attack, eps, stem): record}`` (:func:`load_attacks`).
    """
    rows = []
    for (a, e, s), rec in attacks.items():
        q = attack_quality(x[s], rec["x_adv"], classes[s], rec["label_adv"], probs[s], rec["prob_adv"])
        rows.append({"image": s, "attack": a, "eps": e, "label_orig": classes[s], "label_adv": rec["label_adv"], **q})
    return pd.DataFrame(rows, columns=["image", "attack", "eps", "label_orig", "label_adv", *QUALITY_METRICS])


def convergence_table(attacks: dict[tuple[str, float, str], dict]) -> pd.DataFrame:
    """One row per image × explanation attack run: ``converged`` (0/1: the attack's stopping rule was met before
    ``num_iter``, :mod:`deepsaliency.attack`), ``steps`` and ``passes`` (forward/backward passes) it spent."""
    rows = [
        {
            "image": s,
            "attack": a,
            "eps": e,
            "converged": int(rec["converged"]),
            "steps": rec["steps"],
            "passes": rec["passes"],
        }
        for (a, e, s), rec in attacks.items()
        if "converged" in rec
    ]
    return pd.DataFrame(rows, columns=["image", "attack", "eps", "converged", "steps", "passes"])


def faithfulness_jobs(
    stems: list[str], methods: list[str], runs: list[Run], mode: str = "diagonal"
) -> list[tuple[str, str, float, str]]:
    """Every (image, attack, eps, method) whose map is scored; attack ``none`` (eps 0) = the original image.

    ``mode``: ``diagonal`` scores on each explanation attack's images only the
    attacked method's own map (PGD has no attacked method, so none); ``all``
    scores every method on every run's images; ``none`` only the originals.
    The :data:`RANDOM` baseline is added wherever any map is scored.
    """
    if mode not in ADVERSARIAL_MODES:
        raise ParamError(f"faithfulness.adversarial: {mode!r} is not allowed (one of {', '.join(ADVERSARIAL_MODES)})")
    jobs = [(s, "none", 0.0, m) for s in stems for m in [*methods, RANDOM]]
    for a, e in runs if mode != "none" else []:
        scored = methods if mode == "all" else [m for m in methods if m == a]
        jobs += [(s, a, e, m) for s in stems for m in ([*scored, RANDOM] if scored else [])]
    return jobs


def faithfulness_table(
    model: torch.nn.Module,
    x: dict[str, np.ndarray],
    classes: dict[str, int],
    maps: dict[tuple[str, str], np.ndarray],
    attacks: dict[tuple[str, float, str], dict],
    methods: list[str],
    settings: Settings = Settings(),
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deletion and insertion AUC per scored (image, attack run, method), and the curves.

    The class tracked is always the one predicted on the original image. The
    random baseline map of an image is the same on the original and on every
    adversarial version (seeded by ``settings.seed`` and the image name).

    Returns:
        ``(table, deletion_curves, insertion_curves)``: the table has columns image,
        attack (``none`` = original), eps, method, deletion, insertion; the curves are long
        (method, image, attack, eps, fraction, prob).
    """
    from tqdm.auto import tqdm

    runs = list(dict.fromkeys((a, e) for a, e, _ in attacks))
    jobs = faithfulness_jobs(list(x), methods, runs, settings.adversarial)
    rows: list[dict] = []
    curves: dict[str, list[dict]] = {"deletion": [], "insertion": []}
    common: dict[str, Any] = dict(
        step=settings.step,
        blur_kernel=settings.blur_kernel,
        blur_sigma=settings.blur_sigma,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    for s, a, e, m in tqdm(jobs, desc="faithfulness", unit="map", disable=not progress):
        rec = None if a == "none" else attacks[(a, e, s)]
        image = torch.from_numpy(np.asarray(x[s] if rec is None else rec["x_adv"], dtype=np.float32))
        if m == RANDOM:
            h, w = image.shape[-2:]
            smap = faith.random_map((int(h), int(w)), settings.seed, s, settings.random_cell)
        else:
            smap = maps[(m, s)] if rec is None else rec["maps"][m]
        d = faith.deletion(model, image, smap, classes[s], substrate_kind=settings.substrate, **common)
        i = faith.insertion(model, image, smap, classes[s], **common)
        rows.append({"image": s, "attack": a, "eps": e, "method": m, "deletion": d.auc, "insertion": i.auc})
        for kind, c in (("deletion", d), ("insertion", i)):
            curves[kind] += [
                {"method": m, "image": s, "attack": a, "eps": e, "fraction": f, "prob": p}
                for f, p in zip(c.fractions, c.probs, strict=True)
            ]
    cols = ["method", "image", "attack", "eps", "fraction", "prob"]
    return (
        pd.DataFrame(rows, columns=["image", "attack", "eps", "method", "deletion", "insertion"]),
        pd.DataFrame(curves["deletion"], columns=cols),
        pd.DataFrame(curves["insertion"], columns=cols),
    )
