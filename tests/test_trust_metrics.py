"""The metrics stage's summaries of issue 16: the defence table (Dombrowski et al. 2019, section 5), the untargeted
attack (Ghorbani et al. 2019) and the stability columns of the leaderboard, on hand-computable tables."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepsaliency.artifacts import untargeted_file
from deepsaliency.errors import DeepSaliencyError, ParamError
from deepsaliency.metrics import defence_table as defence
from deepsaliency.metrics import statistics as st
from deepsaliency.metrics import summary as summaries
from deepsaliency.metrics import untargeted_summary as untargeted

BOOT = st.Bootstrap(n_resamples=500, seed=0)
IMAGES = [f"img{i}" for i in range(8)]


# ---------------------------------------------------------------- untargeted attack


def _untargeted_rows(method: str, eps: float, top: list[float], linf: float | None = None) -> pd.DataFrame:
    rows = []
    for i, t in enumerate(top):
        for kind, shift in (("topk", 3.0 + i), ("center_of_mass", 10.0 + 2 * i)):
            rows.append({"image": IMAGES[i], "method": method, "eps": eps, "kind": kind, "topk_intersection": t,
                         "com_shift_px": shift, "label_kept": int(i != 0), "prob_adv": 0.5,
                         "linf": eps if linf is None else linf, "converged": int(i % 2 == 0), "steps": 100 + i,
                         "passes": 200 + 2 * i})  # fmt: skip
    return pd.DataFrame(rows, columns=untargeted.UNTARGETED_COLUMNS)


def _write(df: pd.DataFrame, method: str, eps: float, root) -> None:
    path = untargeted_file(method, eps, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def test_untargeted_reads_exactly_the_listed_runs_and_summarises_per_kind(tmp_path):
    top = [0.9, 0.7, 0.5, 0.6, 0.8, 0.4, 0.3, 0.55]
    _write(_untargeted_rows("saliency", 8.0, top), "saliency", 8.0, tmp_path)
    _write(_untargeted_rows("saliency", 4.0, [1.0] * 8), "saliency", 4.0, tmp_path)  # stale: not listed
    params = {"untargeted": {"methods": ["saliency"], "eps": [8]}}
    runs = untargeted.untargeted_runs(params)
    assert runs == [("saliency", 8.0)]
    rows = untargeted.load_untargeted(runs, tmp_path)
    assert set(rows["eps"]) == {8.0} and len(rows) == 16
    table = untargeted.untargeted_table(rows, BOOT)
    assert list(table["kind"]) == ["topk", "center_of_mass"]
    assert untargeted.untargeted_table(rows, BOOT).to_csv() == table.to_csv()  # seeded: reruns are byte-identical
    t = table.set_index("kind")
    assert t.loc["topk", "n"] == 8
    assert t.loc["topk", "topk_intersection"] == pytest.approx(np.mean(top))
    assert t.loc["topk", "topk_intersection_ci_low"] < np.mean(top) < t.loc["topk", "topk_intersection_ci_high"]
    assert t.loc["center_of_mass", "com_shift_px"] == pytest.approx(np.mean([10.0 + 2 * i for i in range(8)]))
    assert t.loc["topk", "label_kept"] == pytest.approx(7 / 8) and t.loc["topk", "converged"] == pytest.approx(0.5)
    assert t.loc["topk", "linf_max"] == 8.0 and t.loc["topk", "steps"] == pytest.approx(103.5)
    # The same bootstrap as every other interval of metrics.json.
    ci = st.bootstrap_mean(np.array(top), BOOT.n_resamples, BOOT.seed)
    assert t.loc["topk", "topk_intersection_ci_low"] == pytest.approx(ci["ci_low"])
    block = untargeted.untargeted_summary(table)
    assert block["saliency"]["eps8"]["topk"]["topk_intersection"]["mean"] == pytest.approx(np.mean(top))
    assert block["saliency"]["eps8"]["center_of_mass"]["converged"]["n"] == 8
    json.dumps(block, allow_nan=False)


def test_untargeted_bad_files_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(DeepSaliencyError, match=r"saliency-eps8\.csv: missing; rerun the untargeted@saliency-8"):
        untargeted.load_untargeted([("saliency", 8.0)], tmp_path)
    _write(_untargeted_rows("saliency", 8.0, [0.5] * 4, linf=8.5), "saliency", 8.0, tmp_path)
    with pytest.raises(DeepSaliencyError, match=r"linf 8\.5 exceeds the budget eps 8"):
        untargeted.load_untargeted([("saliency", 8.0)], tmp_path)
    _write(_untargeted_rows("saliency", 8.0, [0.5, 1.5]), "saliency", 8.0, tmp_path)
    with pytest.raises(DeepSaliencyError, match=r"topk_intersection 1\.5 is not in \[0, 1\]"):
        untargeted.load_untargeted([("saliency", 8.0)], tmp_path)
    _write(_untargeted_rows("saliency", 8.0, [0.5]).drop(columns="passes"), "saliency", 8.0, tmp_path)
    with pytest.raises(DeepSaliencyError, match=r"lack \['passes'\]"):
        untargeted.load_untargeted([("saliency", 8.0)], tmp_path)
    with pytest.raises(ParamError, match=r"untargeted\.eps: 8 is not allowed \(a list\)"):
        untargeted.untargeted_runs({"untargeted": {"methods": ["saliency"], "eps": 8}})
    assert untargeted.untargeted_runs({}) == []
    assert untargeted.untargeted_table(untargeted.load_untargeted([], tmp_path)).empty


# ---------------------------------------------------------------- defence table


def _similarity(r: dict[tuple[str, float], list[float]]) -> pd.DataFrame:
    """Own-attack rows (adv_target) with the given per-image r, plus a transfer row that must be ignored."""
    rows = []
    for (m, e), values in r.items():
        for img, v in zip(IMAGES, values, strict=False):
            rows.append({"image": img, "attack": m, "eps": e, "method": m, "pair": "adv_target", "pearson": v})
            rows.append({"image": img, "attack": m, "eps": e, "method": "other", "pair": "adv_target", "pearson": -1})
    return pd.DataFrame(rows)


def _faithfulness(deletion: dict[str, float]) -> pd.DataFrame:
    rows = [{"image": img, "attack": "none", "eps": 0.0, "method": m, "deletion": d + 0.01 * i, "insertion": 1 - d}
            for m, d in deletion.items() for i, img in enumerate(IMAGES)]  # fmt: skip
    return pd.DataFrame(rows)


def test_defence_table_puts_plain_and_defended_side_by_side_with_the_leaderboards_intervals():
    plain = [0.9, 0.85, 0.8, 0.95, 0.88, 0.82, 0.91, 0.87]
    smooth = [v - 0.3 - 0.01 * i for i, v in enumerate(plain)]  # lower on every image, by a clear margin
    sim = _similarity({("saliency", 8.0): plain, ("saliency_smoothed", 8.0): smooth, ("saliency", 4.0): plain})
    faith = _faithfulness({"saliency": 0.2, "saliency_smoothed": 0.3, "smoothgrad": 0.25, "input_x_gradient": 0.2})
    labels = defence.defence_labels({"saliency_smoothed": {"beta": 10.0}})
    assert labels["saliency_smoothed"] == "softplus β=10" and labels["smoothgrad"] == "SmoothGrad"
    table = defence.defence_table(sim, faith, [4.0, 8.0], labels, BOOT)
    assert len(table) == len(defence.DEFENCE_PAIRS) * 2
    assert defence.defence_table(sim, faith, [4.0, 8.0], labels, BOOT).to_csv() == table.to_csv()  # seeded
    row = table[(table["defended"] == "saliency_smoothed") & (table["eps"] == 8.0)].iloc[0]
    assert row["defence"] == "softplus β=10" and row["note"] == ""
    assert row["r_plain"] == pytest.approx(np.mean(plain)) and row["r_defended"] == pytest.approx(np.mean(smooth))
    # Exact two-sided Wilcoxon with 8 differences of one sign: 2 / 2^8.
    assert row["p_wilcoxon"] == pytest.approx(2 / 2**8) and row["n_paired"] == 8
    assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(plain, smooth).pvalue)
    # The same interval as the leaderboard's r(adv, target) at that budget.
    board = summaries.leaderboard(sim.assign(diagonal=sim["method"] == sim["attack"]), rank_eps=8.0, bootstrap=BOOT)
    ci = board["methods"]["saliency"]["r_adv_target"]
    assert (row["r_plain_ci_low"], row["r_plain_ci_high"], row["r_plain_n"]) == pytest.approx(
        (ci["ci_low"], ci["ci_high"], ci["n"])
    )
    # The cost: the clean maps' deletion AUC without (0.2 + …) and with the defence (0.3 + …).
    assert row["deletion_plain"] == pytest.approx(0.2 + 0.035) and row["deletion_defended"] == pytest.approx(0.335)
    assert row["insertion_defended"] == pytest.approx(0.7)


def test_a_defence_that_was_not_attacked_shows_why_and_stays_out_of_metrics_json():
    plain = [0.9, 0.85, 0.8, 0.95]
    sim = _similarity({("saliency", 8.0): plain})
    faith = _faithfulness({"saliency": 0.2, "smoothgrad": 0.25})
    table = defence.defence_table(sim, faith, [8.0], defence.defence_labels({}), BOOT)
    sg = table[table["defended"] == "smoothgrad"].iloc[0]
    assert sg["note"] == "smoothgrad not in attack.methods"
    assert np.isnan(sg["r_defended"]) and np.isnan(sg["p_wilcoxon"]) and sg["n_paired"] == 0
    assert sg["r_plain"] == pytest.approx(np.mean(plain)) and sg["deletion_defended"] == pytest.approx(0.25 + 0.035)
    ixg = table[table["defended"] == "input_x_gradient_smoothed"].iloc[0]
    assert "input_x_gradient not in attack.methods" in ixg["note"] and "not in explain.methods" in ixg["note"]
    block = defence.defence_summary(table)
    entry = block["saliency"]["smoothgrad"]["eps8"]
    assert set(entry) == {"r_plain", "deletion_plain", "deletion_defended", "insertion_plain", "insertion_defended"}
    assert block["input_x_gradient"]["input_x_gradient_smoothed"]["eps8"] == {}
    json.dumps(block, allow_nan=False)


# ---------------------------------------------------------------- stability in the leaderboard


def test_stability_board_takes_the_stability_stages_intervals_for_the_listed_methods():
    summary = pd.DataFrame(
        [
            ("saliency", "sensitivity_max", 0.88, 0.86, 0.89, 3),
            ("saliency", "infidelity", 0.55, 0.19, 1.27, 3),
            ("lrp", "sensitivity_max", 1.1, 1.0, 1.2, 3),
            ("rise", "sensitivity_max", 0.5, 0.4, 0.6, 3),
        ],
        columns=["method", "metric", "mean", "ci_low", "ci_high", "n"],
    )
    board = defence.stability_board(summary, ["rise", "saliency", "gradcam"])
    assert list(board) == ["rise", "saliency"]  # params order; lrp is not listed, gradcam not measured
    assert board["saliency"]["infidelity"] == {"mean": 0.55, "ci_low": 0.19, "ci_high": 1.27, "n": 3}
    assert defence.stability_board(None, ["saliency"]) == {}
