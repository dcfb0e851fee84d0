"""The end-to-end DVC tests' project: a temporary git copy of the repo on the smallest profile that still runs
every stage, and the commands they run in it (conftest: ``dvc_baseline`` runs it once per session, ``dvc_project``
hands each test its own copy of that finished project, DVC cache included).

Two sample images (the manipulation attack needs a target image), four explanation methods for the downstream
stages (every explain@ stage runs anyway), two attacked methods at two budgets, one untargeted attack, and one or
two iterations of every loop.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "rise": {"N": 16, "batch_size": 8},
    "explain": {"methods": ["rise", "saliency", "integrated_gradients", "gradcam"]},
    "integrated_gradients": {"n_steps": 4},
    "integrated_gradients_smoothed": {"n_steps": 4},
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
    "metrics": {"bootstrap": {"n_resamples": 200}},
}
#: Set only where params.yaml has the section (the untargeted stages arrive with issue 17).
TINY_IF_PRESENT = {"untargeted": {"methods": ["saliency"], "eps": [8], "k": 100, "num_iter": 2, "eval_every": 1}}
IMAGES = ("chelsea.png", "coffee.png")
# dvc exp run commits; a CI machine may have no git identity configured.
GIT_IDENTITY = {
    f"GIT_{who}_{what}": value
    for who in ("AUTHOR", "COMMITTER")
    for what, value in (("NAME", "deep-saliency test"), ("EMAIL", "test@localhost"))
}


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


def make_project(dst: Path) -> Path:
    """A git repo in ``dst`` holding the project's files (tracked, and new ones git does not ignore, e.g.
    .dvc/plots/), two sample images and the tiny profile, committed."""
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
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    extra = {k: v for k, v in TINY_IF_PRESENT.items() if k in params}
    tiny = OmegaConf.to_container(OmegaConf.merge(params, TINY, extra))  # nested keys merged, lists replaced
    (dst / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "tiny profile"]):
        run(cmd, dst)
    return dst


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a finished project: work tree, git history and .dvc/cache, so `dvc repro` after a change
    runs only the changed stages."""
    shutil.copytree(src, dst, symlinks=True)
    shutil.rmtree(dst / ".dvc/tmp", ignore_errors=True)  # locks and state of the original's paths
    return dst


def commit_and_exp_run(project: Path, message: str, setting: str) -> subprocess.CompletedProcess:
    """Commit the current results as the baseline, then `dvc exp run -S <setting>` (the README's comparison)."""
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message, "--allow-empty"], project)
    return run(["dvc", "exp", "run", "-S", setting], project)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def plots_show(cwd: Path) -> dict:
    """`dvc plots show --json`: plot id → the filled Vega-Lite spec (data values included)."""
    shown = json.loads(run(["dvc", "plots", "show", "--json"], cwd).stdout)
    assert not shown.get("errors"), shown["errors"]
    return {name: render["content"] for name, renders in shown["data"].items() for render in renders}
