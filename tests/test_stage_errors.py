"""Bad input costs seconds: stages exit 2 with one line naming what to fix, and leave no half-written output.

The stage scripts run in this process (conftest ``stage_in_process``): the same exit status and stderr as
``python stages/<x>.py``, without a Python start per case.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import run_stage
from PIL import Image

from deepsaliency.stage import atomic_dir, atomic_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data/images").mkdir(parents=True)
    Image.fromarray((np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "data/images/ok.png"
    )
    return tmp_path


def set_param(project: Path, path: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    *parents, leaf = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "name, content, reason",
    [("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "not a readable image"), ("zero.png", b"", "empty file")],
)
def test_prepare_names_the_broken_file_and_writes_nothing(project, name, content, reason, stage_in_process):
    (project / "data/images" / name).write_bytes(content)
    proc = stage_in_process(project, "stages/prepare.py")
    assert_one_line_error(proc, name, reason)
    assert not (project / "data/prepared").exists()
    assert not any(p.name.startswith(".prepared.tmp") for p in (project / "data").iterdir())


def test_prepare_with_an_empty_image_folder(project, stage_in_process):
    shutil.rmtree(project / "data/images")
    (project / "data/images").mkdir()
    assert_one_line_error(stage_in_process(project, "stages/prepare.py"), "data/images", "no images found")


@pytest.mark.parametrize(
    "path, value, fragments",
    [
        ("rise.p1", 2, ("rise.p1: 2 is not allowed", "(0, 1)")),
        ("rise.N", -1, ("rise.N: -1 is not allowed",)),
        ("model.name", "resnet_typo", ("model.name: 'resnet_typo'",)),
        ("model.checkpoint", "nowhere.pt", ("model.checkpoint: 'nowhere.pt' does not exist",)),
    ],
)
def test_bad_params_stop_before_any_work(project, path, value, fragments, stage_in_process):
    set_param(project, path, value)
    stage = "stages/masks.py" if path.startswith("rise") else "stages/prepare.py"
    assert_one_line_error(stage_in_process(project, stage), *fragments)
    assert not (project / "data/prepared").exists() and not (project / "data/masks").exists()


def test_unknown_method_for_the_explain_stage(project, stage_in_process):
    assert_one_line_error(stage_in_process(project, "stages/explain.py", "lime"), "method ['lime'] is not allowed")


def test_interrupted_output_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.npz").write_bytes(b"stale")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "half.npz").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # neither the stale output nor the partial one looks like a result
    with atomic_dir(target) as tmp:
        (tmp / "full.npz").write_bytes(b"done")
    assert [p.name for p in target.iterdir()] == ["full.npz"]
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "metrics.json") as f:
            f.write_text("{")
            raise RuntimeError("crash while writing")
    assert not (tmp_path / "metrics.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def set_params(project: Path, **changes) -> None:
    for path, value in changes.items():
        set_param(project, path.replace("__", "."), value)


def test_occlusion_stride_larger_than_the_window_stops_the_explain_stage(project, stage_in_process):
    # Before: the params passed validation and the stage died in a Captum AssertionError traceback, exit 1.
    set_params(project, occlusion__window=8, occlusion__stride=32)
    proc = stage_in_process(project, "stages/explain.py", "occlusion")
    assert_one_line_error(proc, "occlusion.stride: 32 is not allowed", "occlusion.window 8", "stride ≤ window")
    assert not (project / "data/explanations").exists()


def test_a_gradcam_layer_that_is_not_a_feature_map_stops_the_explain_stage_before_any_work(project, stage_in_process):
    # No prepared images exist: the check must come right after the model loads, before reading any data.
    set_param(project, "gradcam.layer", "net.classifier")
    proc = stage_in_process(project, "stages/explain.py", "gradcam")
    assert_one_line_error(
        proc, "gradcam.layer: 'net.classifier' outputs shape (1, 1000); Grad-CAM needs a feature map (B, C, h, w)"
    )
    assert not (project / "data/explanations").exists()


@pytest.mark.slow  # one Python start: the reference the in-process runs above stand for
@pytest.mark.parametrize("path, value", [("rise.N", -1), ("rise.N", 16)])
def test_an_in_process_stage_run_gives_what_the_subprocess_gives(project, stage_in_process, path, value):
    set_param(project, path, value)
    here = stage_in_process(project, "stages/masks.py")
    there = run_stage(project, "stages/masks.py")
    assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)
    assert here.returncode == (2 if value < 0 else 0)
