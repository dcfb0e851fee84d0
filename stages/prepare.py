"""Stage prepare: the prepare.images folder (data/images) → data/prepared (RGB at the model's input size in one
folder per shard of ``compute.shards``, each with its manifest.csv, and every image's manifest.csv).

Prints one line per file it skips (not an image) or per multi-frame file (first frame used), the sample it
drew, the manifest (the first 50 rows) and, when true labels exist, the model's top-1 accuracy.
"""

from deepsaliency.data import check_sample, prepare_images, scan_images
from deepsaliency.errors import DeepSaliencyError, ParamError
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.stage import atomic_dir, run_stage


def main() -> None:
    params = load_params()
    prep = params["prepare"]
    try:  # a bad folder, labels file or sample fails before the model loads and before any output is touched
        check_sample(prep["sample"], scan_images(prep["images"], prep["labels"]))
    except DeepSaliencyError as exc:  # the library names its argument; the stage names the params.yaml key
        text = str(exc)
        raise type(exc)(f"prepare.{text}" if text.startswith(("labels:", "sample.")) else text) from None
    model = load_model(**params["model"])
    shards = len(params["compute"]["shards"])
    try:
        with atomic_dir("data/prepared") as out:
            manifest = prepare_images(
                prep["images"], out, model, prep["resize"], labels=prep["labels"], sample=prep["sample"], shards=shards
            )
    except ParamError as exc:  # the one key prepare_images can refuse after reading every image
        text = str(exc)
        raise ParamError(f"compute.{text}" if text.startswith("shards:") else text) from None
    print(manifest.head(50).to_string(index=False))
    if len(manifest) > 50:
        print(f"… {len(manifest) - 50} more rows in data/prepared/manifest.csv")
    if shards > 1:
        sizes = manifest["shard"].value_counts().reindex(range(shards), fill_value=0)
        print(f"{shards} shards of {', '.join(str(n) for n in sizes)} images (by a hash of the file name)")
    if "correct" in manifest:
        print(f"top-1 accuracy: {manifest['correct'].mean():.3f} ({int(manifest['correct'].sum())}/{len(manifest)})")


if __name__ == "__main__":
    run_stage(main)
