"""A fake pipeline output for the report tests: random 32×32 images, fake explanations, attacks and metric
tables in the metrics stage's format, with known means (no model needed)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from deepsaliency.metrics import aggregates
from deepsaliency.metrics.summary import leaderboard

ROOT = Path(__file__).resolve().parents[1]
METHODS = [
    "rise",
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "smoothgrad",
    "gradient_shap",
    "occlusion",
    "gradcam",
]
ATTACKS = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise", "pgd"]
STEMS = ["cat", "cup", "rocket"]
#: r(adversarial map, target map) of each attack against its own method: the leaderboard must rank by it.
OWN_R = {"saliency": 0.9, "input_x_gradient": 0.8, "integrated_gradients": 0.6, "smoothgrad": 0.4, "rise": 0.2}
#: mean insertion AUC on the originals; random = 0.3
INSERTION = {m: 0.3 + 0.05 * i for i, m in enumerate(METHODS)}


def _write_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


#: A small run for the tests that only need some figures (matplotlib layout costs ~1-5 s a figure here).
SMALL = dict(methods=["saliency", "gradcam"], attacks=["saliency", "pgd"], stems=STEMS[:2])


def _write_images(root: Path, stems, size: int, rng) -> dict[str, np.ndarray]:
    prepared = root / "data/prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    images = {}
    for s in stems:
        img = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(prepared / f"{s}.png")
        images[s] = img.transpose(2, 0, 1).astype(np.float32) / 255
    n = len(stems)
    manifest = {"file": [f"{s}.png" for s in stems], "stem": stems, "class_idx": [285, 967, 657][:n],
                "label": ["Egyptian cat", "espresso", "missile"][:n], "prob": [0.54, 0.9, 0.43][:n]}  # fmt: skip
    pd.DataFrame(manifest).to_csv(prepared / "manifest.csv", index=False)
    return images


def _write_explanations(root: Path, methods, stems, size: int, rng) -> dict[tuple[str, str], np.ndarray]:
    maps = {}
    for m in methods:
        for s in stems:
            channels = 1 if m in ("rise", "gradcam") else 3
            attr = rng.normal(size=(channels, size, size)).astype(np.float32)
            if m == "rise":
                attr = np.abs(attr)
            smap = np.maximum(attr[0], 0) if m == "gradcam" else np.abs(attr).sum(0)
            maps[(m, s)] = smap
            path = root / "data/explanations" / m / f"{s}.npz"
            _write_npz(path, attribution=attr, map=smap.astype(np.float32), target=np.int64(1))
    return maps


def _write_attacks(root: Path, methods, attacks, stems, size: int, rng, images, maps) -> None:
    for a in attacks:
        for i, s in enumerate(stems):
            t = "" if a == "pgd" else stems[(i + 1) % len(stems)]
            x_adv = np.clip(images[s] + rng.uniform(-8 / 255, 8 / 255, images[s].shape), 0, 1).astype(np.float32)
            adv_maps = {}
            for m in methods:
                w = 0.8 if m == a else 0.2
                base = maps[(m, t)] if t else rng.random((size, size))
                adv_maps[f"map_{m}"] = ((1 - w) * maps[(m, s)] + w * base).astype(np.float32)
            _write_npz(root / "data/attacks" / a / f"{s}.npz", x_adv=x_adv, target_stem=np.array(t),
                       label_adv=np.int64(281), prob_adv=np.float32(0.3), **adv_maps)  # fmt: skip


def _write_curves(root: Path, methods, stems) -> None:
    frac = np.linspace(0, 1, 9)
    (root / "reports/plots").mkdir(parents=True, exist_ok=True)
    for kind in ("deletion", "insertion"):
        rows = []
        for k, m in enumerate([*methods, "random"]):
            prob = np.exp(-(2 + k) * frac) if kind == "deletion" else 1 - np.exp(-(2 + k) * frac)
            rows += [{"method": m, "image": s, "attack": "none", "fraction": f, "prob": p}
                     for s in stems for f, p in zip(frac, prob, strict=True)]  # fmt: skip
        pd.DataFrame(rows).to_csv(root / f"reports/plots/{kind}_curves.csv", index=False)


def _write_losses(root: Path, attacks, stems) -> None:
    """The metrics stage's one long table (reports/plots/attack_loss.csv, column attack)."""
    (root / "reports/plots").mkdir(parents=True, exist_ok=True)
    rows = [{"attack": a, "step": int(k), "image": s,
             "expl_loss": np.nan if a == "pgd" else 10 ** (-k / 5) * (j + 1),
             "output_loss": 0.01 * k, "beta": np.nan if a == "pgd" else 10 + 5 * k}
            for a in attacks for j, s in enumerate(stems) for k in np.arange(20)]  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "reports/plots/attack_loss.csv", index=False)


def make_artifacts(root: Path, size: int = 32, seed: int = 0, metrics: bool = True, curves: bool = True,
                   losses: bool = True, methods=METHODS, attacks=ATTACKS, stems=STEMS) -> Path:  # fmt: skip
    """Write a complete fake pipeline output under ``root`` (by default 3 images, 8 methods, 6 attacks)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    images = _write_images(root, stems, size, rng)
    maps = _write_explanations(root, methods, stems, size, rng)
    _write_attacks(root, methods, attacks, stems, size, rng, images, maps)
    if metrics:
        write_metric_tables(root, methods, attacks, stems)
    if curves:
        _write_curves(root, methods, stems)
    if losses:
        _write_losses(root, attacks, stems)
    return root


def _similarity_rows(methods, attacks, stems) -> list[dict]:
    rows = []
    noises = [0.0] if len(stems) == 1 else np.linspace(-0.01, 0.01, len(stems))  # symmetric: the mean is exact
    for a in attacks:
        for j, s in enumerate(stems):
            for m in methods:
                pairs = {"orig_adv": 0.7 if a == "pgd" else (0.5 if m == a else 0.8)}
                if a != "pgd":
                    pairs["orig_target"] = 0.05
                    pairs["adv_target"] = OWN_R[a] + noises[j] if m == a else 0.2 - 0.01 * METHODS.index(m)
                rows += [{"image": s, "attack": a, "method": m, "pair": pair, "diagonal": m == a, "target": "",
                          "ssim": r, "mse": 1 - r, "psnr": 20.0, "pearson": r, "spearman": r, "top_k": r,
                          "com_shift": 1.5} for pair, r in pairs.items()]  # fmt: skip
    return rows


def write_metric_tables(root: Path, methods=METHODS, attacks=ATTACKS, stems=STEMS) -> None:
    """map_similarity / attack_quality / faithfulness in the metrics stage's format, with known means."""
    rows = _similarity_rows(methods, attacks, stems)
    mdir = root / "reports/metrics"
    mdir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(mdir / "map_similarity.csv", index=False)
    q = [{"image": s, "attack": a, "label_orig": 1, "label_adv": 1, "top1_kept": 1.0, "prob_orig": 0.5,
          "prob_adv": 0.4, "prob_change": -0.1, "l2_255": 100.0, "linf_255": 8.0 if a == "pgd" else 3.0,
          "psnr": 40.0, "ssim": 0.99} for a in attacks for s in stems]  # fmt: skip
    pd.DataFrame(q).to_csv(mdir / "attack_quality.csv", index=False)
    f = []
    for s in stems:
        f += [{"image": s, "attack": "none", "method": m, "deletion": 0.2 if m != "random" else 0.35,
               "insertion": INSERTION.get(m, 0.3)} for m in [*methods, "random"]]  # fmt: skip
        for a in [a for a in attacks if a != "pgd"]:
            f += [{"image": s, "attack": a, "method": m, "deletion": 0.25, "insertion": 0.5} for m in (a, "random")]
    pd.DataFrame(f).to_csv(mdir / "faithfulness.csv", index=False)
    # The ranking block as the metrics stage writes it (paired tests over images; 3 images → shared ranks).
    board = leaderboard(pd.DataFrame(rows)) if rows else {}
    summary = {
        "images": len(stems),
        "attack": {"pgd": {"success_rate": 1.0}},
        **({"leaderboard": board} if board else {}),
    }
    (root / "reports/metrics.json").write_text(json.dumps(summary))
    write_report_tables(root)


def write_report_tables(root: Path) -> None:
    """What the metrics stage writes for the report from its per-image tables (the report computes nothing):
    :func:`deepsaliency.metrics.aggregates.summary_tables` of ``reports/metrics/*.csv`` at metrics.json's ranked
    budget. Call it again after changing a per-image table."""
    mdir = Path(root) / "reports/metrics"
    read = {n: pd.read_csv(mdir / f"{n}.csv") if (mdir / f"{n}.csv").is_file() else None
            for n in ("map_similarity", "attack_quality", "faithfulness")}  # fmt: skip
    mj = Path(root) / "reports/metrics.json"
    eps = (json.loads(mj.read_text()).get("leaderboard") or {}).get("eps") if mj.is_file() else None
    tables = aggregates.summary_tables(read["map_similarity"], read["attack_quality"], read["faithfulness"], eps)
    for name in aggregates.SUMMARY_TABLES:
        (mdir / f"{name}.csv").unlink(missing_ok=True)  # a table that cannot be made any more is absent
    aggregates.write_summary_tables(mdir, tables)
