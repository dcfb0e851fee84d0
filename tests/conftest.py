"""Shared fixtures: the real embedded model and the sample photos, loaded once per session."""

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
