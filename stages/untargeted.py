"""Stage untargeted@<method>-<eps>-<shard>: Ghorbani et al. (2019)'s untargeted attacks on each image's <method> map
within the L∞ budget <eps>/255, one run per kind of ``untargeted.kinds`` (top-k, centre of mass).

Ghorbani, Abid, Zou, "Interpretation of Neural Networks is Fragile", AAAI 2019, https://arxiv.org/abs/1710.10547
(the attack: :func:`deepsaliency.attack.untargeted_attack`). The shard's images stream through in batches of
``compute.batch_size``. Writes data/untargeted/<method>/eps<eps>/shard-<k>/<stem>.npz
(per kind: ``x_adv_<kind>`` (3, H, W) and ``map_<kind>`` (H, W), the method's map on it with the explain stage's
parameters) and reports/untargeted/<method>-eps<eps>/shard-<k>.csv, one row per (image, kind): the top-k intersection of
the explain stage's map and the map on x_adv (fraction in [0, 1], k = ``untargeted.k``), the shift of the map's
centre of mass (pixels), whether the label was kept, the probability of the original class, the L∞ distance
(/255, ≤ eps), and the attack's ``converged`` / ``steps`` / ``passes``.
"""

import sys

import numpy as np
import pandas as pd
import torch

from deepsaliency.artifacts import MASKS, read_explanation, sharded, untargeted_dir, untargeted_file, write_npz
from deepsaliency.attack import untargeted_attack
from deepsaliency.attack.params import stage_arguments
from deepsaliency.attribution import check_model_params, explain_images
from deepsaliency.experiments import attack_explanation_params, class_probabilities, method_kwargs
from deepsaliency.metrics.similarity import center_of_mass_shift, top_k_intersection
from deepsaliency.metrics.untargeted_summary import UNTARGETED_COLUMNS
from deepsaliency.models import load_model
from deepsaliency.nn import compile_enabled
from deepsaliency.params import Attack, Untargeted, load_params
from deepsaliency.rise import RiseMasks
from deepsaliency.shards import stage_shard
from deepsaliency.stage import atomic_dir, atomic_file, run_stage
from deepsaliency.stream import prepared_batches


def run_kind(model, x, method: str, eps: float, kind: str, params: dict, masks) -> tuple[torch.Tensor, dict]:
    """One kind's attack on every image: ``(x_adv (B, 3, H, W) on the CPU, the attack's per-image records)``."""
    section = Untargeted.model_validate(params["untargeted"])
    result = untargeted_attack(
        model,
        x,
        method,
        eps=eps / 255,  # the budget of this matrix item, pixel units
        progress=True,
        **section.run_kwargs(kind),
        **Attack.model_validate(params["attack"]).shared_kwargs(),
        **attack_explanation_params(params, method, masks),
    )
    return result.x_adv.detach().cpu(), {"converged": result.converged, "steps": result.steps, "passes": result.passes}


def attack_batch(model, x, stems, classes, method, eps, params, masks) -> tuple[list[dict], dict[str, dict]]:
    """Every kind's attack on one batch: ``(rows of the CSV, {stem: arrays of its npz})``."""
    section = params["untargeted"]
    original = [read_explanation(method, s)["map"] for s in stems]
    rows: list[dict] = []
    arrays: dict[str, dict[str, np.ndarray]] = {s: {} for s in stems}
    for kind in section["kinds"]:
        x_adv, record = run_kind(model, x, method, eps, kind, params, masks)
        maps = explain_images(model, x_adv, method, stems, classes, **method_kwargs(params, method, model, masks))
        labels, probs = class_probabilities(model, x_adv, classes)
        for i, stem in enumerate(stems):
            adv_map = maps[i][1].numpy()
            arrays[stem] |= {f"x_adv_{kind}": x_adv[i].numpy(), f"map_{kind}": adv_map.astype(np.float32)}
            rows.append(
                {
                    "image": stem,
                    "method": method,
                    "eps": eps,
                    "kind": kind,
                    "topk_intersection": top_k_intersection(original[i], adv_map, section["k"]),
                    "com_shift_px": center_of_mass_shift(original[i], adv_map),
                    "label_kept": labels[i] == classes[i],
                    "prob_adv": probs[i],
                    # float64: the budget check must not see float32 rounding of x ± eps
                    "linf": float((x_adv[i].double() - x[i].double()).abs().max()) * 255,
                    **{key: values[i] for key, values in record.items()},
                }
            )
    return rows, arrays


def main() -> None:
    params = load_params()
    section = params["untargeted"]
    args, shard = stage_shard(sys.argv[1:], 2, "stages/untargeted.py", params["compute"]["shards"])
    method, eps = stage_arguments(args, "stages/untargeted.py", "untargeted", section["methods"], section["eps"])
    compile_enabled()  # a bad DEEPSALIENCY_COMPILE fails now, not after the model and the images are loaded
    model = load_model(**params["model"])
    check_model_params(params, model)  # a bad gradcam layer fails now, not after the attack
    masks = RiseMasks.load(MASKS) if method == "rise" else None
    rows: list[dict] = []
    with atomic_dir(sharded(untargeted_dir(method, eps), shard)) as out:
        for batch, x in prepared_batches(params["compute"]["batch_size"], shard=shard):
            stems, classes = list(batch["stem"]), [int(c) for c in batch["class_idx"]]
            batch_rows, arrays = attack_batch(model, x, stems, classes, method, eps, params, masks)
            for stem in stems:  # written as its batch finishes
                write_npz(out / f"{stem}.npz", **arrays[stem])
            rows += batch_rows
        table = pd.DataFrame(rows, columns=UNTARGETED_COLUMNS)
        with atomic_file(untargeted_file(method, eps, shard=shard)) as f:
            table.to_csv(f, index=False)
    for kind, g in table.groupby("kind", sort=False):
        print(
            f"untargeted@{method}-{eps:g}-{shard} {kind}: {len(g)} images, top-1 kept {int(g.label_kept.sum())}/"
            f"{len(g)}, top-k intersection {g.topk_intersection.mean():.3f}, centre shift "
            f"{g.com_shift_px.mean():.1f} px, max L∞ {g.linf.max():.3f}/255 (budget {eps:g}/255)"
        )


if __name__ == "__main__":
    run_stage(main)
