"""Work cached per shard, checked with real `dvc repro` (issue 14): a shard that fails keeps the finished shards
cached, and adding an image reruns only the stages of the shard it falls in.

The three sample photos split into 2 shards by a hash of their names: shard 0 = {chelsea}, shard 1 = {coffee,
rocket}. A shard of one image cannot be attacked toward another image of its shard, so attack@saliency-8-0 fails
with a one-line error while shard 1's items finish; adding astronaut (shard 0) is the fix.
"""

import json
import shutil

import pandas as pd
import pytest
import yaml
from dvc_project import ROOT, make_project, run, stages_run
from skimage import data as skdata
from skimage.io import imsave

from deepsaliency.shards import shard_of

pytestmark = pytest.mark.slow

SHARDED = {
    "compute": {"shards": [0, 1]},
    "explain": {"methods": ["saliency", "gradcam"]},
    "plots": {"min_max_methods": []},
    "attack": {"methods": ["saliency"], "eps": [8]},
    "untargeted": {"methods": ["saliency"], "eps": [8]},
}


def _project(tmp_path):
    project = make_project(tmp_path / "project")
    shutil.copy2(ROOT / "data/images/rocket.jpg", project / "data/images/rocket.jpg")
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, keys in SHARDED.items():
        params[section].update(keys)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two shards"], project)
    return project


def test_a_failed_shard_keeps_the_others_and_a_new_image_reruns_only_its_shard(tmp_path):
    assert [shard_of(s, 2) for s in ("chelsea", "coffee", "rocket", "astronaut")] == [0, 1, 1, 0]
    project = _project(tmp_path)

    first = run(["dvc", "repro", "--keep-going", "attack"], project, check=False)
    assert first.returncode != 0
    assert "compute.shards: shard 0 holds one image (chelsea)" in first.stdout + first.stderr
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {"explain@saliency-0", "explain@saliency-1", "attack@saliency-8-1"} <= set(lock)
    assert "attack@saliency-8-0" not in lock
    assert sorted(p.name for p in (project / "data/attacks/shard-1/saliency/eps8").iterdir()) == [
        "coffee.npz",
        "rocket.npz",
    ]
    assert not (project / "data/attacks/shard-0/saliency/eps8").exists()  # nothing half-written
    manifest = pd.read_csv(project / "data/prepared/manifest.csv")
    assert dict(zip(manifest.stem, manifest.shard, strict=True)) == {"chelsea": 0, "coffee": 1, "rocket": 1}

    imsave(project / "data/images/astronaut.png", skdata.astronaut())  # the fix: a second image for shard 0
    second = run(["dvc", "repro", "attack"], project)
    rerun = stages_run(second)
    assert {"prepare", "explain@saliency-0", "attack@saliency-8-0"} <= rerun
    assert not rerun & {"explain@saliency-1", "attack@saliency-8-1", "masks"}  # shard 1 stayed cached

    status = json.loads(run(["dvc", "status", "--json", "attack"], project).stdout)
    assert status == {}
    shard0 = pd.read_csv(project / "data/prepared/shard-0/manifest.csv")
    assert list(shard0.stem) == ["astronaut", "chelsea"]
    assert sorted(p.name for p in (project / "data/attacks/shard-0/saliency/eps8").iterdir()) == [
        "astronaut.npz",
        "chelsea.npz",
    ]

    # The per-image metrics of a shard depend on that shard's attacks only (they are written shard first).
    for k in (0, 1):
        upstream = run(["dvc", "dag", "--dot", f"metrics_images@{k}"], project).stdout
        assert f'"attack@saliency-8-{k}"' in upstream and f'"pgd@{k}"' in upstream
        assert f'"attack@saliency-8-{1 - k}"' not in upstream and f'"pgd@{1 - k}"' not in upstream
