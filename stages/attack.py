"""Stage attack@<method>-<eps>-<shard>: manipulate each image's <method> map toward another image's map
within the L∞ budget <eps>/255 (one DVC matrix item per method, budget of attack.eps and shard).

Writes data/attacks/shard-<k>/<method>/eps<eps>/<stem>.npz (x_adv, every method's map on x_adv, whether the
attack converged, its steps and forward/backward passes) and reports/attack_loss/<method>-eps<eps>/shard-<k>.csv
(per-step loss terms; the metrics stage gathers the listed runs into reports/plots/attack_loss.csv).
Images of the shard stream through in batches of ``compute.batch_size`` on the ``compute.backend``; each
image is pushed toward the map of the image ``attack.target_image`` names among the images of its own shard
(deepsaliency.experiments.choose_targets: ``next`` = the next image of the shard's manifest, cyclically), so a
shard's attack reads only its own shard's prepared images and maps.
"""

import sys

import numpy as np
import pandas as pd

from deepsaliency.artifacts import (
    LOSS_COLUMNS,
    MASKS,
    attack_dir,
    attack_loss_file,
    read_explanation,
    read_manifest,
    write_npz,
)
from deepsaliency.attack.batches import manipulation_batch
from deepsaliency.attack.params import stage_arguments
from deepsaliency.attribution import check_model_params
from deepsaliency.backend import Compute, map_batches
from deepsaliency.errors import ParamError
from deepsaliency.experiments import attack_explanation_params, attack_run_params, choose_targets
from deepsaliency.models import load_model
from deepsaliency.nn import compile_enabled
from deepsaliency.params import load_params
from deepsaliency.rise import RiseMasks
from deepsaliency.shards import stage_shard
from deepsaliency.stage import atomic_dir, atomic_file, run_stage
from deepsaliency.stream import prepared_batches


def parse_args(argv: list[str], params: dict) -> tuple[str, float, int]:
    """``<method> <eps> [<shard>]`` from the command line, checked against ``attack.methods`` / ``attack.eps`` /
    ``compute.shards``."""
    args, shard = stage_shard(argv, 2, "stages/attack.py", params["compute"]["shards"])
    attack = params["attack"]
    return (*stage_arguments(args, "stages/attack.py", "attack", attack["methods"], attack["eps"]), shard)


def main() -> None:
    params = load_params()
    method, eps, shard = parse_args(sys.argv[1:], params)
    compile_enabled()  # a bad DEEPSALIENCY_COMPILE fails now, not after the model and the images are loaded
    compute = Compute.from_params(params["compute"])
    model = load_model(**params["model"])
    check_model_params(params, model)  # a bad gradcam layer fails now, not after the attack
    stems = list(read_manifest(shard=shard)["stem"])
    if len(stems) == 1:
        raise ParamError(
            f"compute.shards: shard {shard} holds one image ({stems[0]}), and the manipulation attack needs two or "
            "more per shard (use fewer shards or add images)"
        )
    targets = choose_targets(stems, params["attack"]["target_image"]) if stems else []  # an empty shard: no work
    target_of = dict(zip(stems, targets, strict=True))
    needs_masks = "rise" in (method, *params["explain"]["methods"])  # attacked, or explained on x_adv
    masks = RiseMasks.load(MASKS) if needs_masks else None
    run = {**attack_run_params(params, method), "eps": eps / 255, **attack_explanation_params(params, method, masks)}
    payloads = (  # lazy: a batch's images and target maps are read when a worker is free for it
        {
            "method": method,
            "x": x,
            "stems": list(rows["stem"]),
            "classes": [int(c) for c in rows["class_idx"]],
            "target_maps": np.stack([read_explanation(method, target_of[s])["map"] for s in rows["stem"]]),
            "run": run,
            "params": params,
            "masks": masks,
        }
        for rows, x in prepared_batches(params["compute"]["batch_size"], shard=shard)
    )
    histories, kept, converged, linf = [], 0, 0, 0.0
    with atomic_dir(attack_dir(method, eps, shard=shard)) as out:
        for batch in map_batches(manipulation_batch, payloads, params["model"], compute, model):
            for i, stem in enumerate(batch["stems"]):
                write_npz(
                    out / f"{stem}.npz",
                    x_adv=batch["x_adv"][i],
                    target_stem=np.str_(target_of[stem]),
                    label_adv=np.int64(batch["labels"][i]),
                    prob_adv=np.float64(batch["probs"][i]),
                    converged=np.bool_(batch["converged"][i]),
                    steps=np.int64(batch["steps"][i]),
                    passes=np.int64(batch["passes"][i]),
                    **{k: v[i] for k, v in batch["maps"].items()},
                )
            histories.append(batch["history"])
            kept += sum(label == c for label, c in zip(batch["labels"], batch["classes"], strict=True))
            converged += sum(batch["converged"])
            linf = max(linf, batch["linf"])
        with atomic_file(attack_loss_file(method, eps, shard=shard)) as f:
            losses = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=LOSS_COLUMNS)
            losses.to_csv(f, index=False)
    print(
        f"attack@{method}-{eps:g}-{shard}: {len(stems)} images, top-1 kept for {kept}/{len(stems)}, "
        f"converged {converged}/{len(stems)}, max L∞ {linf * 255:.3f}/255 (budget {eps:g}/255) "
        f"({compute.backend} backend)"
    )


if __name__ == "__main__":
    run_stage(main)
