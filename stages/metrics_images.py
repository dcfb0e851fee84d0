"""Stage metrics_images@<shard>: the per-image part of the metrics for the images of one shard.

Map similarity, attack quality, convergence and deletion/insertion (AUC and curves) of the shard's images →
data/metrics/shard-<k>/<table>.csv (deepsaliency.metrics.per_image); the metrics stage reads every shard's
tables and computes the summaries. compute.batch_size images' maps in memory at a time.
"""

import sys

from deepsaliency.artifacts import sharded
from deepsaliency.errors import DeepSaliencyError
from deepsaliency.metrics.per_image import PER_IMAGE, compute_per_image_tables, write_per_image_tables
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.shards import stage_shard
from deepsaliency.stage import atomic_dir, run_stage


def main() -> None:
    params = load_params()
    args, shard = stage_shard(sys.argv[1:], 0, "stages/metrics_images.py", params["compute"]["shards"])
    if args:
        raise DeepSaliencyError(f"stages/metrics_images.py: arguments {args!r} are not allowed (only the shard)")
    model = load_model(**params["model"])
    computed = compute_per_image_tables(model, params, shard)
    folder = sharded(PER_IMAGE, shard)
    with atomic_dir(folder) as out:
        write_per_image_tables(computed, out)
    rows = ", ".join(f"{name} {len(df)}" for name, df in computed.items())
    print(f"metrics_images@{shard}: rows {rows} → {folder}/")


if __name__ == "__main__":
    run_stage(main)
