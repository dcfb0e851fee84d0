"""Stage pgd@<shard>: the classic prediction attack (untargeted L∞ PGD), and every method's map on its output.

Writes data/attacks/shard-<k>/pgd/<stem>.npz in the same layout as the manipulation attacks
(target_stem is empty), so the metrics and report treat it as one more attack. The shard's images
stream through in batches of ``compute.batch_size`` on the ``compute.backend``.
"""

import sys

import numpy as np

from deepsaliency.artifacts import MASKS, PGD, attack_dir, write_npz
from deepsaliency.attack.batches import pgd_batch
from deepsaliency.attribution import check_model_params
from deepsaliency.backend import Compute, map_batches
from deepsaliency.errors import ParamError
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.rise import RiseMasks
from deepsaliency.shards import stage_shard
from deepsaliency.stage import atomic_dir, run_stage
from deepsaliency.stream import prepared_batches


def main() -> None:
    params = load_params()
    args, shard = stage_shard(sys.argv[1:], 0, "stages/pgd.py", params["compute"]["shards"])
    if args:
        raise ParamError(f"stages/pgd.py: arguments {args!r} are not allowed (only the shard index)")
    compute = Compute.from_params(params["compute"])
    model = load_model(**params["model"])
    check_model_params(params, model)  # a bad gradcam layer fails now, not after the attack
    masks = RiseMasks.load(MASKS)
    payloads = (
        {
            "x": x,
            "stems": list(rows["stem"]),
            "classes": [int(c) for c in rows["class_idx"]],
            "pgd": params["pgd"],
            "params": params,
            "masks": masks,
        }
        for rows, x in prepared_batches(params["compute"]["batch_size"], shard=shard)
    )
    flipped = total = 0
    with atomic_dir(attack_dir(PGD, shard=shard)) as out:
        for batch in map_batches(pgd_batch, payloads, params["model"], compute, model):
            for i, stem in enumerate(batch["stems"]):
                write_npz(
                    out / f"{stem}.npz",
                    x_adv=batch["x_adv"][i],
                    target_stem=np.str_(""),
                    label_adv=np.int64(batch["labels"][i]),
                    prob_adv=np.float64(batch["probs"][i]),
                    **{k: v[i] for k, v in batch["maps"].items()},
                )
            flipped += sum(label != c for label, c in zip(batch["labels"], batch["classes"], strict=True))
            total += len(batch["stems"])
    print(f"pgd@{shard}: label flipped for {flipped}/{total} images ({compute.backend} backend)")


if __name__ == "__main__":
    run_stage(main)
