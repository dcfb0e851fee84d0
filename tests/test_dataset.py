"""Image folders with labels: ImageFolder layout, labels CSV, seeded samples, skipped files, streaming prepare.

Built from real photos that installed packages ship (deepsaliency.datasets), never from noise alone.
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deepsaliency.data import MANIFEST_COLUMNS, prepare_images, scan_images
from deepsaliency.datasets import PHOTOS, make_real_photo_folder, photo_path
from deepsaliency.errors import ImageError, ParamError
from deepsaliency.labels import LabelError, class_index, description, wordnet_id, wordnet_ids

ROOT = Path(__file__).resolve().parents[1]


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def prepare(folder, tmp_path, model, **kw) -> tuple[pd.DataFrame, list[str]]:
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    out.mkdir()
    lines: list[str] = []
    return prepare_images(folder, out, model, log=lines.append, **kw), lines


# ------------------------------------------------------------------------------------------------ labels
def test_class_lookup_by_index_wordnet_id_and_name():
    assert wordnet_ids()[0] == "n01440764" and description(0).startswith("tench")
    for label in (281, "281", " n02123045 ", "tabby cat", "TABBY", "tabby, tabby cat"):
        assert class_index(label) == 281
    assert class_index("Egyptian cat") == 285 and wordnet_id(285) == "n02124075"
    with pytest.raises(LabelError, match=r"label: 'crane' names several classes \(134 n02012849 'crane'; 517 "):
        class_index("crane")
    for bad in ("kitty", 1000, "1000", "n99999999"):
        with pytest.raises(LabelError, match=rf"label: {bad!r} is not"):
            class_index(bad)


def test_timm_class_order_matches_the_model_labels(model):
    # The model names classes with torchvision's list; timm's WordNet list must be in the same index order:
    # each torchvision name is the first WordNet lemma, except the two torchvision renamed to disambiguate.
    first = [description(i).split(", ")[0] for i in range(1000)]
    differ = [i for i in range(1000) if model.labels[i] != first[i]]
    assert differ == [134, 639] and model.labels[134] == "crane bird"


# ------------------------------------------------------------------------------------------ photo folder
def test_real_photo_folder_is_a_seeded_labelled_imagefolder(tmp_path):
    table = make_real_photo_folder(tmp_path / "a", copies_per_photo=3, seed=0)
    assert len(table) == 15 and sorted({p.name for p in (tmp_path / "a").iterdir()}) == sorted(set(table.wnid))
    assert all(wordnet_id(int(r.label)) == r.wnid == r.file.split("/")[0] for r in table.itertuples())
    assert {class_index(name) for _, name in PHOTOS.values()} == {281, 967, 657, 665, 652}
    make_real_photo_folder(tmp_path / "b", copies_per_photo=3, seed=0)
    make_real_photo_folder(tmp_path / "c", copies_per_photo=3, seed=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")  # same seed, same bytes
    other = digest(tmp_path / "c")
    assert sum(other[f] != h for f, h in digest(tmp_path / "a").items()) == 10  # every crop moved, no original
    # A copy really is the stated crop of the photo (JPEG-close), flipped when the table says so.
    row = table[(table.photo == "chelsea") & (table.flipped)].iloc[0] if table.flipped.any() else table.iloc[1]
    with Image.open(photo_path(row.photo)) as img:
        crop = np.asarray(img.convert("RGB"), np.float64)[
            row.top : row.top + row.height, row.left : row.left + row.width
        ]
    got = np.asarray(Image.open(tmp_path / "a" / row.file).convert("RGB"), np.float64)
    want, wrong = (crop[:, ::-1], crop) if row.flipped else (crop, crop[:, ::-1])
    assert np.abs(got - want).mean() < 3 < 10 < np.abs(got - wrong).mean()


# ------------------------------------------------------------------------------------------------ prepare
def test_imagefolder_manifest_has_true_labels_and_correctness(photo_folder, tmp_path, model):
    root, table = photo_folder
    manifest, lines = prepare(root, tmp_path, model)
    assert list(manifest.columns) == [*MANIFEST_COLUMNS, "true_label", "correct"]
    assert manifest.file.tolist() == sorted(table.file)
    assert manifest.true_label.tolist() == table.set_index("file").loc[manifest.file, "label"].tolist()
    assert (manifest.correct == (manifest.class_idx == manifest.true_label)).all()
    by_stem = manifest.set_index("stem")
    # The model calls the tabby Chelsea an Egyptian cat (wrong), the espresso an espresso (right).
    assert by_stem.loc["chelsea_000", "class_idx"] == 285 and not by_stem.loc["chelsea_000", "correct"]
    assert by_stem.loc["coffee_000", "class_idx"] == 967 and by_stem.loc["coffee_000", "correct"]
    assert 0 < manifest.correct.sum() < len(manifest)
    out = tmp_path / "out0" / "shard-0"  # one shard by default
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{s}.png" for s in manifest.stem)
    assert np.asarray(Image.open(out / "coffee_000.png")).shape == (224, 224, 3)
    assert lines == []


def test_class_folders_named_by_index_name_or_wordnet_id(tmp_path, model):
    images = tmp_path / "images"
    for folder, photo in (("281", "chelsea"), ("espresso", "coffee"), ("n03773504", "rocket")):
        (images / folder).mkdir(parents=True)
        shutil.copy(photo_path(photo), images / folder / photo_path(photo).name)
    manifest, _ = prepare(images, tmp_path, model)
    assert manifest.true_label.tolist() == [281, 967, 657]
    assert manifest.correct.tolist() == [False, True, True]


def test_the_same_name_in_two_class_folders_gets_the_class_prefix(tmp_path):
    images = tmp_path / "images"
    for folder, photo in (("281", "chelsea.png"), ("285", "chelsea.png"), ("285", "other.png")):
        (images / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo_path("chelsea"), images / folder / photo)
    scan = scan_images(images)
    assert [e.stem for e in scan.entries] == ["281__chelsea", "285__chelsea", "other"]
    assert [e.true_label for e in scan.entries] == [281, 285, 285]


def test_flat_folder_with_a_labels_csv(tmp_path, model):
    images = tmp_path / "images"
    shutil.copytree(ROOT / "data/images", images)
    plain, _ = prepare(images, tmp_path, model)
    assert list(plain.columns) == list(MANIFEST_COLUMNS)  # no labels: today's manifest exactly
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nchelsea.png,tabby cat\ncoffee.png,n07920052\nrocket.jpg,657\n")
    labelled, _ = prepare(images, tmp_path, model, labels=csv)
    pd.testing.assert_frame_equal(labelled[list(MANIFEST_COLUMNS)], plain)
    assert labelled.true_label.tolist() == [281, 967, 657] and labelled.correct.tolist() == [False, True, True]
    for out in ("out0", "out1"):
        assert digest(tmp_path / out)["shard-0/chelsea.png"] == digest(tmp_path / "out0")["shard-0/chelsea.png"]


@pytest.mark.slow
def test_seeded_samples(photo_folder, tmp_path, model):
    root, _ = photo_folder
    full, _ = prepare(root, tmp_path, model)
    a, lines = prepare(root, tmp_path, model, sample={"n": 4, "seed": 0})
    b, _ = prepare(root, tmp_path, model, sample={"n": 4, "seed": 0})
    assert len(a) == 4 and a.file.tolist() == b.file.tolist()  # same seed, same subset
    assert lines[-1].startswith("sample: 4 of 10 images (seed 0")
    subsets = {tuple(prepare(root, tmp_path, model, sample={"n": 4, "seed": s})[0].file) for s in range(1, 4)}
    assert len(subsets | {tuple(a.file)}) > 1
    one_each, _ = prepare(root, tmp_path, model, sample={"per_class": 1, "seed": 3})
    assert sorted(one_each.true_label) == [281, 652, 657, 665, 967]
    correct, _ = prepare(root, tmp_path, model, sample={"only_correct": True, "seed": 5})
    assert correct.file.tolist() == full.file[full.correct].tolist()  # exactly the correctly classified ones
    pd.testing.assert_frame_equal(correct.reset_index(drop=True), full[full.correct].reset_index(drop=True))
    both, _ = prepare(root, tmp_path, model, sample={"only_correct": True, "per_class": 1, "n": 2, "seed": 0})
    assert len(both) == 2 and both.correct.all() and both.true_label.nunique() == 2


def test_every_file_is_prepared_or_named_with_a_reason(photo_folder, tmp_path, model):
    images = tmp_path / "images"
    shutil.copytree(photo_folder[0], images)
    wnid = wordnet_id(967)
    (images / "README.txt").write_text("not an image")
    (images / wnid / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (images / wnid / "notes.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0")
    (images / ".cache").mkdir()
    (images / ".cache" / "x.png").write_bytes(b"")
    with Image.open(photo_path("coffee")) as img:  # an animated GIF: its first frame is prepared
        first = img.convert("RGB").resize((120, 80))
    first.save(images / wnid / "anim.gif", save_all=True, append_images=[first.rotate(180)], duration=40)
    manifest, lines = prepare(images, tmp_path, model)
    assert "n07920052/anim.gif" in set(manifest.file)
    skipped = {line.split(" ", 1)[1].split(":", 1)[0] for line in lines if line.startswith("skipped ")}
    every = {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert every == set(manifest.file) | (skipped - {".cache/"}) and set(manifest.file).isdisjoint(skipped)
    assert "skipped README.txt: not an image (extension '.txt' is not a format Pillow reads)" in lines
    assert "skipped n07920052/.DS_Store: hidden file" in lines
    eps = "skipped n07920052/notes.eps: not decodable here (EPS needs Ghostscript"
    assert any(line.startswith(eps) for line in lines)
    assert "skipped .cache/: hidden folder" in lines
    assert "note n07920052/anim.gif: 2 frames, the first was prepared" in lines


def _labels_csv(text: str) -> tuple:
    """(setup, prepare_images kwargs) of a case whose labels file l.csv holds ``text``."""
    return (lambda r: (r / "l.csv").write_text(text)), {"labels": "l.csv"}


@pytest.mark.parametrize(
    "setup, kw, error, message",
    [
        (
            lambda r: None,
            {"labels": "nowhere.csv"},
            LabelError,
            r"labels: 'nowhere.csv' does not exist \(expected a CSV",
        ),
        (
            *_labels_csv("file,label\nn07920052/coffee_000.JPEG,kitty\n"),
            LabelError,
            r"l.csv: line 2: file 'n07920052/coffee_000.JPEG': 'kitty' is not an ImageNet class",
        ),
        (
            *_labels_csv("file,label\nn07920052/coffee_000.JPEG,crane\n"),
            LabelError,
            r"l.csv: line 2: file 'n07920052/coffee_000.JPEG': 'crane' names several classes",
        ),
        (
            *_labels_csv("name,class\na,1\n"),
            LabelError,
            r"l.csv: columns \['name', 'class'\] are not allowed \(expected a CSV file with the columns",
        ),
        (*_labels_csv("file,label\nmissing.png,1\n"), LabelError, r"l.csv: file 'missing.png' is not an image in"),
        (
            *_labels_csv("file,label\nn07920052/coffee_000.JPEG,968\n"),
            LabelError,
            r"file 'n07920052/coffee_000.JPEG': label 968 disagrees with its class folder \(967\)",
        ),
        (lambda r: (r / "images/n01440764").mkdir(), {}, ImageError, r"images/n01440764: class folder holds no images"),
        (
            lambda r: (r / "images/kittens").mkdir(),
            {},
            LabelError,
            r"images/kittens: class folder 'kittens' is not an ImageNet class \(a class index in \[0, 999\]",
        ),
        (
            lambda r: shutil.copy(photo_path("coffee"), r / "images/top.png"),
            {},
            ImageError,
            r"images both at the top \(top.png\) and in class folders \(n02123045/\) are not allowed",
        ),
        (lambda r: None, {"sample": {"n": 0}}, ParamError, r"sample.n: 0 is not allowed \(None or an integer ≥ 1\)"),
        (lambda r: None, {"sample": {"size": 3}}, ParamError, r"sample.size: unknown key"),
    ],
)
def test_bad_folders_and_labels_name_what_to_fix(photo_folder, tmp_path, model, monkeypatch, setup, kw, error, message):
    shutil.copytree(photo_folder[0], tmp_path / "images")
    setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(error, match=message):
        prepare_images("images", tmp_path / "out", model, **kw)
    assert list((tmp_path / "out").iterdir()) == []  # checked before anything is written


def test_sampling_by_class_needs_labels(tmp_path, model):
    shutil.copytree(ROOT / "data/images", tmp_path / "images")
    for key in ("per_class", "only_correct"):
        value = 1 if key == "per_class" else True
        with pytest.raises(ParamError, match=rf"sample.{key}: {value} needs true labels"):
            prepare(tmp_path / "images", tmp_path, model, sample={key: value})


PEAK = """
import resource, sys, torch
torch.set_num_threads(1)
from deepsaliency import load_model
from deepsaliency.data import prepare_images
model = load_model(device="cpu")
prepare_images(sys.argv[1], sys.argv[2], model, batch_size=8, log=None)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_prepare_streams_peak_memory_does_not_grow_with_the_folder(tmp_path):
    """Peak RSS (MiB) of a whole prepare run in batches of 8: 20 vs 120 seeded crops of the photos."""
    peaks = {}
    for copies in (4, 24):
        images, out = tmp_path / f"images{copies}", tmp_path / f"out{copies}"
        make_real_photo_folder(images, copies_per_photo=copies, seed=0)
        out.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", PEAK, str(images), str(out)], capture_output=True, text=True, cwd=ROOT, check=True
        )
        peaks[copies] = int(proc.stdout.split()[-1])
        assert len(list(out.glob("shard-0/*.png"))) == 5 * copies
    # Holding 120 images at 224² (float, 0.6 MB each) and classifying them at once would add > 100 MiB.
    assert peaks[24] - peaks[4] < 40, peaks
