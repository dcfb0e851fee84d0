"""The per-image part of the metrics (deepsaliency.metrics.per_image, the metrics_images stage): what the metrics
stage reads back from data/metrics/shard-<k>/ is exactly what was computed."""

import pandas as pd
import pytest
from test_metrics_stage import finished_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    return finished_project(tmp_path_factory.mktemp("per_image"))


def test_per_image_tables_round_trip_exactly_through_their_shard_files(stage_run, model, monkeypatch):
    """What the metrics stage reads back from data/metrics/shard-<k>/ is what metrics_images computed: the same
    values to the last bit, the same dtypes (text stays text), so the summaries equal one in-process computation."""
    from deepsaliency.metrics.per_image import TABLES, compute_per_image_tables, read_per_image_tables
    from deepsaliency.params import load_params

    root, _ = stage_run
    monkeypatch.chdir(root)
    computed = compute_per_image_tables(model, load_params(root / "params.yaml"), shard=0, progress=False)
    read = read_per_image_tables(root / "data/metrics")
    assert set(read) == set(TABLES) == set(computed)
    for name in TABLES:
        pd.testing.assert_frame_equal(read[name], computed[name], check_exact=True, obj=name)
    assert (read["map_similarity"]["target"] == "").any()  # PGD's empty target stays an empty string, not NaN


def test_per_image_tables_do_not_depend_on_how_many_images_a_batch_holds(stage_run, model, monkeypatch):
    """metrics_images holds compute.batch_size images' maps at a time (memory bounded by the batch, not the shard);
    the tables are the same values, to the last bit, in the same order at batch size 1 as at a batch of every
    image (the probabilities are computed one image at a time for that reason)."""
    from deepsaliency.metrics.per_image import TABLES, compute_per_image_tables
    from deepsaliency.params import load_params

    root, _ = stage_run
    monkeypatch.chdir(root)
    params = load_params(root / "params.yaml")
    one = compute_per_image_tables(
        model, {**params, "compute": {**params["compute"], "batch_size": 1}}, 0, progress=False
    )
    whole = compute_per_image_tables(
        model, {**params, "compute": {**params["compute"], "batch_size": 64}}, 0, progress=False
    )
    assert len(one["map_similarity"]) == 16 and one["attack_quality"]["image"].nunique() == 2
    for name in TABLES:
        pd.testing.assert_frame_equal(one[name], whole[name], check_exact=True, obj=name)


def test_a_shard_reads_its_own_attack_folder_only(stage_run, model, tmp_path, monkeypatch):
    """metrics_images@<k> depends on data/attacks/shard-<k> only: a file missing there is an error naming it,
    never a stale copy found in an older layout (here the flat data/attacks/<m>/eps<e>/ of the fixture)."""
    import shutil

    from deepsaliency.errors import DeepSaliencyError
    from deepsaliency.metrics.per_image import compute_per_image_tables
    from deepsaliency.params import load_params

    root = tmp_path / "project"
    shutil.copytree(stage_run[0], root)
    own = root / "data/attacks/shard-0/saliency/eps8"
    shutil.copytree(root / "data/attacks/saliency/eps8", own)
    (own / "b.npz").unlink()  # the stale flat copy of b.npz stays
    monkeypatch.chdir(root)
    with pytest.raises(DeepSaliencyError, match=r"^data/attacks/shard-0/saliency/eps8/b\.npz: missing"):
        compute_per_image_tables(model, load_params(root / "params.yaml"), shard=0, progress=False)
