"""Stage metrics: prepared images, explanations and attacks → reports/metrics.json, reports/metrics/*.csv,
reports/plots/{deletion,insertion}_curves.csv. The logic lives in deepsaliency.metrics.tables."""
import json
import time

from deepsaliency.artifacts import read_prepared
from deepsaliency.config import load_params
from deepsaliency.errors import DeepSaliencyError
from deepsaliency.metrics import tables
from deepsaliency.models import load_model
from deepsaliency.stage import atomic_dir, atomic_file, run_stage


def main() -> None:
    params = load_params()
    settings = tables.settings_from_params(params)
    methods, attacks = tables.available_methods(params), tables.available_attacks(params)
    if not methods:
        raise DeepSaliencyError(f"data/explanations: no folder for any of explain.methods {params['explain']['methods']}; run the explain stages first")
    manifest, x = read_prepared()
    stems = list(manifest["stem"])
    images = {s: xi.numpy() for s, xi in zip(stems, x)}
    classes = dict(zip(stems, (int(c) for c in manifest["class_idx"])))
    print(f"metrics: {len(stems)} images, methods {methods}, attacks {attacks or 'none'}")
    maps = tables.load_maps(methods, stems)  # every input map checked (NaN/inf → AttributionError) before any work
    adv = tables.load_attacks(attacks, stems, methods)
    model = load_model(**params["model"])
    probs = tables.class_probabilities(model, images, classes)  # exact; the manifest's are rounded to 6 decimals

    t0 = time.perf_counter()
    similarity = tables.map_similarity_table(maps, adv, methods, settings.top_k)
    quality = tables.attack_quality_table(images, classes, probs, adv)
    t1 = time.perf_counter()
    faith, deletion, insertion = tables.faithfulness_table(model, images, classes, maps, adv, methods, settings)
    t2 = time.perf_counter()
    print(f"metrics: map similarity + attack quality {t1 - t0:.1f} s, faithfulness ({len(faith)} maps) {t2 - t1:.1f} s")

    summary = tables.rounded(tables.summarize(similarity, quality, faith))
    named = {"map_similarity.csv": similarity, "attack_quality.csv": quality, "faithfulness.csv": faith}
    for name, df in {**named, "deletion_curves.csv": deletion, "insertion_curves.csv": insertion}.items():
        tables.assert_finite_table(df, name)
    with atomic_dir("reports/metrics") as out:
        for name, df in named.items():
            df.to_csv(out / name, index=False, float_format="%.6g")
    for name, df in (("deletion_curves.csv", deletion), ("insertion_curves.csv", insertion)):
        with atomic_file(f"reports/plots/{name}") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_file("reports/metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    print("metrics: reports/metrics.json, reports/metrics/*.csv, reports/plots/{deletion,insertion}_curves.csv")


if __name__ == "__main__":
    run_stage(main)
