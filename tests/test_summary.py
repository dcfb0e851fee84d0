"""The metrics stage's summary and leaderboard block (deepsaliency.metrics.summary) and the report reading its ranks
from metrics.json instead of computing them. Split from tests/test_statistics.py (intervals, tests and ranks)."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from report_fixtures import write_report_tables
from scipy.integrate import trapezoid

from deepsaliency import report as rep
from deepsaliency.errors import ParamError
from deepsaliency.metrics import statistics as st
from deepsaliency.metrics import summary as summaries
from deepsaliency.metrics import tables
from deepsaliency.params import validate

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


# ---------------------------------------------------------------- the summary and its leaderboard block


METRICS = ("ssim", "mse", "psnr", "pearson", "spearman", "top_k", "com_shift")


def _similarity(n_images=12, own=None, eps=None, seed=0):
    """A map-similarity table in the metrics stage's format: per image, r(adv, target) of each attacked method."""
    own = own or {"saliency": 0.85, "input_x_gradient": 0.85, "rise": 0.3}
    rng = np.random.default_rng(seed)
    shared = rng.uniform(-0.05, 0.05, n_images)  # saliency and input_x_gradient: identical per-image values
    noise = {a: shared if a != "rise" else rng.uniform(-0.05, 0.05, n_images) for a in own}
    rows = []
    for e in eps or [None]:
        for a, level in own.items():
            for i in range(n_images):
                for m in [*own, "gradcam"]:
                    r = level + noise[a][i] - (0.0 if e is None else 0.02 * (8 - e) * (1 + (a == "rise")))
                    for pair, value in (("orig_adv", 0.5), ("orig_target", 0.1), ("adv_target", r if m == a else 0.2)):
                        row = {
                            "image": f"im{i}",
                            "attack": a,
                            "method": m,
                            "pair": pair,
                            "diagonal": m == a,
                            "target": "",
                            **{k: value for k in METRICS},
                        }
                        rows.append(row if e is None else {**row, "eps": e})
    return pd.DataFrame(rows)


def _quality(n_images=12):
    return pd.DataFrame(
        [
            {
                "image": f"im{i}",
                "attack": "pgd",
                "label_orig": 1,
                "label_adv": 2 if i % 3 else 1,
                "top1_kept": float(i % 3 == 0),
                "prob_orig": 0.9,
                "prob_adv": 0.2,
                "prob_change": -0.7,
                "l2_255": 100.0 + i,
                "linf_255": 8.0,
                "psnr": 40.0 - 0.1 * i,
                "ssim": 0.99,
            }
            for i in range(n_images)
        ]
    )


def _faithfulness(n_images=12):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n_images):
        for m, dele in (("saliency", 0.10), ("rise", 0.30), ("random", 0.30)):
            rows.append(
                {
                    "image": f"im{i}",
                    "attack": "none",
                    "method": m,
                    "deletion": dele + rng.uniform(-0.02, 0.02),
                    "insertion": 0.5 + rng.uniform(-0.02, 0.02),
                }
            )
    return pd.DataFrame(rows)


def _leaves(tree, path=""):
    if isinstance(tree, dict) and "mean" in tree:
        yield path, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{path}.{k}")


def test_leaderboard_ranks_the_attacked_methods_by_paired_tests():
    board = summaries.leaderboard(_similarity(), alpha=0.05)
    assert (board["images"], board["pairs"], board["alpha"]) == (12, 3, 0.05) and "eps" not in board
    methods = board["methods"]
    assert list(methods) == ["rise", "input_x_gradient", "saliency"]  # least manipulable first
    assert methods["rise"]["rank"] == 1
    # saliency and input_x_gradient have identical per-image values: same rank, and only rise differs from them
    assert methods["saliency"]["rank"] == methods["input_x_gradient"]["rank"] == 2 and board["pairs_differ"] == 2
    r = methods["rise"]["r_adv_target"]
    assert r["n"] == 12 and r["ci_low"] < r["mean"] < r["ci_high"]
    sim = _similarity()
    own = sim[(sim["attack"] == "rise") & (sim["method"] == "rise") & (sim["pair"] == "adv_target")]
    assert len(own) == 12 and r["mean"] == pytest.approx(own["pearson"].mean(), abs=1e-12)
    # With 3 images the same margins are not significant: every method shares rank 1.
    small = summaries.leaderboard(_similarity(n_images=3))
    assert {m: v["rank"] for m, v in small["methods"].items()} == {"rise": 1, "input_x_gradient": 1, "saliency": 1}


def test_leaderboard_per_budget_and_by_area_under_the_curve():
    sim = _similarity(eps=[2.0, 8.0])
    largest = summaries.leaderboard(sim)
    assert largest["eps"] == 8.0 and largest == summaries.leaderboard(sim, rank_eps=8)
    at2 = summaries.leaderboard(sim, rank_eps=2.0)
    own = sim[(sim["pair"] == "adv_target") & (sim["method"] == sim["attack"])]
    im0 = own[(own["attack"] == "rise") & (own["image"] == "im0")].sort_values("eps")
    area = trapezoid(im0["pearson"], im0["eps"])
    assert area == pytest.approx(0.5 * (im0["pearson"].iloc[0] + im0["pearson"].iloc[1]) * 6.0)
    curves = own[own["attack"] == "rise"].sort_values("eps").groupby("image")
    expected = pd.Series({image: trapezoid(g["pearson"], g["eps"]) for image, g in curves})
    assert at2["methods"]["rise"]["auc"]["mean"] == pytest.approx(expected.mean())
    assert at2["methods"]["rise"]["r_adv_target"]["mean"] < largest["methods"]["rise"]["r_adv_target"]["mean"]
    assert at2["methods"]["rise"]["rank_auc"] == 1 and at2["methods"]["saliency"]["rank_auc"] == 2
    with pytest.raises(ParamError, match=r"^rank_eps: 4.0 is not allowed \(one of the budgets in the table: 2, 8,"):
        summaries.leaderboard(sim, rank_eps=4.0)
    assert "auc" not in summaries.leaderboard(_similarity())["methods"]["rise"]  # one budget: no curve, no area


def test_summary_every_mean_has_ci_and_n_and_is_byte_identical():
    sim, quality, faith = _similarity(), _quality(), _faithfulness()
    summary = summaries.summarize(sim, quality, faith)
    again = summaries.summarize(sim, quality, faith)
    assert json.dumps(summaries.rounded(summary), allow_nan=False) == json.dumps(
        summaries.rounded(again), allow_nan=False
    )
    leaves = dict(_leaves({k: v for k, v in summary.items() if k != "leaderboard"}))
    assert len(leaves) > 100
    for path, leaf in leaves.items():
        assert set(leaf) <= {"mean", "ci_low", "ci_high", "n", "p_random"}, path
        assert leaf["ci_low"] <= leaf["mean"] <= leaf["ci_high"] and leaf["n"] == 12, path
    # the transfer mean is over images of the per-image mean over the other methods
    assert summary["similarity"]["rise"]["transfer"]["adv_target"]["pearson"]["mean"] == pytest.approx(0.2)
    assert summary["attack"]["pgd"]["success_rate"]["mean"] == pytest.approx(8 / 12)
    # significance against the random baseline: saliency deletes far better than random, rise does not differ
    orig = summary["faithfulness"]["original"]
    assert orig["saliency"]["deletion"]["p_random"] < 0.01 and orig["rise"]["deletion"]["p_random"] > 0.05
    assert "p_random" not in orig["random"]["deletion"]
    assert summary["leaderboard"]["methods"]["rise"]["rank"] == 1
    # numbers only: `dvc metrics diff` can read every key
    flat = rep.flatten(summary)
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat.values())


def test_settings_and_params_validation_for_the_new_keys():
    s = tables.settings_from_params({"metrics": {"bootstrap": {"seed": 3}}, "report": {"alpha": 0.01, "rank_eps": 8}})
    assert (s.bootstrap, s.alpha, s.rank_eps) == (st.Bootstrap(2000, 3), 0.01, 8.0)
    assert tables.settings_from_params(DEFAULTS) == tables.Settings()
    for path, value, message in (
        (("report", "alpha"), 1.5, r"^report.alpha: 1.5 is not allowed \(expected a number in \(0, 1\)\)$"),
        (("report", "rank_eps"), -1, r"^report.rank_eps: -1 is not allowed \(expected null \(the largest budget\) or"),
        (("metrics", "bootstrap", "n_resamples"), 5, r"^metrics.bootstrap.n_resamples: 5 is not allowed"),
    ):
        params = copy.deepcopy(DEFAULTS)
        node = params
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ParamError, match=message):
            validate(params)


# ---------------------------------------------------------------- the report reads the ranks


def _write_run(root, n_images=12):
    sim, quality, faith = _similarity(n_images), _quality(n_images), _faithfulness(n_images)
    mdir = root / "reports/metrics"
    mdir.mkdir(parents=True)
    sim.to_csv(mdir / "map_similarity.csv", index=False)
    quality.to_csv(mdir / "attack_quality.csv", index=False)
    faith.to_csv(mdir / "faithfulness.csv", index=False)
    summary = summaries.rounded(summaries.summarize(sim, quality, faith))
    (root / "reports/metrics.json").write_text(json.dumps(summary))
    write_report_tables(root)  # the metrics stage's summary tables, which the report reads
    return summary


def test_report_takes_ranks_and_intervals_from_metrics_json(tmp_path):
    summary = _write_run(tmp_path)
    report = rep.write_report(tmp_path, "reports")
    lb = report.tables["leaderboard_raw"].set_index("method")
    for m, entry in summary["leaderboard"]["methods"].items():
        assert lb.loc[m, "rank"] == entry["rank"] and lb.loc[m, "n"] == 12
        ci = entry["r_adv_target"]
        assert (lb.loc[m, "ci_low"], lb.loc[m, "ci_high"]) == (ci["ci_low"], ci["ci_high"])
    assert list(report.tables["leaderboard_raw"]["method"][:3]) == list(summary["leaderboard"]["methods"])
    md = (tmp_path / "reports/report.md").read_text()
    section = md.split("## Robustness leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "Wilcoxon signed-rank" in section and "Holm" in section
    assert "n = 12" in section and "2 of 3 pairs differ" in section
    assert "| 95 % CI low | 95 % CI high | n |" in section
    # Faithfulness: intervals and the p against the random map come from metrics.json too.
    faith = report.tables["faithfulness"]
    assert faith.loc["saliency", "deletion p vs random"] < 0.01 < 0.05 < faith.loc["rise", "deletion p vs random"]
    d = summary["faithfulness"]["original"]["saliency"]["deletion"]
    shown = f"[{rep.format_number(d['ci_low'])}, {rep.format_number(d['ci_high'])}]"
    assert faith.loc["saliency", "deletion on x: 95 % CI"] == shown
    assert np.isnan(faith.loc["random", "deletion p vs random"])
    assert "95 % bootstrap CIs over n = 12 images and p against the random map" in md
    # Not recomputed: a leaderboard block that says otherwise is what the report shows.
    summary["leaderboard"]["methods"]["saliency"]["rank"] = 1
    (tmp_path / "reports/metrics.json").write_text(json.dumps(summary))
    shutil.rmtree(tmp_path / "reports/figures")
    lb = rep.write_report(tmp_path, "reports").tables["leaderboard_raw"]
    assert list(lb["method"][:2]) == ["rise", "saliency"] and list(lb["rank"][:3]) == [1, 1, 2]


def test_report_without_a_leaderboard_block_says_so(tmp_path):
    summary = _write_run(tmp_path, n_images=3)
    summary.pop("leaderboard")
    (tmp_path / "reports/metrics.json").write_text(json.dumps(summary))
    report = rep.write_report(tmp_path, "reports")
    assert report.tables["leaderboard_raw"]["rank"].isna().all()
    md = (tmp_path / "reports/report.md").read_text()
    assert "no leaderboard block" in md
