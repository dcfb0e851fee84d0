"""Stage explain@<method>: data/prepared → data/explanations/<method>/<stem>.npz."""
import sys

import numpy as np

from deepsaliency.artifacts import MASKS, read_prepared, write_npz
from deepsaliency.config import load_params
from deepsaliency.errors import ParamError
from deepsaliency.explain import explain_images
from deepsaliency.models import load_model
from deepsaliency.rise import RiseMasks, auto_batch_size
from deepsaliency.stage import atomic_dir, run_stage


def method_params(params: dict, method: str, model) -> dict:
    """The keyword arguments ``attribute`` takes for ``method``, from its params section."""
    if method != "rise":
        return dict(params[method])
    batch = params["rise"]["batch_size"]
    return {"masks": RiseMasks.load(MASKS), "batch_size": auto_batch_size(model, model.input_size) if batch == "auto" else batch}


def main() -> None:
    params = load_params()
    if len(sys.argv) != 2 or sys.argv[1] not in params["explain"]["methods"]:
        raise ParamError(f"stages/explain.py: method {sys.argv[1:]!r} is not allowed (one of explain.methods: {params['explain']['methods']})")
    method = sys.argv[1]
    model = load_model(**params["model"])
    manifest, x = read_prepared()
    target = params["explain"]["target"]
    targets = [target if target is not None else c for c in manifest["class_idx"]]
    results = explain_images(model, x, method, list(manifest["stem"]), targets, **method_params(params, method, model))
    with atomic_dir(f"data/explanations/{method}") as out:
        for stem, t, (attr, smap) in zip(manifest["stem"], targets, results):
            write_npz(out / f"{stem}.npz", attribution=attr.numpy(), map=smap.numpy(), target=np.int64(t))
    print(f"{method}: {len(results)} images → data/explanations/{method}/")


if __name__ == "__main__":
    run_stage(main)
