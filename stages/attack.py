"""Stage attack@<method>: manipulate each image's <method> map toward another image's map.

Writes data/attacks/<method>/<stem>.npz (x_adv and every method's map on x_adv)
and reports/attack_loss/<method>.csv (per-step loss terms; the metrics stage gathers the listed
attacks into reports/plots/attack_loss.csv for dvc plots and the report).
"""
import sys

import numpy as np
import pandas as pd
import torch

from deepsaliency.artifacts import MASKS, read_explanation, read_prepared, write_npz
from deepsaliency.attack import run_attack
from deepsaliency.config import check_model_params, load_params
from deepsaliency.errors import ParamError
from deepsaliency.experiments import attack_explanation_params, attack_run_params, choose_targets, class_probabilities, explain_all
from deepsaliency.models import load_model
from deepsaliency.rise import RiseMasks
from deepsaliency.stage import atomic_dir, atomic_file, run_stage


def main() -> None:
    params = load_params()
    if len(sys.argv) != 2 or sys.argv[1] not in params["attack"]["methods"]:
        raise ParamError(f"stages/attack.py: method {sys.argv[1:]!r} is not allowed (one of attack.methods: {params['attack']['methods']})")
    method = sys.argv[1]
    model = load_model(**params["model"])
    check_model_params(params, model)  # a bad gradcam layer fails now, not after the attack
    manifest, x = read_prepared()
    stems, classes = list(manifest["stem"]), [int(c) for c in manifest["class_idx"]]
    target_stems = choose_targets(stems, params["attack"]["target_image"])
    target_maps = np.stack([read_explanation(method, t)["map"] for t in target_stems])
    masks = RiseMasks.load(MASKS)
    result = run_attack(
        model, x, method, target_map=torch.from_numpy(target_maps), progress=True,
        **attack_run_params(params, method), **attack_explanation_params(params, method, masks),
    )
    x_adv = result.x_adv.detach().cpu()
    maps = explain_all(model, x_adv, stems, classes, params, masks)
    labels, probs = class_probabilities(model, x_adv, classes)
    with atomic_dir(f"data/attacks/{method}") as out:
        for i, stem in enumerate(stems):
            write_npz(out / f"{stem}.npz", x_adv=x_adv[i].numpy(), target_stem=np.str_(target_stems[i]), label_adv=np.int64(labels[i]),
                      prob_adv=np.float64(probs[i]), **{k: v[i] for k, v in maps.items()})
    history = pd.DataFrame(result.history)
    history["image"] = [stems[i] for i in history["image"]]
    with atomic_file(f"reports/attack_loss/{method}.csv") as f:
        history[["step", "image", "expl_loss", "output_loss", "beta"]].to_csv(f, index=False)
    kept = sum(l == c for l, c in zip(labels, classes))
    print(f"attack@{method}: {len(stems)} images, top-1 kept for {kept}/{len(stems)}")


if __name__ == "__main__":
    run_stage(main)
