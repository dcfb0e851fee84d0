"""Stage explain@<method>-<shard> (explain_rise@<shard> for RISE, which also reads the masks):
data/prepared/shard-<k> → data/explanations/<method>/shard-<k>/<stem>.npz.

dvc.yaml has one explain stage per method the library knows and shard of ``compute.shards``, and each always runs;
``explain.methods`` chooses which of them the attack, metrics and report stages use.
Images stream through in batches of ``compute.batch_size`` on the ``compute.backend``
(this process or Ray workers); each image's file is written as its batch returns.
"""

import sys

import numpy as np

from deepsaliency.artifacts import EXPLANATIONS, MASKS, sharded, write_npz
from deepsaliency.attribution import check_model_params
from deepsaliency.backend import Compute, map_batches
from deepsaliency.errors import ParamError
from deepsaliency.experiments import method_kwargs
from deepsaliency.methods import METHODS
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.rise import RiseMasks
from deepsaliency.shards import stage_shard
from deepsaliency.stage import atomic_dir, run_stage
from deepsaliency.stream import explain_task, prepared_batches


def main() -> None:
    params = load_params()
    args, shard = stage_shard(sys.argv[1:], 1, "stages/explain.py", params["compute"]["shards"])
    if len(args) != 1 or args[0] not in METHODS:
        raise ParamError(f"stages/explain.py: method {args!r} is not allowed (one of {', '.join(METHODS)})")
    method = args[0]
    compute = Compute.from_params(params["compute"])
    model = load_model(**params["model"])
    check_model_params(params, model)  # gradcam.layer and explain.target against the model, before any work
    masks = RiseMasks.load(MASKS) if method == "rise" else None
    kwargs = method_kwargs(params, method, model, masks)
    target = params["explain"]["target"]
    payloads = (  # lazy: one batch of images is read when a worker is free for it
        {
            "method": method,
            "x": x,
            "stems": list(rows["stem"]),
            "targets": [target if target is not None else int(c) for c in rows["class_idx"]],
            "params": kwargs,
        }
        for rows, x in prepared_batches(params["compute"]["batch_size"], shard=shard)
    )
    done = 0
    folder = sharded(EXPLANATIONS / method, shard)
    with atomic_dir(folder) as out:
        for batch in map_batches(explain_task, payloads, params["model"], compute, model):
            for stem, t, attr, smap in zip(
                batch["stems"], batch["targets"], batch["attributions"], batch["maps"], strict=True
            ):
                write_npz(out / f"{stem}.npz", attribution=attr, map=smap, target=np.int64(t))
            done += len(batch["stems"])
    print(f"{method}: {done} images → {folder}/ ({compute.backend} backend)")


if __name__ == "__main__":
    run_stage(main)
