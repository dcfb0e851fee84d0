"""Stage attack@<method>-<eps>: manipulate each image's <method> map toward another image's map
within the L∞ budget <eps>/255 (one DVC matrix item per method and budget of attack.eps).

Writes data/attacks/<method>/eps<eps>/<stem>.npz (x_adv, every method's map on x_adv, whether the
attack converged, its steps and forward/backward passes) and reports/attack_loss/<method>-eps<eps>.csv
(per-step loss terms; the metrics stage gathers the listed runs into reports/plots/attack_loss.csv).
"""

import sys

import numpy as np
import pandas as pd
import torch

from deepsaliency.artifacts import (
    MASKS,
    attack_dir,
    attack_loss_file,
    eps_name,
    read_explanation,
    read_prepared,
    write_npz,
)
from deepsaliency.attack import run_attack
from deepsaliency.attribution import check_model_params
from deepsaliency.config import load_params
from deepsaliency.errors import ParamError
from deepsaliency.experiments import (
    attack_explanation_params,
    attack_run_params,
    choose_targets,
    class_probabilities,
    explain_all,
)
from deepsaliency.models import load_model
from deepsaliency.rise import RiseMasks
from deepsaliency.stage import atomic_dir, atomic_file, run_stage


def parse_args(argv: list[str], params: dict) -> tuple[str, float]:
    """``<method> <eps>`` from the command line, each checked against ``attack.methods`` / ``attack.eps``."""
    methods, budgets = params["attack"]["methods"], params["attack"]["eps"]
    if len(argv) != 2 or argv[0] not in methods:
        raise ParamError(f"stages/attack.py: method {argv[:1]!r} is not allowed (one of attack.methods: {methods})")
    try:
        eps = float(argv[1])
    except ValueError:
        eps = float("nan")  # matches no budget below
    if not any(eps_name(e) == eps_name(eps) for e in budgets):
        raise ParamError(f"stages/attack.py: budget {argv[1]!r} is not allowed (one of attack.eps: {budgets})")
    return argv[0], eps


def main() -> None:
    params = load_params()
    method, eps = parse_args(sys.argv[1:], params)
    model = load_model(**params["model"])
    check_model_params(params, model)  # a bad gradcam layer fails now, not after the attack
    manifest, x = read_prepared()
    stems, classes = list(manifest["stem"]), [int(c) for c in manifest["class_idx"]]
    target_stems = choose_targets(stems, params["attack"]["target_image"])
    target_maps = np.stack([read_explanation(method, t)["map"] for t in target_stems])
    masks = RiseMasks.load(MASKS)
    result = run_attack(
        model,
        x,
        method,
        target_map=torch.from_numpy(target_maps),
        progress=True,
        **{**attack_run_params(params, method), "eps": eps / 255},  # the budget of this matrix item, pixel units
        **attack_explanation_params(params, method, masks),
    )
    x_adv = result.x_adv.detach().cpu()
    maps = explain_all(model, x_adv, stems, classes, params, masks)
    labels, probs = class_probabilities(model, x_adv, classes)
    with atomic_dir(attack_dir(method, eps)) as out:
        for i, stem in enumerate(stems):
            write_npz(
                out / f"{stem}.npz",
                x_adv=x_adv[i].numpy(),
                target_stem=np.str_(target_stems[i]),
                label_adv=np.int64(labels[i]),
                prob_adv=np.float64(probs[i]),
                converged=np.bool_(result.converged[i]),
                steps=np.int64(result.steps[i]),
                passes=np.int64(result.passes[i]),
                **{k: v[i] for k, v in maps.items()},
            )
    history = pd.DataFrame(result.history)
    history["image"] = [stems[i] for i in history["image"]]
    with atomic_file(attack_loss_file(method, eps)) as f:
        history[["step", "image", "expl_loss", "output_loss", "beta"]].to_csv(f, index=False)
    kept = sum(label == c for label, c in zip(labels, classes, strict=True))
    linf = float((x_adv - x).abs().amax()) * 255
    print(
        f"attack@{method}-{eps:g}: {len(stems)} images, top-1 kept for {kept}/{len(stems)}, "
        f"converged {sum(result.converged)}/{len(stems)}, max L∞ {linf:.3f}/255 (budget {eps:g}/255)"
    )


if __name__ == "__main__":
    run_stage(main)
