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
    the tables are the same rows in the same order at batch size 1 as at a batch of every image (the model's
    probabilities of a batch of 1 may differ in the last bits: compared to 1e-6)."""
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
        pd.testing.assert_frame_equal(one[name], whole[name], rtol=1e-6, obj=name)
