"""The report: figures, metric tables and a robustness leaderboard, as Markdown and self-contained HTML.

Reads the artifact contract (see :mod:`deepsaliency.artifacts`)::

    data/prepared/manifest.csv, <stem>.png              the images and the model's predictions
    data/explanations/<method>/<stem>.npz               attribution, map
    data/attacks/<attack>/<stem>.npz                    x_adv, map_<method>, target_stem, label_adv, prob_adv
    reports/metrics.json, reports/metrics/*.csv         the metrics stage's summary and long tables
    reports/plots/{deletion,insertion}_curves.csv       faithfulness curves
    reports/plots/attack_loss.csv                       attack optimisation curves (column attack)

and writes ``reports/figures/*.png``, ``reports/report.md`` and ``reports/index.html``
(every image embedded as a base64 ``data:`` URI, no external file, script or style sheet).

Every input is optional: a figure or table whose input is absent is left out and
the report says so, in a "Missing inputs" section. Column names are read
tolerantly (``stem``/``image``, ``top_k``/``topk``, ``deletion``/``deletion_auc``,
a ``which`` column or ``attack == "none"`` for the original images).

The document is built once as a list of blocks and rendered twice (Markdown,
HTML). The Markdown table writer is a few lines written here so that the
report needs no ``tabulate``; HTML tables are :meth:`pandas.DataFrame.to_html`.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from . import plots
from .errors import DeepSaliencyError
from .attribution import METHODS
from .stage import atomic_dir, atomic_file

#: Attacks in report order (explanation attacks first, then PGD); others follow alphabetically.
ATTACK_ORDER = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise", "pgd")
#: The untargeted attack (no target map, no attacked method).
PGD = "pgd"
#: Name of the random baseline map in the faithfulness tables.
RANDOM = "random"
#: Value of ``attack`` that marks rows computed on the original images.
ORIGINAL = "none"

_ALIASES = {
    "stem": "image", "img": "image",
    "explain_method": "method", "explanation": "method", "evaluated_method": "method",
    "attacked_method": "attack", "attack_method": "attack",
    "topk": "top_k", "top_k_intersection": "top_k",
    "deletion_auc": "deletion", "insertion_auc": "insertion", "del_auc": "deletion", "ins_auc": "insertion",
    "comparison": "pair",
    "linf": "linf_255", "l_inf": "linf_255", "l2": "l2_255",
    "frac": "fraction", "x": "fraction", "probability": "prob", "p": "prob",
}


# ----------------------------------------------------------------------------- reading


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Lower-case, stripped column names with known aliases renamed (never onto a column that exists);
    string cells stripped; ``pair`` values with ``-`` or spaces written with ``_``."""
    df = df.rename(columns=lambda c: str(c).strip().lower())
    rename = {c: _ALIASES[c] for c in df.columns if c in _ALIASES and _ALIASES[c] not in df.columns}
    df = df.rename(columns=rename)
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


def originals(df: pd.DataFrame) -> pd.DataFrame:
    """Rows computed on the original images: ``which == original``, else ``attack`` empty or ``none``, else all."""
    if "which" in df.columns:
        return df[df["which"].astype(str).str.lower().str.startswith("orig")]
    if "attack" in df.columns:
        a = df["attack"]
        return df[a.isna() | a.astype(str).str.lower().isin(["", ORIGINAL, "original", "nan"])]
    return df


def adversarials(df: pd.DataFrame) -> pd.DataFrame:
    """Rows computed on adversarial images (an attack named, not the original)."""
    if "attack" not in df.columns:
        return df.iloc[0:0]
    if "which" in df.columns:
        df = df[~df["which"].astype(str).str.lower().str.startswith("orig")]
    a = df["attack"]
    return df[~(a.isna() | a.astype(str).str.lower().isin(["", ORIGINAL, "original", "nan"]))]


def _string(value: np.ndarray) -> str:
    return str(np.asarray(value).reshape(()).item()) if np.size(value) else ""


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)


@dataclass
class Artifacts:
    """Everything the report reads; absent inputs are None (or empty) and explained in ``notes``."""

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
    notes: list[str] = field(default_factory=list)

    def image(self, stem: str) -> np.ndarray:
        """The prepared image ``stem`` as uint8 (H, W, 3)."""
        return np.asarray(Image.open(self.root / "data/prepared" / f"{stem}.png").convert("RGB"))

    def explanation(self, method: str, stem: str) -> dict[str, np.ndarray]:
        with np.load(self.root / "data/explanations" / method / f"{stem}.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def attack(self, attack: str, stem: str) -> dict[str, np.ndarray]:
        with np.load(self.root / "data/attacks" / attack / f"{stem}.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def load_artifacts(root: str | Path = ".", methods: Sequence[str] | None = None,
                   attacks: Sequence[str] | None = None) -> Artifacts:
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
    root = Path(root)
    art = Artifacts(root=root)
    notes = art.notes
    manifest = root / "data/prepared/manifest.csv"
    if manifest.is_file():
        art.manifest = tidy(pd.read_csv(manifest))
        if "image" in art.manifest.columns and "stem" not in art.manifest.columns:
            art.manifest["stem"] = art.manifest["image"]  # tidy renamed it; the manifest keeps both names
    else:
        notes.append(f"Images and predictions: {manifest} is missing (run the prepare stage).")
    expl = root / "data/explanations"
    found = [p.name for p in expl.iterdir() if p.is_dir() and not p.name.startswith(".")] if expl.is_dir() else []
    wanted = list(methods) if methods is not None else _ordered(found, METHODS)
    art.methods = [m for m in wanted if m in found]
    for m in wanted:
        if m not in found:
            notes.append(f"Explanations: {expl / m} is missing (run the explain stage for {m}).")
    atk = root / "data/attacks"
    found = [p.name for p in atk.iterdir() if p.is_dir() and not p.name.startswith(".")] if atk.is_dir() else []
    art.attacks = _ordered(found, ATTACK_ORDER) if attacks is None else [a for a in attacks if a in found]
    for a in attacks or []:
        if a not in found:
            notes.append(f"Attacks: {atk / a} is missing (run the {a if a == PGD else 'attack@' + a} stage).")
    if not art.attacks:
        notes.append(f"Attacks: {atk} has no attack folder (run the attack stages).")
    mj = root / "reports/metrics.json"
    if mj.is_file():
        try:
            art.metrics = json.loads(mj.read_text())
        except json.JSONDecodeError as exc:
            notes.append(f"Summary metrics: {mj} is not valid JSON ({exc.msg} at line {exc.lineno}).")
    else:
        notes.append(f"Summary metrics: {mj} is missing (run the metrics stage).")
    mdir = root / "reports/metrics"
    art.map_similarity = read_table(mdir / "map_similarity.csv", notes, "Map similarity")
    art.attack_quality = read_table(mdir / "attack_quality.csv", notes, "Attack quality")
    art.faithfulness = read_table(mdir / "faithfulness.csv", notes, "Faithfulness")
    for kind in ("deletion", "insertion"):
        df = read_table(root / "reports/plots" / f"{kind}_curves.csv", notes, f"{kind.capitalize()} curves")
        if df is not None:
            art.curves[kind] = df
    losses = read_table(root / "reports/plots/attack_loss.csv", notes, "Attack loss curves")
    if losses is not None and "attack" not in losses.columns:
        notes.append(f"Attack loss curves: {root / 'reports/plots/attack_loss.csv'} has no attack column.")
    elif losses is not None:
        names = _ordered(losses["attack"].astype(str), ATTACK_ORDER) if attacks is None else art.attacks
        for name in names:
            df = losses[losses["attack"].astype(str) == name].drop(columns="attack")
            if not df.empty:
                art.attack_loss[name] = df.reset_index(drop=True)
        if not art.attack_loss:
            notes.append(f"Attack loss curves: {root / 'reports/plots/attack_loss.csv'} has no row of "
                         f"{names or 'any attack'}.")
    return art


def _require(df: pd.DataFrame | None, columns: Iterable[str], what: str) -> pd.DataFrame:
    if df is None:
        raise DeepSaliencyError(f"{what}: the table is missing")
    lack = [c for c in columns if c not in df.columns]
    if lack:
        raise DeepSaliencyError(f"{what}: columns {list(df.columns)} lack {lack}")
    return df


# ----------------------------------------------------------------------------- tables


def transfer_matrix(similarity: pd.DataFrame, metric: str = "pearson", pair: str = "adv_target",
                    attacks: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Attack (rows) × evaluated method (columns): ``metric`` for ``pair``, mean over images.

    Args:
        similarity: the long map-similarity table (columns image, attack, method, pair, ``metric``).
        metric: e.g. ``pearson``.
        pair: ``adv_target`` (adversarial map vs the target map: how far the attack pulled it),
            ``orig_adv`` (map before vs after) or ``orig_target``.
        attacks, methods: row and column order (None → as found, in :data:`ATTACK_ORDER` / METHODS order).

    Returns:
        The matrix; a cell with no rows is NaN, attacks without any row for ``pair`` are left out.

    Raises:
        DeepSaliencyError: a column is missing.
    """
    _require(similarity, ["attack", "method", "pair", metric], "map similarity")
    sub = similarity[similarity["pair"] == pair]
    mat = sub.groupby(["attack", "method"], sort=False)[metric].mean().unstack("method")
    rows = _ordered(mat.index, ATTACK_ORDER) if attacks is None else [a for a in attacks if a in mat.index]
    cols = _ordered(mat.columns, METHODS) if methods is None else list(methods)
    mat = mat.reindex(index=rows, columns=cols)
    mat.index.name, mat.columns.name = "attack", "method"
    return mat


#: Leaderboard columns: key → (header, one-sentence meaning).
LEADERBOARD_COLUMNS = {
    "rank": ("rank", "1 = the method the attack could move least towards its target (— : no attack targets it)."),
    "method": ("method", "The explanation method."),
    "adv_target": ("r(adv, target) own attack ↓",
                   "Pearson correlation of the method's map on x_adv with the target map, when the attack was optimised "
                   "against this method, mean over images. Higher = the attacker made the map look more like an "
                   "arbitrary target = more manipulable = less trustworthy. The ranking column."),
    "ci_low": ("95 % CI low", "Lower end of the 95 % bootstrap confidence interval of r(adv, target) over images "
                              "(reports/metrics.json, computed by the metrics stage)."),
    "ci_high": ("95 % CI high", "Upper end of the same interval."),
    "n": ("n", "Images behind the mean, its interval and the paired tests."),
    "orig_target": ("r(orig, target) before",
                    "The same correlation before the attack: the starting point."),
    "moved": ("moved by", "r(adv, target) − r(orig, target): how much the attack gained."),
    "worst_moved": ("worst moved by, any attack ↓",
                    "The largest r(adv, target) − r(orig, target) of this method's map under any explanation attack "
                    "(its column of the transfer matrices): how far an attack aimed at any method dragged this one; "
                    "also defined for methods no attack targets. (A raw r(adv, target) would mislead here: maps of "
                    "different images can be alike before any attack, e.g. Grad-CAM blobs.)"),
    "linf_255": ("attack L∞ (/255)", "Largest pixel change of the method's own attack, measured (mean over images); "
                                     "rows compare fairly only at equal budget."),
    "top1_kept": ("top-1 kept", "Fraction of images whose predicted class the own attack left unchanged."),
    "deletion": ("deletion AUC ↓", "Deletion AUC of the map on the original images, mean over images (lower = "
                                   "the pixels it ranks first are the ones the model needs)."),
    "deletion_gain": ("deletion: random − method ↑", "Random-map deletion AUC minus the method's: > 0 = better than random."),
    "insertion": ("insertion AUC ↑", "Insertion AUC on the original images (higher = more faithful)."),
    "insertion_gain": ("insertion: method − random ↑", "The method's insertion AUC minus the random map's: > 0 = better than random."),
    "rank_auc": ("rank by area", "Rank by the area under the r(adv, target)-vs-ε curve (only with several budgets)."),
    "auc": ("area under r(adv, target) vs ε ↓", "Trapezoid area of each image's r(adv, target) over the budgets "
                                               "(units r·/255), mean over images."),
}
#: Columns that come from ``reports/metrics.json``'s ``leaderboard`` block, not from the CSV tables.
RANKING_COLUMNS = ("rank", "ci_low", "ci_high", "n", "rank_auc", "auc")


def leaderboard(similarity: pd.DataFrame | None, faithfulness: pd.DataFrame | None = None,
                quality: pd.DataFrame | None = None, methods: Sequence[str] | None = None,
                metric: str = "pearson", ranking: dict | None = None) -> pd.DataFrame:
    """The robustness leaderboard: per explanation method, how far its own attack moved it, next to its faithfulness.

    Ranking: not computed here. ``rank``, the 95 % CI of ``adv_target`` and ``n`` (and ``rank_auc``/``auc`` with
    several budgets) are read from ``ranking``, the ``leaderboard`` block of ``reports/metrics.json`` written by
    :func:`deepsaliency.metrics.tables.leaderboard` (paired Wilcoxon tests over images, Holm-corrected; methods
    the tests cannot separate share a rank). Rows: by rank, then by ``adv_target`` (``metric`` of the adversarial
    map against the target map, under the attack optimised against the method: the diagonal of
    :func:`transfer_matrix`), lowest first = most robust; without ``ranking`` every rank is NaN and the rows keep
    that order. Methods without an attack of their own come last, ordered by ``worst_moved`` (the largest gain
    ``adv_target − orig_target`` over all attacks).

    Args:
        similarity: the long map-similarity table (or None).
        faithfulness: the faithfulness table (image, attack, method, deletion, insertion; ``random`` rows are
            the baseline) or None.
        quality: the attack-quality table (image, attack, linf_255, top1_kept) or None.
        methods: rows, in order (None → every method found in the tables).
        metric: the similarity column.
        ranking: ``metrics["leaderboard"]`` (``{"methods": {method: {"rank", "r_adv_target": {"ci_low", ...}}}}``)
            or None.

    Returns:
        Columns of :data:`LEADERBOARD_COLUMNS` (keys), sorted by rank; a number that cannot be computed is NaN.
    """
    found: list[str] = []
    for df in (similarity, faithfulness):
        if df is not None and "method" in df.columns:
            found += [m for m in df["method"].dropna().unique() if m != RANDOM]
    rows = list(methods) if methods is not None else _ordered(found, METHODS)
    out = pd.DataFrame(index=pd.Index(rows, name="method"), columns=[k for k in LEADERBOARD_COLUMNS if k != "method"],
                       dtype=float)
    if similarity is not None and {"attack", "method", "pair", metric} <= set(similarity.columns):
        adv_t = transfer_matrix(similarity, metric, "adv_target")
        orig_t = transfer_matrix(similarity, metric, "orig_target")
        for m in rows:
            if m in adv_t.index and m in adv_t.columns:
                out.loc[m, "adv_target"] = adv_t.loc[m, m]
            if m in orig_t.index and m in orig_t.columns:
                out.loc[m, "orig_target"] = orig_t.loc[m, m]
        moved = adv_t - orig_t.reindex_like(adv_t)
        for m in rows:
            if m in moved.columns and moved[m].notna().any():
                out.loc[m, "worst_moved"] = moved[m].max()
        out["moved"] = out["adv_target"] - out["orig_target"]
    if quality is not None and "attack" in quality.columns:
        for col in ("linf_255", "top1_kept"):
            if col in quality.columns:
                means = quality.groupby("attack")[col].mean()
                out[col] = [means.get(m, np.nan) for m in rows]
    if faithfulness is not None and {"method", "deletion", "insertion"} <= set(faithfulness.columns):
        orig = originals(faithfulness).groupby("method")[["deletion", "insertion"]].mean()
        for col in ("deletion", "insertion"):
            out[col] = [orig[col].get(m, np.nan) for m in rows]
        if RANDOM in orig.index:
            out["deletion_gain"] = orig.loc[RANDOM, "deletion"] - out["deletion"]
            out["insertion_gain"] = out["insertion"] - orig.loc[RANDOM, "insertion"]
    board = ((ranking or {}).get("methods") or {}) if isinstance(ranking, dict) else {}
    for m in rows:
        entry = board.get(m) or {}
        ci = entry.get("r_adv_target") or {}
        auc = entry.get("auc") or {}
        for col, value in (("rank", entry.get("rank")), ("ci_low", ci.get("ci_low")), ("ci_high", ci.get("ci_high")),
                           ("n", ci.get("n")), ("rank_auc", entry.get("rank_auc")), ("auc", auc.get("mean"))):
            out.loc[m, col] = np.nan if value is None else float(value)
    out = out.reset_index()
    ranked = out["adv_target"].notna() | out["rank"].notna()
    # Within a shared rank, metrics.json's order (by median over images), then the mean.
    out["_order"] = [list(board).index(m) if m in board else len(board) for m in out["method"]]
    order = out[ranked].sort_values(["rank", "_order", "adv_target", "worst_moved"], kind="stable",
                                    na_position="last").index
    rest = out[~ranked].sort_values("worst_moved", kind="stable", na_position="last").index
    out = out.loc[list(order) + list(rest)].reset_index(drop=True)
    return out[list(LEADERBOARD_COLUMNS)]


def random_baseline(faithfulness: pd.DataFrame | None) -> dict[str, float] | None:
    """Mean deletion and insertion AUC of the random map on the original images, or None when absent."""
    if faithfulness is None or "method" not in faithfulness.columns:
        return None
    r = originals(faithfulness)
    r = r[r["method"] == RANDOM]
    if r.empty:
        return None
    return {"deletion": float(r["deletion"].mean()), "insertion": float(r["insertion"].mean())}


def faithfulness_summary(faithfulness: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Method × {deletion, insertion} on x and on x_adv of the method's own attack, mean over images."""
    _require(faithfulness, ["method", "deletion", "insertion"], "faithfulness")
    orig = originals(faithfulness).groupby("method")[["deletion", "insertion"]].mean()
    adv = adversarials(faithfulness)
    names = _ordered([m for m in faithfulness["method"].unique()], [*(methods or METHODS), RANDOM])
    if RANDOM in names:  # the baseline last
        names = [n for n in names if n != RANDOM] + [RANDOM]
    out = pd.DataFrame(index=pd.Index(names, name="method"))
    out["deletion on x ↓"] = [orig["deletion"].get(m, np.nan) for m in names]
    out["insertion on x ↑"] = [orig["insertion"].get(m, np.nan) for m in names]
    own = adv[adv["method"] == adv["attack"]].groupby("method")[["deletion", "insertion"]].mean() if len(adv) else None
    out["deletion on x_adv (own attack)"] = [np.nan if own is None else own["deletion"].get(m, np.nan) for m in names]
    out["insertion on x_adv (own attack)"] = [np.nan if own is None else own["insertion"].get(m, np.nan) for m in names]
    return out


def quality_summary(quality: pd.DataFrame, attacks: Sequence[str] | None = None) -> pd.DataFrame:
    """Attack × attack-quality metric, mean over images (numeric columns only)."""
    _require(quality, ["attack"], "attack quality")
    num = quality.drop(columns=[c for c in ("label_orig", "label_adv", "image") if c in quality.columns])
    num = num.select_dtypes(include=[np.number, "bool"]).astype(float)
    out = num.groupby(quality["attack"]).mean()
    return out.reindex(_ordered(out.index, attacks or ATTACK_ORDER))


def own_map_shift(similarity: pd.DataFrame) -> pd.DataFrame:
    """Per attack, every similarity metric of the attacked method's own map (PGD: mean over methods), per pair."""
    _require(similarity, ["attack", "method", "pair"], "map similarity")
    metrics = [c for c in ("pearson", "spearman", "ssim", "top_k", "mse", "psnr", "com_shift") if c in similarity.columns]
    own = similarity[(similarity["attack"] == similarity["method"]) | (similarity["attack"] == PGD)]
    out = own.groupby(["attack", "pair"], sort=False)[metrics].mean()
    order = {a: i for i, a in enumerate(_ordered(out.index.get_level_values(0), ATTACK_ORDER))}
    pairs = {"orig_adv": 0, "orig_target": 1, "adv_target": 2}
    return out.sort_index(key=lambda idx: idx.map(order) if idx.name == "attack" else idx.map(lambda p: pairs.get(p, 9)))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": value}``."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


# ----------------------------------------------------------------------------- rendering helpers


def format_number(v: Any, na: str = "—") -> str:
    """A cell as text: NaN/None → ``na``; integers as is; floats with 3 decimals (3 significant digits when tiny or huge)."""
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(float(v))):
        return na
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == int(v) and abs(v) < 1e6:
            return str(int(v)) if abs(v) >= 1 or v == 0 else f"{v:.3f}"
        return f"{v:.3g}" if (abs(v) >= 1e4 or abs(v) < 1e-3) else f"{v:.3f}"
    return str(v)


def markdown_table(df: pd.DataFrame, index: bool = True, na: str = "—") -> str:
    """A GitHub-flavoured Markdown table (written here: ``DataFrame.to_markdown`` needs ``tabulate``).

    Numeric columns are right-aligned; ``|`` in a cell is escaped; NaN shows as ``na``.
    """
    frame = df.reset_index() if index else df
    if index and isinstance(df.index, pd.MultiIndex) is False and df.index.name is None:
        frame = frame.rename(columns={"index": ""})
    header = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]

    def cell(v: Any) -> str:
        return format_number(v, na).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def html_table(df: pd.DataFrame, index: bool = True, na: str = "—") -> str:
    """An HTML table (:meth:`pandas.DataFrame.to_html`, escaped) with the same number format as Markdown."""
    frame = df.copy()
    for c in frame.columns:
        frame[c] = frame[c].map(lambda v: format_number(v, na))
    return frame.to_html(index=index, border=0, classes="table", escape=True, na_rep=na)


# ----------------------------------------------------------------------------- document model


@dataclass
class Block:
    """One piece of the report: ``kind`` is h2, h3, p, table, figure, code or list."""

    kind: str
    content: Any
    caption: str = ""
    index: bool = True


@dataclass
class FigureFile:
    """A written figure: file name (relative to the figures folder), title and caption."""

    name: str
    title: str
    caption: str


@dataclass
class Report:
    """The built report: its blocks, the figures written, the tables and the notes about missing inputs."""

    blocks: list[Block]
    figures: list[FigureFile]
    tables: dict[str, pd.DataFrame]
    notes: list[str]

    def markdown(self, figures_rel: str = "figures") -> str:
        return render_markdown(self.blocks, figures_rel)

    def html(self, figures_dir: Path) -> str:
        return render_html(self.blocks, figures_dir)


_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _html_text(text: str) -> str:
    """Escaped text with the two Markdown spans the report uses (`code`, **bold**) as HTML."""
    return _BOLD.sub(r"<strong>\1</strong>", _INLINE_CODE.sub(r"<code>\1</code>", html.escape(text)))


def render_markdown(blocks: Sequence[Block], figures_rel: str = "figures") -> str:
    """The blocks as Markdown; figures as ``![title](figures/<name>)`` with the caption under them."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.content}")
        elif b.kind == "h2":
            out.append(f"## {b.content}")
        elif b.kind == "h3":
            out.append(f"### {b.content}")
        elif b.kind == "p":
            out.append(str(b.content))
        elif b.kind == "list":
            out.append("\n".join(f"- {item}" for item in b.content))
        elif b.kind == "table":
            out.append(markdown_table(b.content, index=b.index) + (f"\n\n*{b.caption}*" if b.caption else ""))
        elif b.kind == "figure":
            f: FigureFile = b.content
            out.append(f"![{f.title}]({figures_rel}/{f.name})\n\n*{f.caption}*")
        elif b.kind == "code":
            out.append(f"```{b.caption}\n{str(b.content).rstrip()}\n```")
        else:
            raise DeepSaliencyError(f"report block kind {b.kind!r} is not allowed (h1, h2, h3, p, list, table, figure, code)")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;margin:2em auto;padding:0 1.5em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{border-bottom:1px solid #bbb;padding-bottom:.15em;margin-top:2em}
table.table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
table.table th,table.table td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
table.table th{background:#f0f0f0}table.table tbody tr:nth-child(even){background:#fafafa}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444;margin-top:.3em}.caption{font-size:.9em;color:#444}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}code{background:#f2f2f2;padding:0 .2em}
li{margin:.2em 0}table.table td:first-child,table.table th:first-child{text-align:left}
"""


def render_html(blocks: Sequence[Block], figures_dir: Path, title: str = "deep-saliency report") -> str:
    """The blocks as one self-contained HTML page: figures embedded as ``data:image/png;base64`` URIs,
    CSS inline, no script and no external reference."""
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{html.escape(str(b.content))}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_html_text(str(b.content))}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_html_text(str(i))}</li>" for i in b.content) + "</ul>")
        elif b.kind == "table":
            cap = f'<p class="caption">{_html_text(b.caption)}</p>' if b.caption else ""
            body.append(html_table(b.content, index=b.index) + cap)
        elif b.kind == "figure":
            f: FigureFile = b.content
            data = base64.b64encode((Path(figures_dir) / f.name).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(f.title)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_html_text(f.caption)}</figcaption></figure>")
        elif b.kind == "code":
            body.append(f"<pre><code>{html.escape(str(b.content))}</code></pre>")
        else:
            raise DeepSaliencyError(f"report block kind {b.kind!r} is not allowed (h1, h2, h3, p, list, table, figure, code)")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ----------------------------------------------------------------------------- building


class _Builder:
    """Collects blocks and writes figures; a figure whose input is missing or malformed becomes a note."""

    def __init__(self, art: Artifacts, figures_dir: Path, plot_params: dict, labels: Sequence[str] | None):
        self.art, self.dir, self.p, self.labels = art, Path(figures_dir), plot_params, labels
        self.blocks: list[Block] = []
        self.figures: list[FigureFile] = []
        self.tables: dict[str, pd.DataFrame] = {}
        self.notes = list(art.notes)

    def add(self, kind: str, content: Any, caption: str = "", index: bool = True) -> None:
        self.blocks.append(Block(kind, content, caption, index))

    def figure(self, name: str, title: str, caption: str, make) -> bool:
        """Build a figure with ``make()`` and save it; on a :class:`DeepSaliencyError` add a note instead."""
        try:
            fig = make()
        except DeepSaliencyError as exc:
            self.notes.append(f"Figure '{title}' left out: {exc}")
            return False
        file = f"{name}.png"
        plots.save_figure(fig, self.dir / file, dpi=self.p["dpi"])
        entry = FigureFile(file, title, caption)
        self.figures.append(entry)
        self.add("figure", entry)
        return True

    def table(self, key: str, df: pd.DataFrame, caption: str = "", index: bool = True) -> None:
        self.tables[key] = df
        self.add("table", df, caption, index)

    def label(self, idx: int) -> str:
        if self.labels is not None and 0 <= idx < len(self.labels):
            return str(self.labels[idx])
        return f"class {idx}"


def _manifest_rows(art: Artifacts) -> dict[str, dict]:
    if art.manifest is None or "stem" not in art.manifest.columns:
        return {}
    return {str(r["stem"]): r for r in art.manifest.to_dict("records")}


def _section_overview(b: _Builder, params: dict | None) -> None:
    art = b.art
    b.add("h1", "deep-saliency report")
    model = (params or {}).get("model", {})
    n = 0 if art.manifest is None else len(art.manifest)
    b.add("p", f"Model `{model.get('name', 'unknown')}`; {n} image(s); explanation methods: "
               f"{', '.join(art.methods) or 'none found'}; attacks: {', '.join(art.attacks) or 'none found'}.")


def _ranking_caption(ranking: dict | None) -> str:
    """The leaderboard's caption: which test ranked the methods, on how many images, and what it could tell apart."""
    if not (ranking or {}).get("methods"):
        return "Means over images. No ranks: reports/metrics.json has no leaderboard block."
    n, pairs, differ = (int(ranking.get(k, 0)) for k in ("images", "pairs", "pairs_differ"))
    alpha = float(ranking.get("alpha", 0.05))
    at = f" at ε = {ranking['eps']:g}/255" if "eps" in ranking else " at the attack's budget"
    text = (f"Rank 1 = hardest to manipulate{at}. Means over n = {n} images with 95 % bootstrap confidence intervals. "
            f"Ranks from reports/metrics.json: two-sided Wilcoxon signed-rank test of the per-image r(adv, target), "
            f"Holm-corrected over the {pairs} pairs of methods, α = {alpha:g}, n = {n}; methods share a rank unless "
            f"the tests separate them ({differ} of {pairs} pairs differ).")
    if pairs and 2 / 2**n >= alpha:  # the exact two-sided Wilcoxon p is at least 2/2^n
        text += (f" With {n} images no pair can differ at α = {alpha:g} (the exact test's smallest p, 2/2^{n}, is not "
                 "below it), so shared ranks are the honest answer.")
    return text


def _section_leaderboard(b: _Builder) -> None:
    art = b.art
    b.add("h2", "Robustness leaderboard")
    if art.map_similarity is None and art.faithfulness is None:
        b.add("p", "Not available: neither reports/metrics/map_similarity.csv nor reports/metrics/faithfulness.csv exists "
                   "(run the metrics stage).")
        return
    ranking = (art.metrics or {}).get("leaderboard") if isinstance(art.metrics, dict) else None
    lb = leaderboard(art.map_similarity, art.faithfulness, art.attack_quality, art.methods or None, ranking=ranking)
    b.tables["leaderboard_raw"] = lb
    hidden = [k for k in ("rank_auc", "auc") if lb[k].isna().all()]  # one budget: no area under a curve
    shown = lb.drop(columns=hidden).rename(columns={k: v[0] for k, v in LEADERBOARD_COLUMNS.items()})
    b.add("p", "Each explanation method is attacked (Dombrowski et al. 2019) so that its map on a barely changed "
               "image x_adv looks like the map of another image (the target) while the prediction is kept. "
               "The table ranks the methods by how close the attack got, at the attack's budget, next to how faithful "
               "the maps are. A robust, trustworthy method has a LOW r(adv, target) and a positive gain over the "
               "random map. '—' means the number could not be computed (see the meaning of each column below).")
    b.table("leaderboard", shown, caption=_ranking_caption(ranking), index=False)
    b.add("list", [f"**{LEADERBOARD_COLUMNS[k][0]}**: {LEADERBOARD_COLUMNS[k][1]}" for k in LEADERBOARD_COLUMNS
                   if k not in ("rank", "method", *hidden)])
    missing = []
    if not (ranking or {}).get("methods"):
        missing.append("reports/metrics.json has no leaderboard block, so no method is ranked and no interval is "
                       "shown (rerun the metrics stage)")
    if lb["adv_target"].isna().all():
        missing.append("r(adv, target) is missing for every method (no explanation-attack rows with pair adv_target)")
    elif lb["adv_target"].isna().any():
        missing.append("methods with no rank have no attack of their own; only how far other attacks moved them is known")
    if random_baseline(art.faithfulness) is None:
        missing.append("the random-map baseline is missing from faithfulness.csv, so the gains over random are empty")
    if art.attack_quality is None:
        missing.append("attack_quality.csv is missing, so the attack budget (L∞) column is empty")
    budgets = lb.loc[lb["rank"].notna(), "linf_255"].dropna()
    if len(budgets) > 1 and budgets.max() > 1.1 * budgets.min():
        missing.append(f"the attacks did not spend the same budget (own-attack L∞ from {budgets.min():.3g} to "
                       f"{budgets.max():.3g} /255), so the ranking compares methods at unequal budgets")
    if missing:
        b.add("p", "Honest gaps: " + "; ".join(missing) + ".")


def _section_model(b: _Builder) -> None:
    art = b.art
    b.add("h2", "Model and predictions")
    if art.manifest is None:
        b.add("p", "Not available: data/prepared/manifest.csv is missing.")
        return
    cols = [c for c in ("file", "stem", "class_idx", "label", "prob") if c in art.manifest.columns]
    b.table("manifest", art.manifest[cols], caption="The model's top-1 class and its softmax probability on each prepared image.",
            index=False)


def _section_explanations(b: _Builder) -> None:
    art, p = b.art, b.p
    b.add("h2", "Explanations")
    if art.manifest is None or not art.methods:
        b.add("p", "Not available: the manifest or the explanations are missing.")
        return
    b.add("p", f"Top row: each method's non-negative map (`{p['map_cmap']}`). Bottom row: the raw signed attribution "
               f"summed over the colour channels, on a diverging scale centred at 0 (`{p['signed_cmap']}`). "
               f"Each map is divided by the {p['clip_percentile']:g}th percentile of its absolute values and clipped, so "
               "the panels compare shapes, not units"
               + (f"; maps of {', '.join(p['min_max_methods'])} are shown from their minimum (min–max), as in the RISE "
                  "paper, because they carry a large constant offset." if p["min_max_methods"] else "."))
    rows = _manifest_rows(art)
    for stem, r in rows.items():
        def make(stem=stem, r=r):
            maps, attrs = {}, {}
            for m in art.methods:
                path = art.root / "data/explanations" / m / f"{stem}.npz"
                if not path.is_file():
                    raise DeepSaliencyError(f"{path} is missing")
                z = art.explanation(m, stem)
                maps[m] = z["map"]
                if "attribution" in z:
                    attrs[m] = z["attribution"]
            prob = r.get("prob")
            title = f"{stem}: {r.get('label', '')} (p = {float(prob):.2f})" if prob is not None and prob == prob else stem
            return plots.plot_methods(art.image(stem), maps, attrs or None, map_cmap=p["map_cmap"], signed_cmap=p["signed_cmap"],
                                      overlay=p["overlay"], overlay_alpha=p["overlay_alpha"], clip_percentile=p["clip_percentile"],
                                      min_max_methods=p["min_max_methods"], title=title)

        b.figure(f"explanations_{stem}", f"Explanations of {stem}",
                 f"{stem}: the image and every method's explanation of the predicted class.", make)


def _attack_rows(b: _Builder, attack: str) -> list[plots.AttackRow]:
    from .metrics.similarity import pearson  # the metrics' own Pearson (maps scaled by their max; constant map → 0)

    art = b.art
    rows = []
    for stem, r in _manifest_rows(art).items():
        path = art.root / "data/attacks" / attack / f"{stem}.npz"
        if not path.is_file():
            raise DeepSaliencyError(f"{path} is missing")
        z = art.attack(attack, stem)
        if f"map_{attack}" not in z or "x_adv" not in z:
            raise DeepSaliencyError(f"{path} lacks x_adv or map_{attack}")
        orig = art.explanation(attack, stem)["map"]
        target_stem = _string(z["target_stem"]) if "target_stem" in z else ""
        target = None
        if target_stem:
            tpath = art.root / "data/explanations" / attack / f"{target_stem}.npz"
            if not tpath.is_file():
                raise DeepSaliencyError(f"{path}: target_stem {target_stem!r} has no explanation {tpath}")
            target = art.explanation(attack, target_stem)["map"]
        adv = z[f"map_{attack}"]
        rows.append(plots.AttackRow(
            name=stem, x=art.image(stem), x_adv=z["x_adv"], orig_map=orig, adv_map=adv, target_map=target,
            label=str(r.get("label", "")), prob=r.get("prob"),
            label_adv=b.label(int(z["label_adv"])) if "label_adv" in z else "?",
            prob_adv=float(z["prob_adv"]) if "prob_adv" in z else None, target_name=target_stem,
            r_orig_target=None if target is None else pearson(orig, target),
            r_adv_target=None if target is None else pearson(adv, target)))
    return rows


def _section_attacks(b: _Builder) -> None:
    art, p = b.art, b.p
    b.add("h2", "Attacks")
    if not art.attacks or art.manifest is None:
        b.add("p", "Not available: no attack results (data/attacks/) or no manifest.")
    else:
        b.add("p", "Explanation attacks (Dombrowski et al. 2019, https://arxiv.org/abs/1906.07983): one row per image with "
                   "x, the adversarial image x_adv, their difference amplified (factor and L∞ norm written on it), the "
                   "attacked method's map on x and on x_adv, and the target map; r = Pearson correlation with the target map. "
                   "x_adv's title shows its predicted class and the probability it gives the ORIGINAL class.")
    for attack in art.attacks:
        if attack in art.methods:
            b.add("h3", f"Attack on {attack}")
            b.figure(f"attack_{attack}", f"Attack on {attack}",
                     f"Attack optimised against {attack}: the map on x_adv should look like the target map.",
                     lambda a=attack: plots.plot_attack(_attack_rows(b, a), a, map_cmap=p["map_cmap"],
                                                        clip_percentile=p["clip_percentile"],
                                                        min_max=a in p["min_max_methods"],
                                                        title=f"Explanation attack on {a.replace('_', ' ')}"))
        else:
            b.add("h3", f"Attack {attack} (untargeted)")
            b.figure(f"attack_{attack}", f"Attack {attack}",
                     f"{attack}: every method's map on x (upper row) and on x_adv (lower row); r = Pearson correlation "
                     "of the two maps (1 = unchanged).", lambda a=attack: _transfer_figure(b, a))
    b.add("h3", "Attack optimisation")
    if art.attack_loss:
        b.figure("attack_loss", "Attack optimisation curves",
                 "Per attack (rows): the explanation loss (distance of the map to the target, log scale when it spans "
                 "decades), the output loss (change of the model's output) and the softplus β schedule, per image.",
                 lambda: plots.plot_attack_losses(art.attack_loss))
    else:
        b.add("p", "Not available: reports/plots/attack_loss.csv is missing or has no listed attack.")
    b.add("h3", "Attack quality")
    if art.attack_quality is not None:
        try:
            b.table("attack_quality", quality_summary(art.attack_quality, art.attacks or None),
                    caption="Means over images. Norms in /255 units; top1_kept = fraction of images whose predicted "
                            "class is unchanged; prob_* = probability of the original class.")
        except DeepSaliencyError as exc:
            b.notes.append(f"Attack quality table left out: {exc}")
    else:
        b.add("p", "Not available: reports/metrics/attack_quality.csv is missing.")


def _transfer_figure(b: _Builder, attack: str):
    from .metrics.similarity import pearson

    art = b.art
    images, orig_maps, adv_maps, sims = [], [], [], []
    for stem in _manifest_rows(art):
        path = art.root / "data/attacks" / attack / f"{stem}.npz"
        if not path.is_file():
            raise DeepSaliencyError(f"{path} is missing")
        z = art.attack(attack, stem)
        methods = [m for m in art.methods if f"map_{m}" in z]
        if not methods or "x_adv" not in z:
            raise DeepSaliencyError(f"{path} lacks x_adv or any map_<method>")
        o = {m: art.explanation(m, stem)["map"] for m in methods}
        a = {m: z[f"map_{m}"] for m in methods}
        images.append((stem, art.image(stem), z["x_adv"]))
        orig_maps.append(o)
        adv_maps.append(a)
        sims.append({m: pearson(o[m], a[m]) for m in methods})
    return plots.plot_attack_transfer(images, orig_maps, adv_maps, similarity=sims, map_cmap=b.p["map_cmap"],
                                      clip_percentile=b.p["clip_percentile"], min_max_methods=b.p["min_max_methods"],
                                      title=f"Attack {attack}: maps before and after")


def _section_transfer(b: _Builder) -> None:
    art = b.art
    b.add("h2", "Transfer matrix")
    sim = art.map_similarity
    if sim is None:
        b.add("p", "Not available: reports/metrics/map_similarity.csv is missing.")
        return
    try:
        adv_t = transfer_matrix(sim, "pearson", "adv_target", methods=art.methods or None)
        orig_adv = transfer_matrix(sim, "pearson", "orig_adv", methods=art.methods or None)
    except DeepSaliencyError as exc:
        b.notes.append(f"Transfer matrix left out: {exc}")
        b.add("p", f"Not available: {exc}.")
        return
    b.add("p", "Rows: the method an attack was optimised against. Columns: the method whose map on x_adv is evaluated. "
               "Outlined cells are the attack on the method itself. Off-diagonal cells show whether manipulating one "
               "explanation also manipulates the others.")
    if not adv_t.empty:
        b.figure("transfer_adv_target", "Transfer matrix: r(adversarial map, target map)",
                 "Pearson correlation of the evaluated method's map on x_adv with that method's map of the target image, "
                 "mean over images. Higher = the map on x_adv looks more like the target. Compare each column with the "
                 "leaderboard's r(orig, target): maps of different images can be alike before any attack.",
                 lambda: plots.plot_transfer_matrix(adv_t, title="r(map on x_adv, target map)", value_label="Pearson r, mean over images"))
        b.table("transfer_adv_target", adv_t, caption="r(adversarial map, target map): the figure's numbers.")
    else:
        b.add("p", "No adv_target rows in map_similarity.csv: no explanation attack has a target yet.")
    if not orig_adv.empty:
        b.figure("transfer_orig_adv", "Transfer matrix: r(original map, adversarial map)",
                 "Pearson correlation of each method's map on x with its map on x_adv, mean over images. Lower = the "
                 "attack changed the map more (1 = unchanged). PGD's row shows what a plain adversarial example does.",
                 lambda: plots.plot_transfer_matrix(orig_adv, title="r(map on x, map on x_adv)", value_label="Pearson r, mean over images"))
    try:
        b.table("own_map_shift", own_map_shift(sim),
                caption="Every similarity metric of the attacked method's own map (PGD: mean over methods), mean over images.")
    except DeepSaliencyError as exc:
        b.notes.append(f"Own-map similarity table left out: {exc}")


def _faithfulness_uncertainty(table: pd.DataFrame, metrics: dict | None) -> tuple[pd.DataFrame, int]:
    """``table`` (:func:`faithfulness_summary`) with the originals' 95 % CIs and p vs random from metrics.json, and n."""
    orig = ((metrics or {}).get("faithfulness") or {}).get("original") if isinstance(metrics, dict) else None
    if not isinstance(orig, dict) or not orig:
        return table, 0
    out = table.copy()
    at = list(out.columns).index("insertion on x ↑") + 1
    for kind in ("insertion", "deletion"):  # inserted in reverse so that deletion's columns come first
        cells = [(orig.get(m) or {}).get(kind) or {} for m in out.index]
        ci = [f"[{format_number(c['ci_low'])}, {format_number(c['ci_high'])}]" if "ci_low" in c else None for c in cells]
        out.insert(at, f"{kind} p vs random", [c.get("p_random", np.nan) for c in cells])
        out.insert(at, f"{kind} on x: 95 % CI", ci)
    ns = {int(c[k]["n"]) for c in orig.values() if isinstance(c, dict) for k in ("deletion", "insertion") if k in c}
    return out, max(ns) if ns else 0


def _section_faithfulness(b: _Builder) -> None:
    art = b.art
    b.add("h2", "Faithfulness: deletion and insertion")
    b.add("p", "Deletion (Petsiuk et al. 2018): the most salient pixels are removed first; a faithful map makes the "
               "probability of the class fall fast (lower AUC is better). Insertion: pixels are put back into a blurred "
               "image in the same order (higher AUC is better). The random map is the baseline every method must beat.")
    for kind in ("deletion", "insertion"):
        df = art.curves.get(kind)
        if df is None:
            b.add("p", f"{kind.capitalize()} curves: not available (reports/plots/{kind}_curves.csv is missing).")
            continue
        b.figure(f"{kind}_curves", f"{kind.capitalize()} curves",
                 f"{kind.capitalize()} curves on the original images, one panel per image; the legend gives each "
                 "method's AUC, mean over images.",
                 lambda df=df, kind=kind: plots.plot_curves(originals(df), kind))
    if art.faithfulness is not None:
        try:
            table = faithfulness_summary(art.faithfulness, art.methods or None)
            table, n = _faithfulness_uncertainty(table, art.metrics)
            b.table("faithfulness", table,
                    caption="AUC means over images. 'own attack' = the map of the attacked method on x_adv of the attack "
                            "against it: a manipulated map that still scores well is the dangerous case."
                            + (f" 95 % bootstrap CIs over n = {n} images and p against the random map (two-sided "
                               "Wilcoxon signed-rank over images, Holm-corrected over the methods) from "
                               "reports/metrics.json." if n else ""))
        except DeepSaliencyError as exc:
            b.notes.append(f"Faithfulness table left out: {exc}")
    else:
        b.add("p", "Faithfulness table: not available (reports/metrics/faithfulness.csv is missing).")


def _section_params(b: _Builder, params: dict | None) -> None:
    art = b.art
    b.add("h2", "Run parameters")
    if params:
        b.add("code", yaml.safe_dump(params, sort_keys=False, allow_unicode=True), caption="yaml")
    else:
        b.add("p", "Not available: no parameters given.")
    if art.metrics:
        flat = flatten(art.metrics)
        df = pd.DataFrame({"value": list(flat.values())}, index=pd.Index(list(flat), name="metric"))
        b.add("h3", "Summary metrics (reports/metrics.json)")
        b.table("metrics_json", df, caption="Flattened keys of reports/metrics.json, as `dvc metrics show` prints them.")


def build_report(root: str | Path, figures_dir: str | Path, params: dict | None = None,
                 plot_params: dict | None = None, labels: Sequence[str] | None = None) -> Report:
    """Read the artifacts under ``root``, write every figure into ``figures_dir`` and assemble the report.

    Args:
        root: repository root (``data/`` and ``reports/`` below it).
        figures_dir: an existing folder for the PNG files.
        params: the run's validated parameters (shown in the report; ``explain.methods`` and ``attack.methods``
            (plus pgd) choose and order the methods and attacks shown).
        plot_params: the ``plots:`` section (see :func:`deepsaliency.plots.plot_params`); None → defaults.
        labels: class names by index (for x_adv's predicted class); None → "class <idx>".

    Returns:
        The :class:`Report`; render it with :meth:`Report.markdown` / :meth:`Report.html`.
    """
    p = plots.plot_params(plot_params)
    methods = ((params or {}).get("explain") or {}).get("methods")
    attacks = ((params or {}).get("attack") or {}).get("methods")
    if attacks is not None:
        attacks = [*attacks, *([] if PGD in attacks else [PGD])]  # the pgd stage always runs
    art = load_artifacts(root, methods, attacks)
    b = _Builder(art, Path(figures_dir), p, labels)
    _section_overview(b, params)
    _section_leaderboard(b)
    _section_model(b)
    _section_explanations(b)
    _section_attacks(b)
    _section_transfer(b)
    _section_faithfulness(b)
    _section_params(b, params)
    b.add("h2", "Missing inputs")
    b.add("list" if b.notes else "p", b.notes if b.notes else "None: every input of the report was present.")
    return Report(b.blocks, b.figures, b.tables, b.notes)


def write_report(root: str | Path = ".", out: str | Path = "reports", params: dict | None = None,
                 plot_params: dict | None = None, labels: Sequence[str] | None = None) -> Report:
    """Build the report and write ``<out>/figures/``, ``<out>/report.md`` and ``<out>/index.html`` all-or-nothing.

    The figures folder and both files are renamed into place only after everything was written
    (:func:`deepsaliency.stage.atomic_dir` / :func:`~deepsaliency.stage.atomic_file`); on an error none of them changes
    except that the figures folder is removed (DVC reruns the stage).

    Returns:
        The :class:`Report`.
    """
    out = Path(root) / out
    with atomic_dir(out / "figures") as figs, atomic_file(out / "report.md") as md, atomic_file(out / "index.html") as page:
        report = build_report(root, figs, params, plot_params, labels)
        md.write_text(report.markdown("figures"), encoding="utf-8")
        page.write_text(report.html(figs), encoding="utf-8")
    return report
