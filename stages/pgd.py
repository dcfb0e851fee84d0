"""Stage pgd: the classic prediction attack (untargeted L∞ PGD), and every method's map on its output.

Writes data/attacks/pgd/<stem>.npz in the same layout as the manipulation attacks
(target_stem is empty), so the metrics and report treat it as one more attack.
"""

import numpy as np

from deepsaliency.artifacts import MASKS, read_prepared, write_npz
from deepsaliency.attack import pgd_attack
from deepsaliency.attribution import check_model_params
from deepsaliency.config import load_params
from deepsaliency.experiments import class_probabilities, explain_all
from deepsaliency.models import load_model
from deepsaliency.rise import RiseMasks
from deepsaliency.stage import atomic_dir, run_stage


def main() -> None:
    params = load_params()
    cfg = params["pgd"]
    model = load_model(**params["model"])
    check_model_params(params, model)  # a bad gradcam layer fails now, not after the attack
    manifest, x = read_prepared()
    stems, classes = list(manifest["stem"]), [int(c) for c in manifest["class_idx"]]
    x_adv = pgd_attack(
        model, x.to(model.device), eps=cfg["eps"], step_size=cfg["step_size"], steps=cfg["steps"], seed=cfg["seed"]
    ).cpu()
    maps = explain_all(model, x_adv, stems, classes, params, RiseMasks.load(MASKS))
    labels, probs = class_probabilities(model, x_adv, classes)
    with atomic_dir("data/attacks/pgd") as out:
        for i, stem in enumerate(stems):
            write_npz(
                out / f"{stem}.npz",
                x_adv=x_adv[i].numpy(),
                target_stem=np.str_(""),
                label_adv=np.int64(labels[i]),
                prob_adv=np.float64(probs[i]),
                **{k: v[i] for k, v in maps.items()},
            )
    flipped = sum(label != c for label, c in zip(labels, classes, strict=True))
    print(f"pgd: label flipped for {flipped}/{len(stems)} images")


if __name__ == "__main__":
    run_stage(main)
