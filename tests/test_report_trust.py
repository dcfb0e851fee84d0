"""The report's Defence and Untargeted attack sections and the leaderboard's stability columns: the metrics stage's
tables (written here by the metrics library on hand-made per-image rows) formatted, with the numbers named."""

import json
import shutil

import pandas as pd
from report_fixtures import make_artifacts

from deepsaliency import report as rep
from deepsaliency.metrics import defence_table as defence
from deepsaliency.metrics import statistics as st
from deepsaliency.metrics import untargeted_summary as untargeted

BOOT = st.Bootstrap(n_resamples=500, seed=0)
IMAGES = [f"img{i}" for i in range(8)]
PLAIN = [0.9, 0.85, 0.8, 0.95, 0.88, 0.82, 0.91, 0.87]


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _root(tmp_path):
    root = make_artifacts(tmp_path, curves=False, losses=False)
    shutil.rmtree(root / "data")  # no figures: only the tables matter here
    return root


def _write_defence(root) -> pd.DataFrame:
    rows = [{"image": img, "attack": m, "eps": 8.0, "method": m, "pair": "adv_target", "pearson": v - shift}
            for m, shift in (("saliency", 0.0), ("saliency_smoothed", 0.3))
            for img, v in zip(IMAGES, PLAIN, strict=True)]  # fmt: skip
    faith = pd.DataFrame(
        [{"image": img, "attack": "none", "method": m, "deletion": d, "insertion": 1 - d}
         for m, d in (("saliency", 0.2), ("saliency_smoothed", 0.3), ("smoothgrad", 0.25)) for img in IMAGES]
    )  # fmt: skip
    labels = defence.defence_labels({"saliency_smoothed": {"beta": 10}})
    table = defence.defence_table(pd.DataFrame(rows), faith, [8.0], labels, BOOT)
    table.to_csv(root / "reports/metrics/defence.csv", index=False, float_format="%.6g")
    return table


def test_defence_section_shows_the_table_and_names_its_numbers(tmp_path):
    root = _root(tmp_path)
    table = _write_defence(root)
    report = rep.write_report(root, "reports")
    text = _section((root / "reports/report.md").read_text(), "Defence")
    row = table[table["defended"] == "saliency_smoothed"].iloc[0]
    plain = f"{row['r_plain']:.3f} [{row['r_plain_ci_low']:.3f}, {row['r_plain_ci_high']:.3f}]"
    smooth = f"{row['r_defended']:.3f} [{row['r_defended_ci_low']:.3f}, {row['r_defended_ci_high']:.3f}]"
    assert f"softplus β=10 lowers saliency's r(adv, target) from {plain} to {smooth}" in text
    assert "Wilcoxon p = 0.008 over n = 8 images: significant at α = 0.05" in text  # 2/2^8 = 0.0078
    assert "deletion AUC 0.200 → 0.300 and insertion AUC 0.800 → 0.700, i.e. less faithful maps" in text
    shown = report.tables["defence"].set_index("defence")
    sg = shown.loc["SmoothGrad (smoothgrad)"]
    assert sg["r(adv, target) with ↓"] == "—" and sg["note"] == "smoothgrad not in attack.methods"
    assert sg["deletion AUC without → with ↓"] == "0.200 [0.200, 0.200] → 0.250 [0.250, 0.250]"
    assert "| saliency | SmoothGrad (smoothgrad) | 8 |" in text


def test_untargeted_section_and_stability_columns(tmp_path):
    root = _root(tmp_path)
    rows = pd.DataFrame(
        [{"image": img, "method": m, "eps": 8.0, "kind": kind, "topk_intersection": t - 0.01 * i,
          "com_shift_px": 4.0 + i, "label_kept": 1, "prob_adv": 0.5, "linf": 8.0, "converged": 1, "steps": 50,
          "passes": 100}
         for m, t in (("saliency", 0.3), ("integrated_gradients", 0.7)) for i, img in enumerate(IMAGES)
         for kind in untargeted.KINDS]
    )  # fmt: skip
    table = untargeted.untargeted_table(rows, BOOT)
    table.to_csv(root / "reports/metrics/untargeted.csv", index=False, float_format="%.6g")
    metrics = json.loads((root / "reports/metrics.json").read_text())
    ci = {"mean": 0.880775, "ci_low": 0.864804, "ci_high": 0.890264, "n": 3}
    metrics["leaderboard"]["stability"] = {"saliency": {"sensitivity_max": ci}}
    (root / "reports/metrics.json").write_text(json.dumps(metrics))
    report = rep.write_report(root, "reports")
    md = (root / "reports/report.md").read_text()
    text = _section(md, "Untargeted attack")
    low = table[(table["method"] == "saliency") & (table["kind"] == "topk")].iloc[0]
    value = "{:.3f} [{:.3f}, {:.3f}]".format(*low[[f"topk_intersection{s}" for s in ("", "_ci_low", "_ci_high")]])
    assert f"smallest share of the original top-k in place for saliency ({value}, n = 8)" in text
    assert "the largest for integrated_gradients (0.665 [" in text
    assert len(report.tables["untargeted"]) == 4 and "| saliency | 8 | topk | 8 | 0.265 [" in text
    lb = report.tables["leaderboard_raw"].set_index("method")
    assert lb.loc["saliency", "sensitivity_max"] == "0.881 [0.865, 0.890]"
    assert pd.isna(lb.loc["input_x_gradient", "sensitivity_max"]) and "infidelity" not in report.tables["leaderboard"]
    assert report.tables["leaderboard"]["max-sensitivity ↓ [95 % CI]"].notna().sum() == 1
    board = md.split("## Robustness leaderboard", 1)[1]
    assert "| 0.881 [0.865, 0.890] |" in board and "**max-sensitivity ↓ [95 % CI]**: Max-sensitivity (Yeh" in board


def test_untargeted_section_says_when_every_method_ties(tmp_path):
    """All methods at top-k intersection 0 (the default run's outcome): no 'smallest … largest' contrast of equals."""
    root = _root(tmp_path)
    rows = pd.DataFrame(
        [{"image": img, "method": m, "eps": 8.0, "kind": "topk", "topk_intersection": 0.0, "com_shift_px": 30.0 + i,
          "label_kept": 1, "prob_adv": 0.5, "linf": 8.0, "converged": 0, "steps": 50, "passes": 100}
         for m in ("saliency", "gradcam") for i, img in enumerate(IMAGES)]
    )  # fmt: skip
    untargeted.untargeted_table(rows, BOOT).to_csv(root / "reports/metrics/untargeted.csv", index=False)
    rep.write_report(root, "reports")
    text = _section((root / "reports/report.md").read_text(), "Untargeted attack")
    assert "leaves the same share of the original top-k in place for every method (0 [0, 0], n = 8)" in text
    assert "smallest share" not in text and "the largest for" not in text


def test_the_report_shows_the_metrics_stages_numbers_and_averages_nothing(tmp_path):
    root = _root(tmp_path)
    mdir = root / "reports/metrics"
    board = pd.read_csv(mdir / "leaderboard.csv", index_col="method")
    board.loc["saliency", "adv_target"] = 0.123  # the per-image rows still average to 0.9
    board.loc["gradcam", "deletion_gain"] = -0.5
    board.to_csv(mdir / "leaderboard.csv")
    matrix = pd.read_csv(mdir / "transfer_adv_target.csv", index_col="attack")
    matrix.loc["rise", "occlusion"] = 0.777
    matrix.to_csv(mdir / "transfer_adv_target.csv")
    quality = pd.read_csv(mdir / "attack_quality_summary.csv", index_col="attack")
    quality.loc["pgd", "linf_255"] = 7.5
    quality.to_csv(mdir / "attack_quality_summary.csv")
    report = rep.write_report(root, "reports")
    lb = report.tables["leaderboard_raw"].set_index("method")
    assert lb.loc["saliency", "adv_target"] == 0.123 and lb.loc["gradcam", "deletion_gain"] == -0.5
    assert report.tables["transfer_adv_target"].loc["rise", "occlusion"] == 0.777
    assert report.tables["attack_quality"].loc["pgd", "linf_255"] == 7.5
    (mdir / "leaderboard.csv").unlink()
    report = rep.write_report(root, "reports")
    assert "leaderboard_raw" not in report.tables
    assert any("leaderboard.csv is missing" in n for n in report.notes)
