"""The report at several L∞ budgets (issue 15) and the optional sections of later stages.

Fake pipeline outputs (tests/report_fixtures.py) in the metrics stage's format, with an ``eps`` column and one
attack folder per budget in the layout before shards (``data/attacks/<method>/eps<e>/``, still read: today's
stages write ``data/attacks/shard-<k>/<method>/eps<e>/``); no model is needed.
"""

import base64
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image
from report_fixtures import STEMS, make_artifacts, write_report_tables

from deepsaliency import report as rep
from deepsaliency.artifacts import attack_dir
from deepsaliency.metrics.summary import leaderboard

SMALL = dict(methods=["saliency", "gradcam"], attacks=["saliency", "pgd"], stems=STEMS[:2])
#: Own-attack r(adv, target) and L∞ (/255) of the saliency attack at each budget: the report must pick one, not mix.
R_AT = {4.0: 0.4, 8.0: 0.9}
LINF_AT = {4.0: 2.0, 8.0: 3.0}


def _with_budgets(root, rank_eps=None):
    """Split the fake saliency attack into budgets 4 and 8 (tables with ``eps``; one folder per budget)."""
    mdir = root / "reports/metrics"
    frames = {name: pd.read_csv(mdir / f"{name}.csv") for name in ("map_similarity", "attack_quality", "faithfulness")}
    for name, df in frames.items():
        targeted = df["attack"] == "saliency"
        parts = [df[~targeted].assign(eps=8.0 if name != "faithfulness" else np.nan)]  # pgd: its own budget
        parts[0].loc[parts[0]["attack"] == "none", "eps"] = np.nan
        for eps in R_AT:
            part = df[targeted].assign(eps=eps)
            if name == "map_similarity":
                own = (part["method"] == "saliency") & (part["pair"] == "adv_target")
                part.loc[own, "pearson"] += R_AT[eps] - 0.9  # the fixture's own r is 0.9 ± 0.01
            if name == "attack_quality":
                part["linf_255"] = LINF_AT[eps]
            parts.append(part)
        out = pd.concat(parts, ignore_index=True)
        out.insert(list(df.columns).index("attack") + 1, "eps", out.pop("eps"))
        out.to_csv(mdir / f"{name}.csv", index=False)
    board = leaderboard(pd.read_csv(mdir / "map_similarity.csv"), rank_eps=rank_eps)
    (root / "reports/metrics.json").write_text(json.dumps({"leaderboard": board}))
    write_report_tables(root)  # the metrics stage's summary tables at the ranked budget
    source = root / "data/attacks/saliency"
    for eps in R_AT:
        folder = attack_dir("saliency", eps, root / "data/attacks")
        folder.mkdir()
        for f in source.glob("*.npz"):
            with np.load(f) as z:
                arrays = dict(z)
            arrays["x_adv"] = np.full_like(arrays["x_adv"], eps / 255)  # which budget was drawn shows in x_adv
            np.savez(folder / f.name, **arrays)
    for f in source.glob("*.npz"):
        f.unlink()  # only the budget folders remain, as the attack stage writes them


@pytest.mark.parametrize("rank_eps", [None, 4.0])
def test_every_section_shows_one_budget(tmp_path, monkeypatch, rank_eps):
    root = make_artifacts(tmp_path, curves=False, losses=False, **SMALL)
    _with_budgets(root, rank_eps)
    eps = 8.0 if rank_eps is None else rank_eps
    drawn = []
    real = rep.plots.plot_attack

    def spy(rows, *args, **kwargs):
        drawn.extend(float(r.x_adv.max()) for r in rows)
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(rep.plots, "plot_attack", spy)
    report = rep.write_report(root, "reports", params={"report": {"rank_eps": rank_eps}})
    assert not [n for n in report.notes if "Figure" in n or "Attacks" in n]  # the attack figures were drawn
    lb = report.tables["leaderboard_raw"].set_index("method")
    assert lb.loc["saliency", "adv_target"] == pytest.approx(R_AT[eps])  # not the mean over both budgets
    assert lb.loc["saliency", "linf_255"] == pytest.approx(LINF_AT[eps])
    assert report.tables["transfer_adv_target"].loc["saliency", "saliency"] == pytest.approx(R_AT[eps])
    assert report.tables["attack_quality"].loc["saliency", "linf_255"] == pytest.approx(LINF_AT[eps])
    assert drawn == pytest.approx([eps / 255] * 2)  # the figure read data/attacks/saliency/eps<e>/
    md = (root / "reports/report.md").read_text()
    assert f"Rank 1 = hardest to manipulate at ε = {eps:g}/255" in md
    assert f"Attack optimised against saliency at ε = {eps:g}/255" in md
    assert "rank by area" in md  # two budgets: metrics.json has the area under r-vs-ε
    assert "## Manipulability" not in md and "## Sanity checks" not in md and "## Stability" not in md


def _manipulability(root):
    rows = [
        ("saliency", 4, 3, 0.41, 0.35, 0.47, 1.0),
        ("saliency", 8, 3, 0.88, 0.8, 0.93, 1.0),
        ("rise", 4, 3, 0.12, 0.05, 0.2, 0.0),
        ("rise", 8, 3, 0.31, 0.2, 0.4, 0.333333),
    ]
    cols = ["method", "eps", "n", "mean", "ci_low", "ci_high", "converged_rate"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "reports/metrics/manipulability.csv", index=False)
    summary = json.loads((root / "reports/metrics.json").read_text())
    summary["leaderboard"]["converged_majority"] = 0.5
    summary["leaderboard"]["methods"]["rise"]["converged_rate"] = 0.333333
    summary["leaderboard"]["methods"]["saliency"]["converged_rate"] = 1.0
    (root / "reports/metrics.json").write_text(json.dumps(summary))
    return pd.DataFrame(rows, columns=cols)


def test_manipulability_section_and_convergence_flag(tmp_path, monkeypatch):
    root = make_artifacts(tmp_path, curves=False, losses=False)
    shutil.rmtree(root / "data")  # the tables alone make these sections
    expected = _manipulability(root)
    seen = []

    real = getattr(rep.plots, "plot_manipulability", None)  # engineer P's figure, when it is there

    def spy(table):
        seen.append(table)
        if real is not None:
            return real(table)
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot(table["eps"], table["mean"])
        return fig

    monkeypatch.setattr(rep.plots, "plot_manipulability", spy, raising=False)
    report = rep.write_report(root, "reports")
    pd.testing.assert_frame_equal(seen[0], expected)  # plotted as the metrics stage wrote it
    assert (root / "reports/figures/manipulability.png").is_file()
    md = (root / "reports/report.md").read_text()
    assert md.index("## Robustness leaderboard") < md.index("## Manipulability") < md.index("## Model and predictions")
    section = md.split("## Manipulability", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "| method | ε (/255) | n | r(adv, target) | 95 % CI low | 95 % CI high | converged |"
    assert rows[1:] == [
        "| saliency | 4 | 3 | 0.410 | 0.350 | 0.470 | 1 |",
        "| saliency | 8 | 3 | 0.880 | 0.800 | 0.930 | 1 |",
        "| rise | 4 | 3 | 0.120 | 0.050 | 0.200 | 0 |",
        "| rise | 8 | 3 | 0.310 | 0.200 | 0.400 | 0.333 |",
    ]
    lb = report.tables["leaderboard_raw"].set_index("method")
    assert lb.loc["rise", "flag"] == "not converged" and lb.loc["saliency", "flag"] == ""
    assert lb.loc["rise", "converged_rate"] == pytest.approx(0.333333)
    board = md.split("## Robustness leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "| converged | flag |" in board and "Wilcoxon signed-rank" in board and "Holm" in board
    assert "the attacks on rise did not converge on every image" in board
    # Engineer P's figure not there: the table still shows, the missing figure is a note.
    monkeypatch.delattr(rep.plots, "plot_manipulability", raising=False)
    report = rep.write_report(root, "reports")
    assert any("plot_manipulability" in n for n in report.notes)
    assert "manipulability" in report.tables and "manipulability.png" not in {f.name for f in report.figures}


def test_sanity_and_stability_sections(tmp_path):
    root = make_artifacts(tmp_path, curves=False, losses=False)
    shutil.rmtree(root / "data")
    (root / "reports/sanity").mkdir(parents=True)
    (root / "reports/stability").mkdir(parents=True)
    pd.DataFrame(
        {"method": ["saliency", "gradcam"], "check": ["cascading", "cascading"], "spearman": [0.0312, 0.87]}
    ).to_csv(root / "reports/sanity/summary.csv", index=False)
    Image.fromarray(np.full((12, 20, 3), 200, np.uint8)).save(root / "reports/sanity/sanity.png")
    pd.DataFrame({"method": ["rise"], "sigma": [0.05], "ssim": [0.912]}).to_csv(
        root / "reports/stability/summary.csv", index=False
    )
    report = rep.write_report(root, "reports")
    md = (root / "reports/report.md").read_text()
    order = [md.index(h) for h in ("## Faithfulness", "## Sanity checks", "## Stability", "## Run parameters")]
    assert order == sorted(order)
    sanity = md.split("## Sanity checks", 1)[1].split("\n## ", 1)[0]
    assert "| saliency | cascading | 0.031 |" in sanity and "![Sanity](figures/sanity.png)" in sanity
    assert "| rise | 0.050 | 0.912 |" in md.split("## Stability", 1)[1].split("\n## ", 1)[0]
    png = (root / "reports/sanity/sanity.png").read_bytes()
    assert (root / "reports/figures/sanity.png").read_bytes() == png
    assert base64.b64encode(png).decode() in (root / "reports/index.html").read_text()
    assert "sanity" in report.tables and "stability" in report.tables


def test_at_budget_picks_each_attacks_budget_and_keeps_rows_without_one():
    df = pd.DataFrame(
        {"attack": ["saliency", "saliency", "pgd", "none"], "eps": [4.0, 8.0, 8.0, np.nan], "r": [0.4, 0.9, 0.5, 1.0]}
    )
    assert list(rep.tables.at_budget(df, None)["r"]) == [0.9, 0.5, 1.0]  # the largest budget
    assert list(rep.tables.at_budget(df, 4)["r"]) == [0.4, 0.5, 1.0]  # pgd has only its own budget
    one = df[df["eps"] != 4.0]
    pd.testing.assert_frame_equal(rep.tables.at_budget(one, 4), one)  # one budget: every row
    old = df.drop(columns="eps")
    assert rep.tables.at_budget(old, 8) is old  # artifacts from before the budgets: unchanged
