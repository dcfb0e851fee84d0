"""The metrics stage's logic: artifacts in, long tables and a flat summary out.

Reads the artifact contract (see :mod:`deepsaliency.artifacts`)::

    data/prepared/<stem>.png, manifest.csv      x and the originally predicted class
    data/explanations/<method>/<stem>.npz       map on x (and the target maps)
    data/attacks/<attack>/<stem>.npz            x_adv, map_<method> on x_adv, target_stem, label_adv, prob_adv

and produces

* :func:`map_similarity_table`: one row per image × attack × evaluated method × pair,
  pairs (original, adversarial), (original, target), (adversarial, target);
  PGD has no target map, so only (original, adversarial). ``diagonal`` marks
  rows where the evaluated method is the attacked one (the attack itself);
  the other rows measure transfer to methods the attack did not target.
* :func:`attack_quality_table`: one row per image × attack.
* :func:`faithfulness_table`: deletion / insertion AUC per image × method on the
  originals, and on the adversarial images (by default only the attacked
  method's own map, the diagonal), always with the seeded ``random`` baseline.
* :func:`summarize`: means for ``reports/metrics.json``, never NaN or infinite.
"""
from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from ..artifacts import ATTACKS, EXPLANATIONS, read_npz
from ..config import ATTACK_METHODS
from ..errors import DeepSaliencyError, ParamError
from . import faithfulness as faith
from .attack_quality import QUALITY_METRICS, attack_quality
from .similarity import MAP_METRICS, check_map, compare_maps
from .statistics import Bootstrap, bootstrap_mean, holm, paired_ranking, pairwise_wilcoxon, wilcoxon_p

#: Map pairs, in table order. PGD only has the first.
PAIRS = ("orig_adv", "orig_target", "adv_target")
#: The attack without a target map or an attacked method.
PGD = "pgd"
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

    top_k: int = 1000
    step: int = faith.DEFAULT_STEP
    substrate: str = "mean"
    blur_kernel: int = faith.REFERENCE_BLUR_KERNEL
    blur_sigma: float = faith.REFERENCE_BLUR_SIGMA
    batch_size: int = 16
    seed: int = 0
    random_cell: int = 1
    adversarial: str = "diagonal"
    bootstrap: Bootstrap = Bootstrap()
    rank_eps: float | None = None
    alpha: float = 0.05


def settings_from_params(params: dict) -> Settings:
    """:class:`Settings` from the ``metrics``, ``faithfulness`` and ``report`` sections; absent keys take the defaults.

    Raises:
        ParamError: an unknown key or a value that is not allowed, as one line.
    """
    from ..config import SCHEMA, validate_section

    # Absent keys take the defaults; present ones are checked by the one schema in deepsaliency.config.
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
        checked = validate_section(section, {k: given.get(k, defaults.get(k)) for k in SCHEMA[section]} | given)
        values.update({k: v for k, v in checked.items() if k in defaults})
    values["bootstrap"] = Bootstrap(**values["bootstrap"])
    return Settings(**values)


def available_methods(params: dict, root: str | Path = EXPLANATIONS) -> list[str]:
    """``explain.methods`` whose explanation folder exists, in params order."""
    return [m for m in params.get("explain", {}).get("methods", []) if (Path(root) / m).is_dir()]


def available_attacks(params: dict, root: str | Path = ATTACKS) -> list[str]:
    """``attack.methods`` (plus ``pgd``) whose attack folder exists, in params order."""
    names = list((params.get("attack") or {}).get("methods", ATTACK_METHODS))
    if PGD not in names:
        names.append(PGD)
    return [a for a in names if (Path(root) / a).is_dir()]


def _string(value: np.ndarray) -> str:
    return str(np.asarray(value).reshape(()).item()) if np.size(value) else ""


def load_maps(methods: Iterable[str], stems: Iterable[str], root: str | Path = EXPLANATIONS) -> dict[tuple[str, str], np.ndarray]:
    """``{(method, stem): map}`` from ``<root>/<method>/<stem>.npz``, each checked.

    Raises:
        AttributionError: a map has NaN/infinite or negative values (names method and image).
    """
    maps = {}
    for m in methods:
        for s in stems:
            maps[(m, s)] = check_map(read_npz(Path(root) / m / f"{s}.npz")["map"], m, s)
    return maps


def load_attacks(attacks: Iterable[str], stems: Iterable[str], methods: Iterable[str], root: str | Path = ATTACKS) -> dict[tuple[str, str], dict]:
    """``{(attack, stem): record}`` with ``x_adv``, ``maps`` ({method: map on x_adv}), ``target_stem``,
    ``label_adv``, ``prob_adv``; every map checked.

    Raises:
        DeepSaliencyError: a file lacks a key of the contract.
        AttributionError: a map has NaN/infinite or negative values (names method, image and attack).
    """
    methods = list(methods)
    out = {}
    for a in attacks:
        for s in stems:
            path = Path(root) / a / f"{s}.npz"
            z = read_npz(path)
            need = ["x_adv", "label_adv", "prob_adv"] + [f"map_{m}" for m in methods]
            missing = [k for k in need if k not in z]
            if missing:
                raise DeepSaliencyError(f"{path}: missing {', '.join(missing)} (the attack contract needs x_adv, label_adv, prob_adv and map_<method> per method)")
            out[(a, s)] = {
                "x_adv": np.asarray(z["x_adv"], dtype=np.float32),
                "maps": {m: check_map(z[f"map_{m}"], m, f"{s} (attack {a})") for m in methods},
                "target_stem": _string(z["target_stem"]) if "target_stem" in z else "",
                "label_adv": int(z["label_adv"]),
                "prob_adv": float(z["prob_adv"]),
            }
    return out


def map_similarity_table(
    maps: dict[tuple[str, str], np.ndarray], attacks: dict[tuple[str, str], dict], methods: list[str], top_k: int = 1000
) -> pd.DataFrame:
    """One row per image × attack × evaluated method × pair, with every metric of :data:`MAP_METRICS`.

    Args:
        maps: ``{(method, stem): map on x}`` (:func:`load_maps`); must hold the target images too.
        attacks: ``{(attack, stem): record}`` (:func:`load_attacks`).
        methods: the evaluated methods.
        top_k: ``k`` of the top-k intersection.

    Returns:
        Columns image, attack, method, pair, diagonal, target, then the metrics.
    """
    rows = []
    for (a, s), rec in attacks.items():
        t = rec["target_stem"]
        if a != PGD and t and (methods[0], t) not in maps:
            raise DeepSaliencyError(f"data/attacks/{a}/{s}.npz: target_stem {t!r} has no explanation (known images: {sorted({k[1] for k in maps})})")
        for m in methods:
            orig, adv = maps[(m, s)], rec["maps"][m]
            pairs = {"orig_adv": (orig, adv)}
            if a != PGD and t:
                target = maps[(m, t)]
                pairs.update(orig_target=(orig, target), adv_target=(adv, target))
            for pair, (p, q) in pairs.items():
                rows.append({"image": s, "attack": a, "method": m, "pair": pair, "diagonal": m == a, "target": t,
                             **compare_maps(p, q, top_k)})
    return pd.DataFrame(rows, columns=["image", "attack", "method", "pair", "diagonal", "target", *MAP_METRICS])


def class_probabilities(model: torch.nn.Module, x: dict[str, np.ndarray], classes: dict[str, int], batch_size: int = 16) -> dict[str, float]:
    """Softmax probability of ``classes[stem]`` on each image ``x[stem]`` (3, H, W), batched under inference mode."""
    stems = list(x)
    device = faith._device(model)
    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(stems), batch_size):
            chunk = stems[i : i + batch_size]
            batch = torch.from_numpy(np.stack([x[s] for s in chunk])).float().to(device)
            p = model(batch).float().softmax(-1)[torch.arange(len(chunk)), torch.tensor([classes[s] for s in chunk])]
            out += p.double().cpu().tolist()
    return dict(zip(stems, out))


def attack_quality_table(
    x: dict[str, np.ndarray], classes: dict[str, int], probs: dict[str, float], attacks: dict[tuple[str, str], dict]
) -> pd.DataFrame:
    """One row per image × attack with :data:`QUALITY_METRICS` and the labels.

    Args:
        x: ``{stem: image (3, H, W) in [0, 1]}``.
        classes, probs: the class predicted on each original and its probability (the manifest).
        attacks: ``{(attack, stem): record}`` (:func:`load_attacks`).
    """
    rows = []
    for (a, s), rec in attacks.items():
        q = attack_quality(x[s], rec["x_adv"], classes[s], rec["label_adv"], probs[s], rec["prob_adv"])
        rows.append({"image": s, "attack": a, "label_orig": classes[s], "label_adv": rec["label_adv"], **q})
    return pd.DataFrame(rows, columns=["image", "attack", "label_orig", "label_adv", *QUALITY_METRICS])


def faithfulness_jobs(
    stems: list[str], methods: list[str], attacks: list[str], mode: str = "diagonal"
) -> list[tuple[str, str, str]]:
    """Every (image, attack, method) whose map is scored; attack ``none`` = the original image.

    ``mode``: ``diagonal`` scores on each explanation attack's images only the
    attacked method's own map (PGD has no attacked method, so none); ``all``
    scores every method on every attack's images; ``none`` only the originals.
    The :data:`RANDOM` baseline is added wherever any map is scored.
    """
    if mode not in ADVERSARIAL_MODES:
        raise ParamError(f"faithfulness.adversarial: {mode!r} is not allowed (one of {', '.join(ADVERSARIAL_MODES)})")
    jobs = [(s, "none", m) for s in stems for m in [*methods, RANDOM]]
    for a in attacks if mode != "none" else []:
        scored = methods if mode == "all" else [m for m in methods if m == a]
        jobs += [(s, a, m) for s in stems for m in ([*scored, RANDOM] if scored else [])]
    return jobs


def faithfulness_table(
    model: torch.nn.Module,
    x: dict[str, np.ndarray],
    classes: dict[str, int],
    maps: dict[tuple[str, str], np.ndarray],
    attacks: dict[tuple[str, str], dict],
    methods: list[str],
    settings: Settings = Settings(),
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deletion and insertion AUC per scored (image, attack, method), and the curves.

    The class tracked is always the one predicted on the original image. The
    random baseline map of an image is the same on the original and on every
    adversarial version (seeded by ``settings.seed`` and the image name).

    Returns:
        ``(table, deletion_curves, insertion_curves)``: the table has columns image,
        attack (``none`` = original), method, deletion, insertion; the curves are long
        (method, image, attack, fraction, prob).
    """
    from tqdm.auto import tqdm

    attack_names = list(dict.fromkeys(a for a, _ in attacks))
    jobs = faithfulness_jobs(list(x), methods, attack_names, settings.adversarial)
    rows, curves = [], {"deletion": [], "insertion": []}
    common = dict(step=settings.step, blur_kernel=settings.blur_kernel, blur_sigma=settings.blur_sigma,
                  batch_size=settings.batch_size, seed=settings.seed)
    for s, a, m in tqdm(jobs, desc="faithfulness", unit="map", disable=not progress):
        image = torch.from_numpy(np.asarray(x[s] if a == "none" else attacks[(a, s)]["x_adv"], dtype=np.float32))
        if m == RANDOM:
            smap = faith.random_map(tuple(image.shape[-2:]), settings.seed, s, settings.random_cell)
        else:
            smap = maps[(m, s)] if a == "none" else attacks[(a, s)]["maps"][m]
        d = faith.deletion(model, image, smap, classes[s], substrate_kind=settings.substrate, **common)
        i = faith.insertion(model, image, smap, classes[s], **common)
        rows.append({"image": s, "attack": a, "method": m, "deletion": d.auc, "insertion": i.auc})
        for kind, c in (("deletion", d), ("insertion", i)):
            curves[kind] += [{"method": m, "image": s, "attack": a, "fraction": f, "prob": p} for f, p in zip(c.fractions, c.probs)]
    cols = ["method", "image", "attack", "fraction", "prob"]
    return (pd.DataFrame(rows, columns=["image", "attack", "method", "deletion", "insertion"]),
            pd.DataFrame(curves["deletion"], columns=cols), pd.DataFrame(curves["insertion"], columns=cols))


def _ci(values: Iterable[float], boot: Bootstrap) -> dict[str, float | int]:
    return bootstrap_mean(np.asarray(list(values), dtype=float), boot.n_resamples, boot.seed)


def _per_image(df: pd.DataFrame, column: str) -> pd.Series:
    """One value per image: the mean of ``column`` over that image's rows (other methods, budgets)."""
    return df.groupby("image", sort=False)[column].mean()


def _cis(df: pd.DataFrame, columns: Iterable[str], boot: Bootstrap) -> dict[str, dict]:
    return {c: _ci(_per_image(df, c), boot) for c in columns}


def _faithfulness_group(g: pd.DataFrame, boot: Bootstrap) -> dict[str, dict]:
    """Per method: deletion and insertion {mean, ci_low, ci_high, n}; ``p_random`` = Holm-corrected (over the
    methods of the group) two-sided Wilcoxon p of the method against the :data:`RANDOM` map on the same images."""
    out = {m: _cis(gm, ["deletion", "insertion"], boot) for m, gm in g.groupby("method", sort=False)}
    if RANDOM not in out:
        return out
    tested = [m for m in out if m != RANDOM]
    for kind in ("deletion", "insertion"):
        wide = g.pivot_table(index="image", columns="method", values=kind, aggfunc="mean")
        raw = [wilcoxon_p(wide[m].to_numpy(), wide[RANDOM].to_numpy())[0] for m in tested]
        for m, p in zip(tested, holm(raw)):
            out[m][kind]["p_random"] = float(p)
    return out


def _eps_values(df: pd.DataFrame) -> list[float]:
    return sorted(float(e) for e in df["eps"].dropna().unique()) if "eps" in df.columns else []


def leaderboard(similarity: pd.DataFrame, alpha: float = 0.05, rank_eps: float | None = None,
                bootstrap: Bootstrap = Bootstrap(), metric: str = "pearson") -> dict:
    """The ranking block of ``reports/metrics.json``: each attacked method's r(adv, target), ranked by paired tests.

    The quantity, per image: ``metric`` (Pearson r) between the attacked method's own map on ``x_adv`` and the
    target map (rows with ``pair == "adv_target"`` and ``method == attack``); lower = more robust. Ranks come from
    :func:`~deepsaliency.metrics.statistics.paired_ranking` (Wilcoxon signed-rank over images, Holm-corrected over
    the pairs of methods; shared ranks where no test rejects at ``alpha``).

    With an ``eps`` column (one attack per budget, /255), methods are ranked at ``rank_eps`` (None = the largest
    budget) and, with ≥ 2 budgets, also by the area under each image's r(adv, target)-vs-ε curve (trapezoid over ε,
    units r·(/255)). Without the column every row is the single budget and there is no area.

    Returns:
        ``{"alpha", "images", "pairs", "pairs_differ", ["eps"], "methods": {method: {"rank", "r_adv_target",
        ["rank_auc", "auc"]}}}`` with each value ``{mean, ci_low, ci_high, n}`` (:func:`bootstrap_mean`), methods in
        rank order; numbers only (``dvc metrics diff`` reads it). Empty dict when no attacked method has rows.

    Raises:
        ParamError: ``rank_eps`` is not one of the table's budgets, or ``alpha`` is out of (0, 1).
    """
    own = similarity[(similarity["pair"] == "adv_target") & (similarity["method"] == similarity["attack"])
                     & (similarity["attack"] != PGD)]
    if own.empty:
        return {}
    budgets = _eps_values(own)
    at = own
    out: dict[str, Any] = {"alpha": float(alpha)}
    if budgets:
        eps = budgets[-1] if rank_eps is None else rank_eps
        match = [b for b in budgets if math.isclose(b, eps, rel_tol=1e-6, abs_tol=1e-9)]
        if not match:
            raise ParamError(f"rank_eps: {rank_eps!r} is not allowed (one of the budgets in the table: "
                             f"{', '.join(f'{b:g}' for b in budgets)}, or null for the largest)")
        at = own[np.isclose(own["eps"].astype(float), match[0], rtol=1e-6, atol=1e-9)]
        out["eps"] = match[0]
    values = at.pivot_table(index="image", columns="method", values=metric, aggfunc="mean", sort=False)
    ranking = paired_ranking(values, alpha)
    pairs = pairwise_wilcoxon(values)
    out.update(images=int(len(values)), pairs=int(len(pairs)), pairs_differ=int((pairs["p_holm"] < alpha).sum()))
    methods = {m: {"rank": int(ranking.loc[m, "rank"]), "r_adv_target": _ci(values[m].dropna(), bootstrap)}
               for m in ranking.index}
    if len(budgets) >= 2:
        from scipy.integrate import trapezoid

        auc = {}
        for (m, image), g in own.groupby(["method", "image"], sort=False):
            curve = g.groupby("eps")[metric].mean().sort_index()
            if len(curve) >= 2:
                auc.setdefault(m, {})[image] = float(trapezoid(curve.to_numpy(), curve.index.to_numpy(dtype=float)))
        if auc:
            wide = pd.DataFrame(auc)
            by_auc = paired_ranking(wide, alpha)
            auc_pairs = pairwise_wilcoxon(wide)
            out["pairs_differ_auc"] = int((auc_pairs["p_holm"] < alpha).sum())
            for m in by_auc.index:
                methods.setdefault(m, {}).update(rank_auc=int(by_auc.loc[m, "rank"]),
                                                 auc=_ci(wide[m].dropna(), bootstrap))
    out["methods"] = methods
    return out


def summarize(similarity: pd.DataFrame, quality: pd.DataFrame, faithfulness: pd.DataFrame,
              settings: Settings = Settings()) -> dict:
    """The summary written to ``reports/metrics.json``: means over images with 95 % CIs, nested for ``dvc metrics``.

    Every mean is ``{"mean", "ci_low", "ci_high", "n"}``: the mean over images, its seeded bootstrap interval
    (:func:`~deepsaliency.metrics.statistics.bootstrap_mean`, ``settings.bootstrap``) and the number of images.
    Where a group has several rows per image (the transfer methods), they are averaged per image first, so the
    interval is over images.

    * ``attack.<attack>.<quality metric>`` (and ``attack.pgd.success_rate``, the fraction of labels flipped);
    * ``similarity.<attack>.diagonal.<pair>.<metric>``: the attacked method's own map;
      ``similarity.<attack>.transfer.<pair>.<metric>``: mean over the other methods;
      ``similarity.pgd.all.orig_adv.<metric>``: mean over every method;
    * ``faithfulness.<attack or original>.<method>.{deletion, insertion}``, with ``p_random``: Holm-corrected
      Wilcoxon p against the random map on the same images (absent when the group has no random map);
    * ``leaderboard``: :func:`leaderboard` at ``settings.rank_eps`` and ``settings.alpha`` (absent without rows).

    Empty groups are left out (never a NaN). Per-method detail stays in the CSV tables.

    Raises:
        DeepSaliencyError: a value is NaN or infinite (see :func:`assert_finite`).
        ParamError: ``settings.rank_eps`` is not a budget of the table.
    """
    boot = settings.bootstrap
    out: dict[str, Any] = {"images": int(faithfulness["image"].nunique()) if len(faithfulness) else 0}
    out["attack"] = {}
    for a, g in quality.groupby("attack", sort=False):
        out["attack"][a] = _cis(g, [c for c in QUALITY_METRICS if c != "prob_orig"], boot)
        if a == PGD:
            flipped = g.assign(flipped=(g["label_orig"] != g["label_adv"]).astype(float))
            out["attack"][a]["success_rate"] = _ci(_per_image(flipped, "flipped"), boot)
    out["similarity"] = {}
    for a, g in similarity.groupby("attack", sort=False):
        groups = {"all": g} if a == PGD else {"diagonal": g[g["diagonal"]], "transfer": g[~g["diagonal"]]}
        entry = {}
        for name, gg in groups.items():
            per_pair = {p: _cis(gp, MAP_METRICS, boot) for p, gp in gg.groupby("pair", sort=False)}
            if per_pair:
                entry[name] = {p: per_pair[p] for p in PAIRS if p in per_pair}
        out["similarity"][a] = entry
    out["faithfulness"] = {}
    for a, g in faithfulness.groupby("attack", sort=False):
        out["faithfulness"]["original" if a == "none" else a] = _faithfulness_group(g, boot)
    board = leaderboard(similarity, settings.alpha, settings.rank_eps, boot) if len(similarity) else {}
    if board:
        out["leaderboard"] = board
    assert_finite(out)
    return out


def assert_finite(tree: Any, path: str = "metrics") -> None:
    """Raise :class:`DeepSaliencyError` naming the first NaN/infinite number in a nested dict."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            assert_finite(v, f"{path}.{k}")
    elif isinstance(tree, (float, int, np.floating, np.integer)) and not isinstance(tree, bool):
        if not math.isfinite(float(tree)):
            raise DeepSaliencyError(f"{path}: {tree!r} is not finite; refusing to write a NaN/infinite metric")


def assert_finite_table(df: pd.DataFrame, name: str) -> None:
    """Raise :class:`DeepSaliencyError` if a numeric column of ``df`` holds NaN/inf (names table, column and row)."""
    numeric = df.select_dtypes(include=[np.number, "bool"]).astype(float)
    bad = ~np.isfinite(numeric.to_numpy())
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DeepSaliencyError(f"{name}: column {numeric.columns[c]!r} row {r} is {numeric.iat[r, c]!r}; refusing to write a NaN/infinite metric")


def rounded(tree: Any, digits: int = 6) -> Any:
    """``tree`` with every float rounded to ``digits`` decimals (readable ``dvc metrics`` output)."""
    if isinstance(tree, dict):
        return {k: rounded(v, digits) for k, v in tree.items()}
    if isinstance(tree, float):
        return round(tree, digits)
    return tree
