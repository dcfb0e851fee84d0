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
