"""The metrics stage's tables and summary, and the stage end to end on synthetic artifacts (hand-computable inputs).
Split from tests/test_metrics.py (map similarity and attack quality stay there)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from deepsaliency.errors import DeepSaliencyError, ParamError
from deepsaliency.metrics import compare_maps, tables
from deepsaliency.metrics import summary as summaries

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
MAP = RNG.random((32, 32))


# ---------------------------------------------------------------- tables and summary


def _rows(kind: str) -> pd.DataFrame:
    if kind == "similarity":
        rows = []
        for a in ("saliency", "pgd"):
            for m, base in (("saliency", 0.1), ("gradcam", 0.5), ("rise", 0.7)):
                for pair in ("orig_adv",) if a == "pgd" else tables.PAIRS:
                    rows.append(
                        {
                            "image": "a",
                            "attack": a,
                            "method": m,
                            "pair": pair,
                            "diagonal": m == a,
                            "target": "",
                            **{k: base for k in ("ssim", "mse", "psnr", "pearson", "spearman", "top_k", "com_shift")},
                        }
                    )
        return pd.DataFrame(rows)
    if kind == "quality":
        return pd.DataFrame(
            [
                {
                    "image": s,
                    "attack": "pgd",
                    "label_orig": 1,
                    "label_adv": la,
                    "top1_kept": float(la == 1),
                    "prob_orig": 0.9,
                    "prob_adv": 0.2,
                    "prob_change": -0.7,
                    "l2_255": 1.0,
                    "linf_255": 2.0,
                    "psnr": 40.0,
                    "ssim": 0.99,
                }
                for s, la in (("a", 1), ("b", 3))
            ]
        )
    return pd.DataFrame(
        [
            {"image": "a", "attack": "none", "method": m, "deletion": 0.1, "insertion": 0.5}
            for m in ("saliency", "random")
        ]
    )


def test_summary_separates_attack_and_transfer_and_is_finite():
    summary = summaries.summarize(_rows("similarity"), _rows("quality"), _rows("faithfulness"))
    sim = summary["similarity"]
    assert sim["saliency"]["diagonal"]["orig_adv"]["ssim"]["mean"] == pytest.approx(0.1)
    # mean of gradcam 0.5, rise 0.7
    assert sim["saliency"]["transfer"]["adv_target"]["pearson"]["mean"] == pytest.approx(0.6)
    assert list(sim["pgd"]) == ["all"] and list(sim["pgd"]["all"]) == ["orig_adv"]
    assert summary["attack"]["pgd"]["success_rate"]["mean"] == 0.5
    assert summary["attack"]["pgd"]["top1_kept"]["mean"] == 0.5
    assert summary["faithfulness"]["original"]["random"] == {
        k: {"mean": v, "ci_low": v, "ci_high": v, "n": 1} for k, v in (("deletion", 0.1), ("insertion", 0.5))
    }
    json.dumps(summary, allow_nan=False)


def test_nan_anywhere_in_the_summary_or_a_table_is_refused():
    with pytest.raises(DeepSaliencyError, match=r"metrics.similarity.x.ssim: nan is not finite"):
        summaries.assert_finite({"similarity": {"x": {"ssim": float("nan")}}})
    df = _rows("faithfulness")
    df.loc[1, "insertion"] = np.inf
    with pytest.raises(DeepSaliencyError, match=r"faithfulness.csv: column 'insertion' row 1"):
        summaries.assert_finite_table(df, "faithfulness.csv")


def test_faithfulness_jobs_diagonal_all_and_none():
    stems, methods, attacks = ["a", "b"], ["saliency", "gradcam"], [("saliency", 8.0), ("rise", 8.0), ("pgd", 8.0)]
    diag = tables.faithfulness_jobs(stems, methods, attacks, "diagonal")
    assert len(diag) == 2 * 3 + 2 * 2  # originals: 2 methods + random; only saliency's attack has its method evaluated
    assert ("a", "saliency", 8.0, "saliency") in diag and ("b", "saliency", 8.0, "random") in diag
    assert not any(a in ("rise", "pgd") for _, a, _, _ in diag)
    assert len(tables.faithfulness_jobs(stems, methods, attacks, "all")) == 2 * 3 * 4
    assert len(tables.faithfulness_jobs(stems, methods, attacks, "none")) == 6


def test_settings_take_defaults_and_reject_bad_values():
    assert tables.settings_from_params({}) == tables.Settings()
    s = tables.settings_from_params({"metrics": {"top_k": 10}, "faithfulness": {"step": 7, "substrate": "blur"}})
    assert (s.top_k, s.step, s.substrate, s.blur_sigma) == (10, 7, "blur", 5.0)
    with pytest.raises(
        ParamError, match=r"faithfulness.blur_kernel: 10 is not allowed \(expected an odd integer ≥ 1\)"
    ):
        tables.settings_from_params({"faithfulness": {"blur_kernel": 10}})
    with pytest.raises(ParamError, match=r"metrics.topk: unknown key"):
        tables.settings_from_params({"metrics": {"topk": 10}})


# ---------------------------------------------------------------- the stage, end to end on synthetic artifacts

SIZE = 64
METHODS = ("saliency", "gradcam")


def _make_project(root: Path) -> dict:
    """A tiny artifact tree: 2 images (64²), 2 explained methods, a saliency attack and PGD."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if "faithfulness" in params:  # once the lead's schema knows the section, pin the values this test counts on
        params["faithfulness"].update(step=1792, adversarial="diagonal", random_cell=1)
    if "metrics" in params:
        params["metrics"]["top_k"] = 100
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rng = np.random.default_rng(1)
    prep = root / "data/prepared"
    prep.mkdir(parents=True)
    x, maps = {}, {}
    for stem, cls in (("a", 1), ("b", 2)):
        img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(img).save(prep / f"{stem}.png")
        x[stem] = img.transpose(2, 0, 1).astype(np.float32) / 255
        for m in METHODS:
            maps[(m, stem)] = rng.random((SIZE, SIZE)).astype(np.float32)
            d = root / "data/explanations" / m
            d.mkdir(parents=True, exist_ok=True)
            np.savez(d / f"{stem}.npz", attribution=maps[(m, stem)][None], map=maps[(m, stem)], target=np.int64(cls))
    pd.DataFrame(
        {"file": ["a.png", "b.png"], "stem": ["a", "b"], "class_idx": [1, 2], "label": ["x", "y"], "prob": [0.5, 0.25]}
    ).to_csv(prep / "manifest.csv", index=False)
    adv = {}
    for attack in ("saliency", "pgd"):  # the saliency attack at the budget 8/255; PGD has one folder
        d = root / "data/attacks" / attack / ("" if attack == "pgd" else "eps8")
        d.mkdir(parents=True)
        for stem, target, label_adv in (("a", "b", 1), ("b", "a", 7)):
            x_adv = np.clip(x[stem] + rng.uniform(-8, 8, x[stem].shape) / 255, 0, 1).astype(np.float32)
            amaps = {m: rng.random((SIZE, SIZE)).astype(np.float32) for m in METHODS}
            adv[(attack, stem)] = amaps
            np.savez(
                d / f"{stem}.npz",
                x_adv=x_adv,
                target_stem=np.array("" if attack == "pgd" else target),
                label_adv=np.int64(label_adv),
                prob_adv=np.float64(0.1),
                **(
                    {}
                    if attack == "pgd"
                    else {"converged": np.bool_(stem == "a"), "steps": np.int64(3), "passes": np.int64(9)}
                ),
                **{f"map_{m}": v for m, v in amaps.items()},
            )
    # The attack stage's loss log is part of its contract (the metrics stage gathers it for the plots).
    (root / "reports/attack_loss").mkdir(parents=True)
    pd.DataFrame(
        {
            "step": [1, 1],
            "image": ["a", "b"],
            "expl_loss": [1e-9, 2e-9],
            "output_loss": [0.0, 1e-8],
            "beta": [10.0, 10.0],
        }
    ).to_csv(root / "reports/attack_loss/saliency-eps8.csv", index=False)
    _write_trust_inputs(root)
    return {"maps": maps, "adv": adv}


#: Top-k intersection of the untargeted top-k attack on saliency at 8/255, images a and b.
UNTARGETED_TOPK = [0.4, 0.6]


def _write_trust_inputs(root: Path) -> None:
    """The untargeted and stability stages' outputs: saliency's run at 8/255 (listed), a stale run at 4/255 (not
    listed: never read), gradcam listed but not run; the stability summary of saliency and of lrp (not explained)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.setdefault("untargeted", {}).update(methods=["saliency", "gradcam"], eps=[8])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    folder = root / "reports/untargeted"
    folder.mkdir(parents=True)
    for eps, top in ((8, UNTARGETED_TOPK), (4, [1.0, 1.0])):
        rows = [{"image": s, "method": "saliency", "eps": eps, "kind": k, "topk_intersection": t, "com_shift_px": 2.0,
                 "label_kept": 1, "prob_adv": 0.5, "linf": eps, "converged": 1, "steps": 5, "passes": 10}
                for s, t in zip("ab", top, strict=True) for k in ("topk", "center_of_mass")]  # fmt: skip
        pd.DataFrame(rows).to_csv(folder / f"saliency-eps{eps}.csv", index=False)
    (root / "reports/stability").mkdir(parents=True)
    pd.DataFrame(
        [("saliency", "sensitivity_max", 0.88, 0.86, 0.89, 2), ("lrp", "sensitivity_max", 1.1, 1.0, 1.2, 2)],
        columns=["method", "metric", "mean", "ci_low", "ci_high", "n"],
    ).to_csv(root / "reports/stability/summary.csv", index=False)


def _run_stage(root: Path) -> subprocess.CompletedProcess:
    """The per-image part (metrics_images, the one shard of a folder prepared before shards), then the metrics."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for script in ("stages/metrics_images.py", "stages/metrics.py"):
        proc = subprocess.run([sys.executable, str(ROOT / script)], cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return proc
    return proc


def finished_project(root: Path) -> tuple[Path, dict]:
    """(root, the truth of _make_project) after both stages ran there."""
    truth = _make_project(root)
    proc = _run_stage(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, truth


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    return finished_project(tmp_path_factory.mktemp("metrics_stage"))


def test_stage_writes_every_table_with_the_right_rows(stage_run, model):
    root, truth = stage_run
    sim = pd.read_csv(root / "reports/metrics/map_similarity.csv")
    # 2 images × (saliency attack: 2 methods × 3 pairs + pgd: 2 methods × 1 pair)
    assert len(sim) == 16 and set(sim["pair"]) == set(tables.PAIRS)
    assert set(sim[sim["attack"] == "pgd"]["pair"]) == {"orig_adv"}
    assert sim["diagonal"].sum() == 6  # saliency attack, saliency method, 2 images × 3 pairs
    # Pair semantics: (adversarial, target) of image a under gradcam = attack map vs gradcam's map of image b.
    row = sim[
        (sim.image == "a") & (sim.attack == "saliency") & (sim.method == "gradcam") & (sim.pair == "adv_target")
    ].iloc[0]
    expected = compare_maps(truth["adv"][("saliency", "a")]["gradcam"], truth["maps"][("gradcam", "b")], top_k=100)
    for metric in ("ssim", "pearson", "com_shift"):
        assert row[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6)
    assert row["target"] == "b"
    quality = pd.read_csv(root / "reports/metrics/attack_quality.csv")
    assert len(quality) == 4 and quality["linf_255"].max() <= 8 + 1e-3
    x_a = torch.from_numpy(np.asarray(Image.open(root / "data/prepared/a.png"), dtype=np.float32) / 255).permute(
        2, 0, 1
    )[None]
    with torch.inference_mode():
        p_a = float(model(x_a).softmax(-1)[0, 1])  # class 1 is a's "originally predicted" class in the manifest
    assert quality[quality.image == "a"]["prob_orig"].eq(quality[quality.image == "a"]["prob_orig"].iloc[0]).all()
    assert quality[quality.image == "a"]["prob_orig"].iloc[0] == pytest.approx(p_a, rel=1e-4)
    faith = pd.read_csv(root / "reports/metrics/faithfulness.csv")
    assert len(faith) == 2 * 3 + 2 * 2 and set(faith["method"]) == {"saliency", "gradcam", "random"}
    assert faith[["deletion", "insertion"]].apply(lambda c: c.between(0, 1)).all().all()
    for kind in ("deletion", "insertion"):
        curves = pd.read_csv(root / f"reports/plots/{kind}_curves.csv")
        assert list(curves.columns[:2]) == ["method", "image"] and {"fraction", "prob"} <= set(curves.columns)
        assert len(curves) == 10 * 4  # 10 curves × (ceil(4096 / 1792) + 1) points
        assert curves.groupby(["method", "image", "attack"])["fraction"].agg(["min", "max"]).eq([0, 1]).all().all()


def test_stage_summary_is_finite_and_readable(stage_run):
    root, _ = stage_run
    summary = json.loads(
        (root / "reports/metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in metrics.json")
    )
    assert summary["images"] == 2
    # every attack block is per budget: saliency's at 8/255, PGD's at pgd.eps = 8/255
    assert summary["attack"]["pgd"]["eps8"]["success_rate"]["mean"] == 0.5  # b's label flipped, a's did not
    assert summary["attack"]["saliency"]["eps8"]["top1_kept"]["mean"] == 0.5
    assert summary["attack"]["saliency"]["eps8"]["converged_rate"]["mean"] == 0.5  # a converged, b did not
    assert summary["attack"]["saliency"]["eps8"]["passes"]["mean"] == 9
    assert set(summary["similarity"]["saliency"]["eps8"]) == {"diagonal", "transfer"}
    assert set(summary["faithfulness"]) == {"original", "saliency"}
    assert set(summary["faithfulness"]["saliency"]["eps8"]) == {"saliency", "random"}
    assert summary["leaderboard"]["methods"]["saliency"]["converged_rate"] == 0.5
    curve = pd.read_csv(root / "reports/metrics/manipulability.csv")
    assert list(curve.columns) == ["method", "eps", "n", "mean", "ci_low", "ci_high", "converged_rate"]
    assert curve[["method", "eps", "n", "converged_rate"]].values.tolist() == [["saliency", 8.0, 2, 0.5]]
    conv = pd.read_csv(root / "reports/metrics/convergence.csv")
    assert conv[["image", "converged", "steps", "passes"]].values.tolist() == [["a", 1, 3, 9], ["b", 0, 3, 9]]


def test_stage_writes_the_reports_tables_defence_untargeted_and_stability(stage_run):
    root, _ = stage_run
    mdir = root / "reports/metrics"
    sim = pd.read_csv(mdir / "map_similarity.csv")
    own = sim[(sim.attack == "saliency") & (sim.method == "saliency") & (sim.pair == "adv_target")]
    # The report's numbers, from the exact per-image values (the CSVs hold 6 significant digits); the report reads them.
    board = pd.read_csv(mdir / "leaderboard.csv", index_col="method")
    assert board.loc["saliency", "adv_target"] == pytest.approx(own["pearson"].mean(), rel=1e-5)
    transfer = pd.read_csv(mdir / "transfer_adv_target.csv", index_col="attack")
    cross = sim[(sim.attack == "saliency") & (sim.method == "gradcam") & (sim.pair == "adv_target")]
    assert transfer.loc["saliency", "gradcam"] == pytest.approx(cross["pearson"].mean(), rel=1e-5)
    quality = pd.read_csv(mdir / "attack_quality_summary.csv", index_col="attack")
    raw = pd.read_csv(mdir / "attack_quality.csv")
    assert quality.loc["pgd", "linf_255"] == pytest.approx(raw[raw.attack == "pgd"]["linf_255"].mean(), rel=1e-5)
    summary = json.loads((root / "reports/metrics.json").read_text())
    # Untargeted: only the listed run that ran; the stale 4/255 file is not read.
    fragile = pd.read_csv(mdir / "untargeted.csv")
    assert fragile[["method", "eps", "kind", "n"]].values.tolist() == [
        ["saliency", 8.0, "topk", 2],
        ["saliency", 8.0, "center_of_mass", 2],
    ]
    top = summary["untargeted"]["saliency"]["eps8"]["topk"]["topk_intersection"]
    assert top["mean"] == pytest.approx(np.mean(UNTARGETED_TOPK)) and top["n"] == 2
    # Defence: saliency was attacked at 8/255, its defences were not.
    shield = pd.read_csv(mdir / "defence.csv")
    row = shield[(shield.defended == "saliency_smoothed") & (shield.eps == 8)].iloc[0]
    assert row["r_plain"] == pytest.approx(own["pearson"].mean(), rel=1e-5)
    assert "saliency_smoothed not in attack.methods" in row["note"] and np.isnan(row["r_defended"])
    assert set(summary["defence"]["saliency"]["saliency_smoothed"]["eps8"]) >= {"r_plain", "deletion_plain"}
    # Stability: the stability stage's interval for the explained method, nothing for lrp.
    assert summary["leaderboard"]["stability"] == {
        "saliency": {"sensitivity_max": {"mean": 0.88, "ci_low": 0.86, "ci_high": 0.89, "n": 2}}
    }


def test_stage_refuses_a_nan_map_naming_method_and_image(tmp_path):
    _make_project(tmp_path)
    path = tmp_path / "data/attacks/saliency/eps8/b.npz"
    z = dict(np.load(path))
    z["map_gradcam"][5, 5] = np.nan
    np.savez(path, **z)
    proc = _run_stage(tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "error: gradcam: b (attack saliency): map has 1 NaN/infinite values (of 4096); refusing to use it"
    )
    assert not (tmp_path / "reports/metrics.json").exists()


def test_missing_contract_key_is_named(tmp_path):
    _make_project(tmp_path)
    path = tmp_path / "data/attacks/pgd/a.npz"
    z = dict(np.load(path))
    del z["map_saliency"]
    np.savez(path, **z)
    with pytest.raises(DeepSaliencyError, match=r"pgd/a.npz: missing map_saliency"):
        tables.load_attacks([("pgd", 8.0)], ["a"], METHODS, tmp_path / "data/attacks")
