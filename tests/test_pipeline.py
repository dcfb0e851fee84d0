"""End to end: the real DVC pipeline in a temporary copy of the repo, on a tiny parameter profile."""
import hashlib
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
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"nt_samples": 2},
    "gradient_shap": {"n_samples": 2},
    "occlusion": {"window": 112, "stride": 112},
}


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the repo's tracked files with one sample image and the tiny profile."""
    dst = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith("data/images/") or rel == "dvc.lock":
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)
    (dst / "data/images").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "data/images/chelsea.png", dst / "data/images/chelsea.png")
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "config", "core.no_scm", "true"], dst)
    return dst


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_repro_then_only_what_depends_on_a_changed_param_reruns(project):
    first = run(["dvc", "repro"], project)
    assert {"prepare", "masks", "explain@rise", "explain@saliency"} <= stages_run(first)
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
    assert {"masks", "explain@rise"} <= rerun
    assert not rerun & {"prepare", "explain@saliency", "explain@integrated_gradients", "explain@gradcam"}
    after = digest(project / "data/explanations")
    assert after["rise/chelsea.npz"] != before["rise/chelsea.npz"]
    assert after["saliency/chelsea.npz"] == before["saliency/chelsea.npz"]


@pytest.mark.slow
def test_a_stage_rerun_is_byte_identical(project):
    run(["dvc", "repro"], project)
    before = digest(project / "data")
    run(["dvc", "repro", "--force", "masks", "explain@rise", "explain@smoothgrad", "explain@gradient_shap"], project)
    assert digest(project / "data") == before
