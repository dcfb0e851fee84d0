"""End to end: the README's experiment workflow (`dvc exp run -S`, `dvc params diff`, `dvc metrics diff`,
`dvc exp show`) on a copy of the session's finished tiny project (tests/dvc_project.py, conftest ``dvc_project``):
each experiment reruns only the stages its change touches, and nothing stale survives it.
"""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc_project import commit_and_exp_run, plots_show, run, stages_run
from PIL import Image


def saliency_iterations(exp_show) -> list:
    """attack.saliency.num_iter of every commit and experiment in `dvc exp show --json`."""
    if isinstance(exp_show, list):
        return [n for item in exp_show for n in saliency_iterations(item)]
    if not isinstance(exp_show, dict):
        return []
    found = []
    if "params.yaml" in (exp_show.get("params") or {}):
        found.append(exp_show["params"]["params.yaml"]["data"]["attack"]["saliency"]["num_iter"])
    return found + [n for key, value in exp_show.items() if key != "params" for n in saliency_iterations(value)]


@pytest.mark.slow
def test_an_experiment_reruns_one_attack_and_dvc_diffs_show_it(dvc_project):
    """The README's comparison commands: dvc exp run -S, then dvc params diff / dvc metrics diff against HEAD."""
    project = dvc_project
    exp = commit_and_exp_run(project, "baseline", "attack.saliency.num_iter=4")
    # untargeted@saliency-8-0 declares attack.saliency (the attack-time explanation settings it shares with attack@)
    assert stages_run(exp) == {
        "attack@saliency-4-0",
        "attack@saliency-8-0",
        "untargeted@saliency-8-0",
        "metrics_images@0",
        "metrics",
        "report",
    }
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], project).stdout)
    changed = params_diff["params.yaml"]
    assert list(changed) == ["attack.saliency.num_iter"] and (
        changed["attack.saliency.num_iter"]["old"],
        changed["attack.saliency.num_iter"]["new"],
    ) == (2, 4)
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)["reports/metrics.json"]
    moved = {k: v for k, v in metrics_diff.items() if k.startswith("similarity.saliency.eps8.diagonal.adv_target.")}
    assert moved and all(v["old"] != v["new"] for v in moved.values()), (
        metrics_diff
    )  # more steps, another adversarial map
    assert not [
        k for k in metrics_diff if k.startswith(("attack.rise.", "similarity.rise."))
    ]  # that stage did not rerun
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert {2, 4} <= set(saliency_iterations(shown))  # the baseline and the experiment, side by side


@pytest.mark.slow
def test_adding_a_budget_runs_only_its_attacks(dvc_project):
    """Issue 15: attack.eps is a DVC matrix axis; a new budget runs the new attack items (and the aggregates)."""
    project = dvc_project
    exp = commit_and_exp_run(project, "two budgets", "attack.eps=[2,4,8]")
    assert stages_run(exp) == {"attack@saliency-2-0", "attack@rise-2-0", "metrics_images@0", "metrics", "report"}
    curve = pd.read_csv(project / "reports/metrics/manipulability.csv")
    assert sorted(curve[curve["method"] == "saliency"]["eps"]) == [2.0, 4.0, 8.0]
    quality = pd.read_csv(project / "reports/metrics/attack_quality.csv")
    explanation = quality[quality["attack"] != "pgd"]
    assert (explanation["linf_255"] <= explanation["eps"] + 1e-3).all()  # each budget holds (255 × 1e-6 + rounding)
    board = json.loads((project / "reports/metrics.json").read_text())["leaderboard"]
    assert board["eps"] == 8 and {"rank_auc", "auc", "converged_rate"} <= set(board["methods"]["saliency"])


ATTACKS = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise", "pgd"}


def attack_names(project: Path, specs: dict) -> dict[str, set]:
    """Where a dropped attack could survive: name of the artifact → the attack names it mentions."""
    found = {}
    metrics = json.loads((project / "reports/metrics.json").read_text())
    for section in ("attack", "similarity", "faithfulness"):
        found[f"metrics.json {section}"] = set(metrics.get(section, {})) & ATTACKS  # keyed by attack
    for csv in sorted([*(project / "reports/metrics").glob("*.csv"), *(project / "reports/plots").glob("*.csv")]):
        df = pd.read_csv(csv)
        if "attack" in df.columns:
            found[str(csv.relative_to(project))] = set(df["attack"].astype(str)) & ATTACKS  # not "none"
    for name, spec in specs.items():
        points = spec["data"]["values"]
        found[f"dvc plots: {name}"] = {p.get("attack") for p in points} & ATTACKS
        # DVC names each point's file; a per-attack file (reports/attack_loss/<attack>.csv) names its attack.
        found[f"dvc plots files: {name}"] = {
            Path(p.get("filename", "")).stem.split("-eps")[0] for p in points
        } & ATTACKS
    md = (project / "reports/report.md").read_text()
    found["report.md"] = {a or b for a, b in re.findall(r"### Attack on (\w+)|### Attack (\w+) \(untargeted\)", md)}
    figures = (project / "reports/figures").glob("attack_*.png")
    found["report figures"] = {p.stem[len("attack_") :] for p in figures} - {"loss"}
    return found


@pytest.mark.slow
def test_narrowing_attack_methods_leaves_no_stale_attack(dvc_project):
    """Issue 12.7: after `dvc exp run -S 'attack.methods=[saliency]'` nothing of the dropped rise attack survives
    into the report, the metrics or the plots, although DVC leaves its stage outputs on disk."""
    project = dvc_project
    assert yaml.safe_load((project / "params.yaml").read_text())["attack"]["methods"] == ["saliency", "rise"]
    before = attack_names(project, plots_show(project))
    assert all(names == {"saliency", "rise", "pgd"} & names for names in before.values()), before
    assert before["report.md"] == before["report figures"] == {"saliency", "rise", "pgd"}  # the test can see rise
    assert before["reports/plots/attack_loss.csv"] == {"saliency", "rise"}
    loss_rows = Image.open(project / "reports/figures/attack_loss.png").height

    exp = commit_and_exp_run(project, "two attacks", "attack.methods=[saliency]")
    assert {"metrics", "report"} <= stages_run(exp) and not {s for s in stages_run(exp) if s.startswith("attack@")}
    assert (project / "reports/attack_loss/rise-eps8/shard-0.csv").is_file()  # the dropped stage's output stays
    after = attack_names(project, plots_show(project))
    stale = {where: names & {"rise"} for where, names in after.items() if "rise" in names}
    assert not stale, f"the dropped attack survives in {stale}"
    assert after["report.md"] == after["report figures"] == {"saliency", "pgd"}
    assert after["reports/plots/attack_loss.csv"] == after["dvc plots: Attack loss, output term"] == {"saliency"}
    md = (project / "reports/report.md").read_text()
    assert "attacks: saliency, pgd." in md
    assert Image.open(project / "reports/figures/attack_loss.png").height < loss_rows  # one row of curves, not two
