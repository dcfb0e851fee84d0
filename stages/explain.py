"""Stage explain@<method>: data/prepared → data/explanations/<method>/<stem>.npz.

dvc.yaml has one explain stage per method the library knows, and each always runs;
``explain.methods`` chooses which of them the attack, metrics and report stages use.
"""

import sys

import numpy as np

from deepsaliency.artifacts import MASKS, read_prepared, write_npz
from deepsaliency.attribution import check_model_params, explain_images
from deepsaliency.config import load_params
from deepsaliency.errors import ParamError
from deepsaliency.experiments import method_kwargs
from deepsaliency.methods import METHODS
from deepsaliency.models import load_model
from deepsaliency.rise import RiseMasks
from deepsaliency.stage import atomic_dir, run_stage


def main() -> None:
    params = load_params()
    if len(sys.argv) != 2 or sys.argv[1] not in METHODS:
        raise ParamError(f"stages/explain.py: method {sys.argv[1:]!r} is not allowed (one of {', '.join(METHODS)})")
    method = sys.argv[1]
    model = load_model(**params["model"])
    check_model_params(params, model)  # gradcam.layer and explain.target against the model, before any work
    manifest, x = read_prepared()
    target = params["explain"]["target"]
    targets = [target if target is not None else c for c in manifest["class_idx"]]
    masks = RiseMasks.load(MASKS) if method == "rise" else None
    results = explain_images(
        model, x, method, list(manifest["stem"]), targets, **method_kwargs(params, method, model, masks)
    )
    with atomic_dir(f"data/explanations/{method}") as out:
        for stem, t, (attr, smap) in zip(manifest["stem"], targets, results, strict=True):
            write_npz(out / f"{stem}.npz", attribution=attr.numpy(), map=smap.numpy(), target=np.int64(t))
    print(f"{method}: {len(results)} images → data/explanations/{method}/")


if __name__ == "__main__":
    run_stage(main)
