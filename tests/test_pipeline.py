"""End to end: the real DVC pipeline in a temporary git copy of the repo, on a tiny parameter profile.

Two sample images (the manipulation attack needs a target image), four explanation
methods, two attacked ones and a few iterations: every stage runs, in minutes.
"""

import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "rise": {"N": 16, "batch_size": 8},
    "explain": {"methods": ["rise", "saliency", "integrated_gradients", "gradcam"]},
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"nt_samples": 2},
    "gradient_shap": {"n_samples": 2},
    "occlusion": {"window": 112, "stride": 112},
    "attack": {
        "methods": ["saliency", "rise"],
        "eps": [4, 8],
        "saliency": {"num_iter": 2, "eval_every": 1},
        "rise": {"num_iter": 1, "eval_every": 1, "masks": 4},
    },
    "pgd": {"steps": 2},
    "faithfulness": {"step": 12544},
    "sanity": {"methods": ["saliency", "gradcam"], "max_depth": 2},
    "stability": {"methods": ["saliency", "gradcam"], "n_perturb_samples": 2},
}
IMAGES = ("chelsea.png", "coffee.png")
# dvc exp run commits; a CI machine may have no git identity configured.
GIT_IDENTITY = {
    f"GIT_{who}_{what}": value
    for who in ("AUTHOR", "COMMITTER")
    for what, value in (("NAME", "deep-saliency test"), ("EMAIL", "test@localhost"))
}


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # PYTHONPATH: the stages import the copy's deepsaliency, not the editable install of the checkout.
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
        PYTHONPATH=str(cwd),
        **GIT_IDENTITY,
    )
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git repo holding the project's files (tracked, and new ones git does not ignore, e.g. .dvc/plots/),
    two sample images and the tiny profile."""
    dst = tmp_path_factory.mktemp("project")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if rel.startswith("data/images/") or rel == "dvc.lock" or not (ROOT / rel).is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)
    (dst / "data/images").mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy2(ROOT / "data/images" / name, dst / "data/images" / name)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "tiny profile"]):
        run(cmd, dst)
    return dst


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


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_repro_then_only_what_depends_on_a_changed_param_reruns(project):
    first = run(["dvc", "repro"], project)
    assert {
        "prepare",
        "masks",
        "explain@rise",
        "explain@saliency",
        "attack@saliency-4",
        "attack@saliency-8",
        "attack@rise-4",
        "attack@rise-8",
        "pgd",
        "metrics",
        "report",
    } <= stages_run(first)
    assert (
        (project / "data/prepared/manifest.csv")
        .read_text()
        .splitlines()[1]
        .startswith("chelsea.png,chelsea,285,Egyptian cat")
    )
    before = digest(project / "data/explanations")

    # Nothing changed: nothing reruns.
    assert stages_run(run(["dvc", "repro"], project)) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["rise"]["N"] = 24
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status"], project).stdout
    changed = {
        line[:-1] for line in status.splitlines() if line and not line.startswith(("\t", " ")) and line.endswith(":")
    }
    assert "masks" in changed and "explain@rise" in changed
    assert not changed & {"prepare", "explain@saliency", "explain@integrated_gradients", "explain@gradcam"}
    rerun = stages_run(run(["dvc", "repro"], project))
    assert {"masks", "explain@rise", "attack@rise-4", "attack@rise-8", "metrics", "report"} <= rerun
    assert not rerun & {"prepare", "explain@saliency", "explain@integrated_gradients", "explain@gradcam"}
    after = digest(project / "data/explanations")
    assert after["rise/chelsea.npz"] != before["rise/chelsea.npz"]
    assert after["saliency/chelsea.npz"] == before["saliency/chelsea.npz"]


@pytest.mark.slow
def test_a_stage_rerun_is_byte_identical(project):
    run(["dvc", "repro"], project)
    outputs = ("data", "reports/metrics", "reports/metrics.json", "reports/attack_loss")
    before = {o: digest(project / o) if (project / o).is_dir() else (project / o).read_bytes() for o in outputs}
    stages = [
        "masks",
        "explain@rise",
        "explain@smoothgrad",
        "explain@gradient_shap",
        "attack@saliency-8",
        "attack@rise-8",
        "pgd",
        "metrics",
    ]
    forced = stages_run(run(["dvc", "repro", "--force", "--single-item", *stages], project))
    assert set(stages) <= forced
    after = {o: digest(project / o) if (project / o).is_dir() else (project / o).read_bytes() for o in outputs}
    assert after == before


@pytest.mark.slow
def test_an_experiment_reruns_one_attack_and_dvc_diffs_show_it(project):
    """The README's comparison commands: dvc exp run -S, then dvc params diff / dvc metrics diff against HEAD."""
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline", "--allow-empty"], project)
    exp = run(["dvc", "exp", "run", "-S", "attack.saliency.num_iter=4"], project)
    assert stages_run(exp) == {"attack@saliency-4", "attack@saliency-8", "metrics", "report"}
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
def test_adding_a_budget_runs_only_its_attacks(project):
    """Issue 15: attack.eps is a DVC matrix axis; a new budget runs the new attack items (and the aggregates)."""
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two budgets", "--allow-empty"], project)
    exp = run(["dvc", "exp", "run", "-S", "attack.eps=[2,4,8]"], project)
    assert stages_run(exp) == {"attack@saliency-2", "attack@rise-2", "metrics", "report"}
    curve = pd.read_csv(project / "reports/metrics/manipulability.csv")
    assert sorted(curve[curve["method"] == "saliency"]["eps"]) == [2.0, 4.0, 8.0]
    quality = pd.read_csv(project / "reports/metrics/attack_quality.csv")
    explanation = quality[quality["attack"] != "pgd"]
    assert (explanation["linf_255"] <= explanation["eps"] + 1e-3).all()  # each budget holds (255 × 1e-6 + rounding)
    board = json.loads((project / "reports/metrics.json").read_text())["leaderboard"]
    assert board["eps"] == 8 and {"rank_auc", "auc", "converged_rate"} <= set(board["methods"]["saliency"])


def test_attack_loss_table_reads_only_the_listed_attacks(tmp_path):
    """The metrics stage's one loss table holds exactly the attacks it is given, never a stale CSV on disk."""
    from deepsaliency.errors import DeepSaliencyError

    stage = runpy.run_path(str(ROOT / "stages/metrics.py"))  # not __main__: defines, runs nothing
    steps = pd.DataFrame(
        {
            "step": [1, 2, 1, 2],
            "image": ["chelsea", "chelsea", "coffee", "coffee"],
            "expl_loss": [2e-9, 1e-9, 3e-9, 2.5e-9],
            "output_loss": [0.0, 1e-6, 0.0, 2e-6],
            "beta": [10.0, 100.0, 10.0, 100.0],
        }
    )
    steps.to_csv(tmp_path / "saliency-eps8.csv", index=False)
    steps.assign(expl_loss=steps["expl_loss"] * 7).to_csv(tmp_path / "rise-eps8.csv", index=False)  # a dropped one
    steps.assign(expl_loss=steps["expl_loss"] * 5).to_csv(tmp_path / "saliency-eps4.csv", index=False)  # dropped ε
    table = stage["attack_loss_table"]([("saliency", 8.0)], tmp_path)
    assert list(table.columns) == ["attack", "eps", "step", "image", "expl_loss", "output_loss", "beta"]
    pd.testing.assert_frame_equal(table.drop(columns=["attack", "eps"]), steps)
    assert set(table["attack"]) == {"saliency"} and set(table["eps"]) == {8.0}
    both = stage["attack_loss_table"]([("rise", 8.0), ("saliency", 8.0)], tmp_path)
    assert list(dict.fromkeys(both["attack"])) == ["rise", "saliency"] and len(both) == 8
    assert stage["attack_loss_table"]([], tmp_path).empty
    with pytest.raises(DeepSaliencyError, match="smoothgrad-eps8.csv: missing"):
        stage["attack_loss_table"]([("smoothgrad", 8.0)], tmp_path)


#: Vega-Lite channels that split one line mark into separate lines (or panels).
SERIES_CHANNELS = ("color", "detail", "strokeDash", "row", "column", "facet", "opacity", "shape", "size")


def series_fields(spec: dict) -> list[str]:
    """The data fields by which a (possibly layered) Vega-Lite spec splits its marks into lines."""
    fields = []
    for view in [spec, *spec.get("layer", [])]:
        for channel in SERIES_CHANNELS:
            defs = (view.get("encoding") or {}).get(channel)
            for d in defs if isinstance(defs, list) else [defs]:
                if isinstance(d, dict) and isinstance(d.get("field"), str) and d["field"] not in fields:
                    fields.append(d["field"])
    return fields


def plots_show(cwd: Path) -> dict:
    """`dvc plots show --json`: plot id → the filled Vega-Lite spec (data values included)."""
    shown = json.loads(run(["dvc", "plots", "show", "--json"], cwd).stdout)
    assert not shown.get("errors"), shown["errors"]
    return {name: render["content"] for name, renders in shown["data"].items() for render in renders}


def lines(spec: dict, x: str) -> dict[tuple, list[float]]:
    """The lines the spec draws: series key (values of its series fields) → x values in data order."""
    fields = series_fields(spec)
    drawn: dict[tuple, list[float]] = {}
    for point in spec["data"]["values"]:
        drawn.setdefault(tuple(point.get(f) for f in fields), []).append(float(point[x]))
    return drawn


@pytest.mark.slow
def test_dvc_plots_draw_one_line_per_group(project):
    """Issue 12.6: every plot definition draws one line per (method, image, attack) / (attack, image) group,
    each a function of x, never one line zig-zagging through every group of a file."""
    run(["dvc", "repro"], project)
    specs = plots_show(project)
    definitions = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    assert len(definitions) == 7 and len(specs) == 7
    for item in definitions:
        ((name, cfg),) = item.items()
        tables = [pd.read_csv(project / f) for f in cfg["y"]]
        # The groups the data holds: every text column of each CSV (method/image/attack/variant) and the budget,
        # unless the budget is the x axis (the manipulability curve: one line per method across ε), per file.
        # The sanity curves' `layer` only names the x value (the layer group randomised at that depth).
        keys = [c for c in [*tables[0].columns] if c not in (cfg["x"], "layer")]
        expected = sum(
            t.groupby([c for c in keys if c == "eps" or not pd.api.types.is_numeric_dtype(t[c])]).ngroups
            for t in tables
        )
        drawn = lines(specs[name], cfg["x"])
        assert sum(map(len, drawn.values())) == sum(map(len, tables)), name  # every row drawn once
        assert len(drawn) == expected > 1, (name, series_fields(specs[name]), len(drawn), expected)
        steps = [b > a for xs in drawn.values() for a, b in zip(xs, xs[1:], strict=False)]
        assert steps and sum(steps) / len(steps) == 1.0, f"{name}: {steps.count(False)} steps go back in x"
    deletion = pd.read_csv(project / "reports/plots/deletion_curves.csv")
    budgets = len(yaml.safe_load((project / "params.yaml").read_text())["attack"]["eps"])
    # 2 images × (4 methods + random) on the originals, + 2 attacks × budgets × 2 images × (own map + random)
    assert deletion.groupby(["method", "image", "attack", "eps"]).ngroups == 2 * (4 + 1) + 2 * budgets * 2 * 2
    curve = pd.read_csv(project / "reports/metrics/manipulability.csv")
    assert curve.groupby("method").size().to_dict() == {"rise": budgets, "saliency": budgets}
    losses = pd.read_csv(project / "reports/plots/attack_loss.csv")
    assert list(dict.fromkeys(losses["attack"])) == ["saliency", "rise"]
    assert set(losses["image"]) == {"chelsea", "coffee"}


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
def test_narrowing_attack_methods_leaves_no_stale_attack(project):
    """Issue 12.7: after `dvc exp run -S 'attack.methods=[saliency]'` nothing of the dropped rise attack survives
    into the report, the metrics or the plots, although DVC leaves its stage outputs on disk.
    Runs last: it narrows the project's params."""
    run(["dvc", "repro"], project)
    assert yaml.safe_load((project / "params.yaml").read_text())["attack"]["methods"] == ["saliency", "rise"]
    before = attack_names(project, plots_show(project))
    assert all(names == {"saliency", "rise", "pgd"} & names for names in before.values()), before
    assert before["report.md"] == before["report figures"] == {"saliency", "rise", "pgd"}  # the test can see rise
    assert before["reports/plots/attack_loss.csv"] == {"saliency", "rise"}
    loss_rows = Image.open(project / "reports/figures/attack_loss.png").height
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two attacks", "--allow-empty"], project)

    exp = run(["dvc", "exp", "run", "-S", "attack.methods=[saliency]"], project)
    assert {"metrics", "report"} <= stages_run(exp) and not {s for s in stages_run(exp) if s.startswith("attack@")}
    assert (project / "reports/attack_loss/rise-eps8.csv").is_file()  # the dropped stage's output is still there
    after = attack_names(project, plots_show(project))
    stale = {where: names & {"rise"} for where, names in after.items() if "rise" in names}
    assert not stale, f"the dropped attack survives in {stale}"
    assert after["report.md"] == after["report figures"] == {"saliency", "pgd"}
    assert after["reports/plots/attack_loss.csv"] == after["dvc plots: Attack loss, output term"] == {"saliency"}
    md = (project / "reports/report.md").read_text()
    assert "attacks: saliency, pgd." in md
    assert Image.open(project / "reports/figures/attack_loss.png").height < loss_rows  # one row of curves, not two
