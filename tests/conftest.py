"""Shared fixtures: the real embedded model, the sample photos and the tiny DVC project, made once per session."""

import functools
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "images"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def model():
    from deepsaliency import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def samples(model):
    """name → (1, 3, 224, 224) tensor in [0, 1] for chelsea, coffee and rocket."""
    from deepsaliency import load_img

    return {p.stem: load_img(p, model)[1] for p in sorted(SAMPLES.iterdir())}


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """(root, table): the real photos of deepsaliency.datasets as a labelled ImageFolder, 2 seeded copies each."""
    from deepsaliency.datasets import make_real_photo_folder

    root = tmp_path_factory.mktemp("photos") / "images"
    return root, make_real_photo_folder(root, copies_per_photo=2, seed=0)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, model):
    """A prepare-stage output (RGB PNGs at the input size + manifest.csv) of the three sample photos, made here:
    a fresh clone has no data/prepared until `dvc repro` runs."""
    from deepsaliency.data import prepare_images

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    out.mkdir()
    prepare_images(SAMPLES, out, model, log=None)
    return out


@pytest.fixture
def stage_in_process(monkeypatch, capsys):
    """``run(project, script, *args)`` → CompletedProcess: a stage script run in this process
    (helpers.run_stage_in_process), same exit status and stdout/stderr as a subprocess."""
    from helpers import run_stage_in_process

    return functools.partial(run_stage_in_process, monkeypatch=monkeypatch, capsys=capsys)


@pytest.fixture(scope="session")
def dvc_baseline(tmp_path_factory):
    """(project, stages run): ONE full `dvc repro` of the tiny profile (tests/dvc_project.py) per session."""
    from dvc_project import make_project, run, stages_run

    project = make_project(tmp_path_factory.mktemp("baseline") / "project")
    return project, stages_run(run(["dvc", "repro"], project))


@pytest.fixture
def dvc_project(dvc_baseline, tmp_path):
    """This test's own copy of the finished baseline project (git history and DVC cache included)."""
    from dvc_project import copy_project

    return copy_project(dvc_baseline[0], tmp_path / "project")


REAL_MODEL_FIXTURES = {"model", "samples", "prepared", "seed_model", "dvc_baseline", "dvc_project"}


def pytest_collection_modifyitems(items):
    """Mark every test that takes the real model (directly or through a fixture) `model`: `-m "not model"`."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
