"""End to end: the real DVC pipeline in a temporary git copy of the repo, on a tiny parameter profile.

Two sample images (the manipulation attack needs a target image), four explanation
methods, two attacked ones and a few iterations: every stage runs, in minutes.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "rise": {"N": 16, "batch_size": 8},
    "explain": {"methods": ["rise", "saliency", "integrated_gradients", "gradcam"]},
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"nt_samples": 2},
    "gradient_shap": {"n_samples": 2},
    "occlusion": {"window": 112, "stride": 112},
    "attack": {"methods": ["saliency", "rise"], "saliency": {"num_iter": 2, "eval_every": 1},
               "rise": {"num_iter": 1, "eval_every": 1, "masks": 4}},
    "pgd": {"steps": 2},
    "faithfulness": {"step": 12544},
}
IMAGES = ("chelsea.png", "coffee.png")
# dvc exp run commits; a CI machine may have no git identity configured.
GIT_IDENTITY = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER") for what, value in (("NAME", "deep-saliency test"), ("EMAIL", "test@localhost"))}


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1", **GIT_IDENTITY)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git repo holding the project's tracked files, two sample images and the tiny profile."""
    dst = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith("data/images/") or rel == "dvc.lock":
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)
    (dst / "data/images").mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy2(ROOT / "data/images" / name, dst / "data/images" / name)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny profile"]):
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
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_repro_then_only_what_depends_on_a_changed_param_reruns(project):
    first = run(["dvc", "repro"], project)
    assert {"prepare", "masks", "explain@rise", "explain@saliency", "attack@saliency", "attack@rise", "pgd", "metrics", "report"} <= stages_run(first)
    assert (project / "data/prepared/manifest.csv").read_text().splitlines()[1].startswith("chelsea.png,chelsea,285,Egyptian cat")
    before = digest(project / "data/explanations")

    # Nothing changed: nothing reruns.
    assert stages_run(run(["dvc", "repro"], project)) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["rise"]["N"] = 24
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status"], project).stdout
    changed = {line[:-1] for line in status.splitlines() if line and not line.startswith(("\t", " ")) and line.endswith(":")}
    assert "masks" in changed and "explain@rise" in changed
    assert not changed & {"prepare", "explain@saliency", "explain@integrated_gradients", "explain@gradcam"}
    rerun = stages_run(run(["dvc", "repro"], project))
    assert {"masks", "explain@rise", "attack@rise", "metrics", "report"} <= rerun
    assert not rerun & {"prepare", "explain@saliency", "explain@integrated_gradients", "explain@gradcam"}
    after = digest(project / "data/explanations")
    assert after["rise/chelsea.npz"] != before["rise/chelsea.npz"]
    assert after["saliency/chelsea.npz"] == before["saliency/chelsea.npz"]


@pytest.mark.slow
def test_a_stage_rerun_is_byte_identical(project):
    run(["dvc", "repro"], project)
    outputs = ("data", "reports/metrics", "reports/metrics.json", "reports/attack_loss")
    before = {o: digest(project / o) if (project / o).is_dir() else (project / o).read_bytes() for o in outputs}
    stages = ["masks", "explain@rise", "explain@smoothgrad", "explain@gradient_shap", "attack@saliency", "attack@rise", "pgd", "metrics"]
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
    assert stages_run(exp) == {"attack@saliency", "metrics", "report"}
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], project).stdout)
    changed = params_diff["params.yaml"]
    assert list(changed) == ["attack.saliency.num_iter"] and (changed["attack.saliency.num_iter"]["old"], changed["attack.saliency.num_iter"]["new"]) == (2, 4)
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)["reports/metrics.json"]
    moved = {k: v for k, v in metrics_diff.items() if k.startswith("similarity.saliency.diagonal.adv_target.")}
    assert moved and all(v["old"] != v["new"] for v in moved.values()), metrics_diff  # more steps, another adversarial map
    assert not [k for k in metrics_diff if k.startswith(("attack.rise.", "similarity.rise."))]  # that stage did not rerun
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert {2, 4} <= set(saliency_iterations(shown))  # the baseline and the experiment, side by side
