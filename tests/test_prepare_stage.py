"""The prepare stage (stages/prepare.py) and its params.yaml keys: what it prints, and that bad labels or a
sample that needs labels fail with one line naming the key before anything is touched.

Split from test_dataset.py (the library side of image folders), on the same real photo folder.
"""

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc_project import digest
from PIL import Image
from skimage import data as skdata

from deepsaliency.data import prepare_images
from deepsaliency.errors import ParamError
from deepsaliency.params import validate
from deepsaliency.shards import shard_of

ROOT = Path(__file__).resolve().parents[1]


def test_params_validate_the_new_prepare_keys():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert validate(params)["prepare"]["sample"] == {"n": None, "per_class": None, "only_correct": False, "seed": 0}
    for key, value, allowed in (
        ("n", 0, "null or an integer ≥ 1"),
        ("seed", -1, "an integer ≥ 0"),
        ("only_correct", "yes", "true or false"),
    ):
        bad = yaml.safe_load((ROOT / "params.yaml").read_text())
        bad["prepare"]["sample"][key] = value
        with pytest.raises(ParamError, match=rf"prepare.sample.{key}: {value!r} is not allowed \(expected {allowed}\)"):
            validate(bad)


# -------------------------------------------------------------------------------------------------- stage
@pytest.fixture
def project(tmp_path, photo_folder) -> Path:
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(photo_folder[0], tmp_path / "data/images")
    return tmp_path


@pytest.fixture
def run_prepare(project, stage_in_process):
    """``run_prepare(**prepare_params)``: set those prepare keys, run the stage in this process (conftest)."""

    def run(**prepare_params) -> subprocess.CompletedProcess:
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["prepare"].update(prepare_params)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return stage_in_process(project, "stages/prepare.py")

    return run


def test_stage_prints_skipped_files_sample_and_accuracy(project, run_prepare):
    (project / "data/images/README.txt").write_text("about these photos")
    proc = run_prepare(sample={"n": 6, "per_class": 2, "only_correct": False, "seed": 1})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "skipped README.txt: not an image (extension '.txt' is not a format Pillow reads)"
    assert out[1].startswith("sample: 6 of 10 images (seed 1, n 6, per_class 2, only_correct False)")
    manifest = pd.read_csv(project / "data/prepared/manifest.csv")
    assert len(manifest) == 6 and manifest.true_label.value_counts().max() <= 2
    assert out[-1] == f"top-1 accuracy: {manifest.correct.mean():.3f} ({manifest.correct.sum()}/6)"


@pytest.mark.parametrize(
    "change, fragments",
    [
        ({"labels": "nowhere.csv"}, ("prepare.labels: 'nowhere.csv' does not exist",)),
        (
            {"sample": {"n": 0, "per_class": None, "only_correct": False, "seed": 0}},
            ("prepare.sample.n: 0 is not allowed",),
        ),
        ({"images": "data/empty"}, ("data/empty/n01440764: class folder holds no images",)),
    ],
)
def test_stage_refuses_bad_labels_with_one_line_and_writes_nothing(project, run_prepare, change, fragments):
    (project / "data/empty/n01440764").mkdir(parents=True)
    proc = run_prepare(**change)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(f in lines[0] for f in fragments), proc.stderr
    assert not (project / "data/prepared").exists()
    assert not any(p.name.startswith(".prepared.tmp") for p in (project / "data").iterdir())


def test_a_sample_that_needs_labels_is_refused_before_anything_is_touched(project, run_prepare):
    """Checked before the model loads: a previous result stays, the message names the params.yaml key."""
    flat = project / "data/flat"
    flat.mkdir(parents=True)
    photo = next(p for p in sorted((project / "data/images").rglob("*")) if p.is_file())
    shutil.copy2(photo, flat / f"one{photo.suffix}")
    (project / "data/prepared").mkdir(parents=True)
    (project / "data/prepared/manifest.csv").write_text("earlier run\n")
    proc = run_prepare(images="data/flat", sample={"n": None, "per_class": 2, "only_correct": False, "seed": 0})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: prepare.sample.per_class: 2 needs true labels (class folders or a labels file), "
        "and these images have none"
    ]
    assert (project / "data/prepared/manifest.csv").read_text() == "earlier run\n"


# ------------------------------------------------------------------------------------------------- memory


# ------------------------------------------------------------------------------------------------- shards
def test_shards_partition_the_images_by_name_and_print_their_sizes(project, stage_in_process):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compute"]["shards"] = [0, 1, 2]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = stage_in_process(project, "stages/prepare.py")
    assert proc.returncode == 0, proc.stderr
    manifest = pd.read_csv(project / "data/prepared/manifest.csv")
    assert manifest.shard.tolist() == [shard_of(s, 3) for s in manifest.stem]
    sizes = manifest.shard.value_counts().reindex(range(3), fill_value=0).tolist()
    assert f"3 shards of {', '.join(map(str, sizes))} images (by a hash of the file name)" in proc.stdout
    for k in range(3):
        part = pd.read_csv(project / f"data/prepared/shard-{k}/manifest.csv")
        pd.testing.assert_frame_equal(part, manifest[manifest.shard == k].reset_index(drop=True))
        pngs = sorted(p.stem for p in (project / f"data/prepared/shard-{k}").glob("*.png"))
        assert pngs == sorted(part.stem)


def test_adding_an_image_changes_only_its_own_shard_folder(tmp_path, model):
    """What per-shard caching rests on: every other shard's folder stays byte-identical (each image is
    classified alone, so the batch it shares with the new image does not move its probability)."""
    images = tmp_path / "images"
    shutil.copytree(ROOT / "data/images", images)
    digests = []
    for run, extra in enumerate((None, "astronaut")):
        if extra:
            Image.fromarray(skdata.astronaut()).save(images / f"{extra}.png")
        out = tmp_path / f"out{run}"
        out.mkdir()
        prepare_images(images, out, model, log=None, shards=2)
        digests.append({k: digest(out / f"shard-{k}") for k in range(2)})
    new = shard_of("astronaut", 2)
    assert digests[0][1 - new] == digests[1][1 - new]
    assert set(digests[1][new]) - set(digests[0][new]) == {"astronaut.png"}
    assert digests[0][new]["manifest.csv"] != digests[1][new]["manifest.csv"]


def test_more_shards_than_images_is_one_line_naming_the_key_and_writes_nothing(project, stage_in_process):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compute"]["shards"] = list(range(11))  # the photo folder holds 10 images
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = stage_in_process(project, "stages/prepare.py")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: compute.shards: 11 is not allowed (at most the number of images prepared, 10)"
    ]
    assert not (project / "data/prepared").exists()
    assert not any(p.name.startswith(".prepared.tmp") for p in (project / "data").iterdir())
