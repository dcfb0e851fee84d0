"""The report: leaderboard, tables, figure references, self-contained HTML, all-or-nothing output.

Runs on a synthetic fixture (random 32×32 images, fake explanations, attacks and metric tables in the
metrics stage's format), so no model is needed.
"""

import base64
import json
import re
import runpy
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from report_fixtures import ATTACKS, INSERTION, METHODS, OWN_R, ROOT, SMALL, STEMS, make_artifacts, write_report_tables

from deepsaliency import report as rep


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = make_artifacts(tmp_path_factory.mktemp("run"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["explain"]["methods"] = METHODS  # the methods the fake run has artifacts for
    params["attack"]["methods"] = [a for a in ATTACKS if a != "pgd"]  # and the attacks
    report = rep.write_report(root, "reports", params=params)
    return root, report


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(tag, k, v) for k, v in attrs if k in ("src", "href", "srcset", "data", "action", "poster")]


def test_report_files_written(built):
    root, report = built
    out = root / "reports"
    assert (out / "report.md").is_file() and (out / "index.html").is_file()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    expected = (
        {f"explanations_{s}.png" for s in STEMS}
        | {f"attack_{a}.png" for a in ATTACKS}
        | {
            "attack_loss.png",
            "transfer_adv_target.png",
            "transfer_orig_adv.png",
            "deletion_curves.png",
            "insertion_curves.png",
        }
    )
    assert set(pngs) == expected
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    assert report.notes == []  # every input was there


def test_markdown_references_exactly_the_figures_that_exist(built):
    root, _ = built
    md = (root / "reports/report.md").read_text()
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert refs and all((root / "reports" / r).is_file() for r in refs)
    assert sorted(Path(r).name for r in refs) == sorted(p.name for p in (root / "reports/figures").glob("*.png"))


def test_html_is_self_contained(built):
    root, report = built
    page = (root / "reports/index.html").read_text()
    parser = _Refs()
    parser.feed(page)
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    srcs = [v for tag, k, v in parser.refs if k == "src"]
    assert all(v.startswith("data:image/png;base64,") for v in srcs)
    assert [(t, k) for t, k, v in parser.refs if k != "src"] == []
    assert "url(" not in page and "@import" not in page
    # each embedded image is byte-for-byte the figure file
    files = {p.read_bytes() for p in (root / "reports/figures").glob("*.png")}
    assert len(srcs) == len(files) == len(report.figures)
    assert {base64.b64decode(v.split(",", 1)[1]) for v in srcs} == files


def test_leaderboard_ranks_by_adversarial_target_similarity(built):
    _, report = built
    lb = report.tables["leaderboard_raw"]
    ranked = lb[lb["rank"].notna()]
    assert list(ranked["method"]) == sorted(OWN_R, key=OWN_R.get)  # least manipulable first
    # Ranks come from metrics.json: with 3 images no Wilcoxon test can separate two methods, so all share rank 1
    # (the rows keep the r(adv, target) order); tests/test_statistics.py covers ranks that differ.
    assert list(ranked["rank"]) == [1, 1, 1, 1, 1]
    assert (ranked["n"] == 3).all() and (ranked["ci_low"] <= ranked["adv_target"]).all()
    assert (ranked["adv_target"] <= ranked["ci_high"]).all()
    np.testing.assert_allclose(ranked["adv_target"], [OWN_R[m] for m in ranked["method"]], atol=1e-12)
    assert ranked["adv_target"].is_monotonic_increasing
    # methods without an attack of their own come last, with only the transfer value
    rest = lb[lb["rank"].isna()]
    assert rest["adv_target"].isna().all()
    # transfer: r(adv, target) − r(orig, target) = (0.2 − 0.01·index) − 0.05, least moved first (not METHODS order)
    assert list(rest["method"]) == ["gradcam", "occlusion", "gradient_shap"]
    np.testing.assert_allclose(rest["worst_moved"], [0.15 - 0.01 * METHODS.index(m) for m in rest["method"]])
    assert list(lb.index[lb["rank"].isna()]) == [5, 6, 7]


def test_leaderboard_faithfulness_against_random(built):
    _, report = built
    lb = report.tables["leaderboard_raw"].set_index("method")
    for m in METHODS:
        assert lb.loc[m, "insertion"] == pytest.approx(INSERTION[m])
        assert lb.loc[m, "insertion_gain"] == pytest.approx(INSERTION[m] - 0.3)
        assert lb.loc[m, "deletion_gain"] == pytest.approx(0.35 - 0.2)
    assert lb.loc["saliency", "moved"] == pytest.approx(0.9 - 0.05)
    assert lb.loc["saliency", "linf_255"] == pytest.approx(3.0)
    assert np.isnan(lb.loc["gradcam", "linf_255"])  # no attack named gradcam


def test_report_explains_the_leaderboard(built):
    root, _ = built
    md = (root / "reports/report.md").read_text()
    lb = md.split("## Robustness leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "more manipulable" in lb and "less trustworthy" in lb
    table = [line for line in lb.splitlines() if line.startswith("|")]
    assert table[0].startswith("| rank | method | r(adv, target) own attack ↓ |")
    assert [row.split("|")[2].strip() for row in table[2:]][:5] == sorted(OWN_R, key=OWN_R.get)
    assert table[2].startswith("| 1 | rise | 0.200 |") and table[-1].split("|")[1].strip() == "—"


def test_transfer_matrix_shapes_and_values(built):
    root, _ = built
    sim = rep.tidy(pd.read_csv(root / "reports/metrics/map_similarity.csv"))
    adv_t = rep.transfer_matrix(sim, "pearson", "adv_target")
    assert list(adv_t.index) == ATTACKS[:-1] and list(adv_t.columns) == METHODS  # no target for PGD
    assert adv_t.loc["smoothgrad", "smoothgrad"] == pytest.approx(0.4)
    assert adv_t.loc["smoothgrad", "occlusion"] == pytest.approx(0.14)
    orig_adv = rep.transfer_matrix(sim, "pearson", "orig_adv")
    assert list(orig_adv.index) == ATTACKS and orig_adv.loc["pgd"].tolist() == pytest.approx([0.7] * 8)


def test_contract_column_names_give_the_same_leaderboard(built):
    root, report = built
    sim = pd.read_csv(root / "reports/metrics/map_similarity.csv").rename(columns={"image": "stem", "top_k": "topk"})
    faith = pd.read_csv(root / "reports/metrics/faithfulness.csv")
    faith["which"] = np.where(faith["attack"] == "none", "original", "adversarial")
    faith["attack"] = faith["attack"].replace("none", "")
    faith = faith.rename(columns={"deletion": "deletion_auc", "insertion": "insertion_auc"})
    quality = rep.tidy(pd.read_csv(root / "reports/metrics/attack_quality.csv"))
    ranking = json.loads((root / "reports/metrics.json").read_text())["leaderboard"]
    lb = rep.leaderboard(rep.tidy(sim), rep.tidy(faith), quality, METHODS, ranking=ranking)
    pd.testing.assert_frame_equal(lb, report.tables["leaderboard_raw"])


def test_missing_inputs_are_reported_not_invented(tmp_path):
    root = make_artifacts(tmp_path, metrics=False, losses=False, **SMALL)
    report = rep.write_report(root, "reports", params={"model": {"name": "efficientnet_lite0"}})
    md = (root / "reports/report.md").read_text()
    names = {f.name for f in report.figures}
    assert not {"transfer_adv_target.png", "attack_loss.png"} & names
    assert (
        "explanations_cat.png" in names and "deletion_curves.png" in names and "attack_pgd.png" in names
    )  # what is there is still drawn
    assert any("map_similarity.csv is missing" in n for n in report.notes)
    assert any("attack_loss" in n for n in report.notes)
    assert "## Missing inputs" in md and "map_similarity.csv is missing" in md
    lb = md.split("## Robustness leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "Not available" in lb and "|" not in lb  # no table made of nothing


def test_partial_metrics_say_which_numbers_are_missing(tmp_path):
    root = make_artifacts(tmp_path, curves=False, losses=False)
    (root / "reports/metrics/attack_quality.csv").unlink()
    shutil.rmtree(root / "data/attacks")  # the tables alone make the leaderboard
    faith = pd.read_csv(root / "reports/metrics/faithfulness.csv")
    faith[faith["method"] != "random"].to_csv(root / "reports/metrics/faithfulness.csv", index=False)
    write_report_tables(root)  # the metrics stage's summary tables of the changed per-image tables
    report = rep.write_report(root, "reports")
    lb = report.tables["leaderboard_raw"]
    assert lb["linf_255"].isna().all() and lb["insertion_gain"].isna().all()
    assert lb["adv_target"].notna().sum() == 5
    md = (root / "reports/report.md").read_text()
    assert "random-map baseline is missing" in md and "attack_quality.csv is missing" in md
    assert "unequal budgets" not in md


def test_unequal_attack_budgets_are_flagged(tmp_path):
    root = make_artifacts(tmp_path, curves=False, losses=False)
    shutil.rmtree(root / "data")
    q = pd.read_csv(root / "reports/metrics/attack_quality.csv")
    q.loc[q["attack"] == "rise", "linf_255"] = 12.0
    q.to_csv(root / "reports/metrics/attack_quality.csv", index=False)
    write_report_tables(root)
    rep.write_report(root, "reports")
    md = (root / "reports/report.md").read_text()
    assert "own-attack L∞ from 3 to 12 /255" in md and "unequal budgets" in md


def test_outputs_are_all_or_nothing(tmp_path, monkeypatch):
    root = make_artifacts(tmp_path, metrics=False, losses=False, **SMALL)
    out = root / "reports"
    (out / "report.md").write_text("old report")

    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(rep.plots, "plot_curves", boom)
    with pytest.raises(RuntimeError, match="plotting failed"):
        rep.write_report(root, "reports")
    assert (out / "report.md").read_text() == "old report"
    assert not (out / "index.html").exists() and not (out / "figures").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_malformed_table_becomes_a_note(tmp_path):
    root = make_artifacts(tmp_path, curves=False, losses=False)
    shutil.rmtree(root / "data")  # only the tables matter here
    sim = pd.read_csv(root / "reports/metrics/map_similarity.csv").drop(columns=["pearson"])
    sim.to_csv(root / "reports/metrics/map_similarity.csv", index=False)
    write_report_tables(root)  # no transfer matrix can be made without pearson: its summary table is absent
    report = rep.write_report(root, "reports")
    assert any("Transfer matrix left out" in n and "transfer_adv_target.csv" in n for n in report.notes)
    assert report.tables["leaderboard_raw"]["adv_target"].isna().all()


def test_markdown_table():
    df = pd.DataFrame({"name": ["a|b", "c"], "r": [0.12345, np.nan], "n": [3, 4]}, index=pd.Index(["x", "y"], name="k"))
    assert rep.markdown_table(df) == (
        "| k | name | r | n |\n|:---|:---|---:|---:|\n| x | a\\|b | 0.123 | 3 |\n| y | c | — | 4 |"
    )


@pytest.mark.parametrize(
    "value, text", [(0.5, "0.500"), (3.0, "3"), (1e-5, "1e-05"), (12345.6, "1.23e+04"), (np.nan, "—"), (True, "yes")]
)
def test_format_number(value, text):
    assert rep.format_number(value) == text


def test_report_stage_runs_in_a_fresh_folder(tmp_path, monkeypatch):
    root = make_artifacts(tmp_path, curves=False, losses=False, **SMALL)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    monkeypatch.chdir(root)
    seen = []
    real = rep.plots.plot_attack

    def spy(rows, *args, **kwargs):
        seen.extend(rows)
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(rep.plots, "plot_attack", spy)
    runpy.run_path(str(ROOT / "stages/report.py"), run_name="__main__")
    page = (root / "reports/index.html").read_text()
    assert "espresso" in page and "Robustness leaderboard" in page
    assert (root / "reports/figures/attack_saliency.png").is_file()
    # x_adv's class index is named with the ImageNet labels (281 = tabby); targets come from target_stem
    assert seen and {r.label_adv for r in seen} == {"tabby"}
    assert [r.target_name for r in seen] == ["cup", "cat"]


def test_report_shows_only_the_attacks_the_params_list(tmp_path, monkeypatch):
    """After `dvc exp run -S 'attack.methods=[saliency]'` DVC leaves the dropped stage's data/attacks/rise/ on disk
    and a loss table may still hold rise rows: the report must show exactly attack.methods plus pgd."""
    root = make_artifacts(
        tmp_path,
        metrics=False,
        curves=False,
        methods=["saliency", "rise"],
        attacks=["saliency", "rise", "pgd"],
        stems=STEMS[:2],
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["explain"]["methods"], params["attack"]["methods"] = ["saliency", "rise"], ["saliency"]
    drawn = []
    real = rep.plots.plot_attack_losses

    def spy(losses, *args, **kwargs):
        drawn.append(list(losses))
        return real(losses, *args, **kwargs)

    monkeypatch.setattr(rep.plots, "plot_attack_losses", spy)
    report = rep.write_report(root, "reports", params=params)
    names = {f.name for f in report.figures}
    assert {"attack_saliency.png", "attack_pgd.png", "attack_loss.png"} <= names and "attack_rise.png" not in names
    assert drawn == [["saliency", "pgd"]]  # one row per listed attack in the optimisation figure, none for rise
    md = (root / "reports/report.md").read_text()
    assert "attacks: saliency, pgd." in md and "Attack on rise" not in md
    art = rep.load_artifacts(root, ["saliency", "rise"], ["saliency", "pgd"])
    assert art.attacks == ["saliency", "pgd"] and list(art.attack_loss) == ["saliency", "pgd"]
    assert set(art.attack_loss["saliency"]["image"]) == set(STEMS[:2]) and len(art.attack_loss["saliency"]) == 40
    # Without params the report still shows every folder found (a library call on a foreign folder).
    assert rep.load_artifacts(root).attacks == ["saliency", "rise", "pgd"]


def test_select_images_is_bounded_seeded_and_in_manifest_order():
    stems = [f"img{i:03d}" for i in range(200)]
    chosen = rep.load.select_images(stems, 12)
    assert len(chosen) == 12 and chosen == sorted(chosen)  # manifest order kept
    assert chosen == rep.load.select_images(stems, 12)  # the same on every run
    assert chosen != stems[:12]  # drawn across the set, not its head
    assert rep.load.select_images(stems[:5], 12) == stems[:5]  # everything when it fits


def test_figures_show_a_bounded_selection_and_tables_every_image(tmp_path):
    """issue 14: a 1,000-image report stays a readable page: report.max_images bounds the per-image figures."""
    root = make_artifacts(tmp_path / "run")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["explain"]["methods"] = METHODS
    params["attack"]["methods"] = [a for a in ATTACKS if a != "pgd"]
    params["report"]["max_images"] = 2
    report = rep.write_report(root, "reports", params=params)
    drawn = sorted(p.stem.removeprefix("explanations_") for p in (root / "reports/figures").glob("explanations_*"))
    assert drawn == rep.load.select_images(STEMS, 2) and len(drawn) == 2 < len(STEMS)
    md = (root / "reports/report.md").read_text()
    assert "The per-image figures show 2 of the 3 images (a seeded selection, report.max_images)" in md
    assert all(f"| {s}.png " in md for s in STEMS)  # the manifest table lists every image
    assert report.figures
