"""What more attack steps buy (issue 15): r(adv, target) of the manipulation attack at one budget, per setting.

    python benchmarks/bench_convergence.py saliency:150 saliency:600 integrated_gradients:40 \\
        integrated_gradients:160 integrated_gradients:160:n_steps=2 integrated_gradients:40:lr=0.01

Each argument is ``method:num_iter`` with optional ``:key=value`` overrides of ``attack.<method>`` (lr, n_steps,
nt_samples, masks). Runs :func:`deepsaliency.attack.run_attack` on the workspace's prepared images (``dvc repro
prepare explain`` first) toward the next image's map of the explain stage (``attack.target_image: next``) at
``--eps`` /255 with ``attack.tol``, and prints per setting: the wall time; per image whether it converged, its
steps and network passes (:class:`~deepsaliency.attack.AttackResult`: a load-independent cost) and the relative
improvement of its best evaluated loss over the last 20 % of the steps it ran (what the stopping rule compares
with ``attack.tol``, besides the iterates being at rest: :mod:`deepsaliency.attack.loop`); and the Pearson r
between the explain stage's map of ``x_adv`` and the target map (per image and mean). 2 torch threads.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from deepsaliency.artifacts import MASKS, read_explanation, read_prepared
from deepsaliency.attack import run_attack
from deepsaliency.attribution import explain_images
from deepsaliency.experiments import attack_explanation_params, attack_run_params, choose_targets, method_kwargs
from deepsaliency.metrics.similarity import pearson
from deepsaliency.models import load_model
from deepsaliency.params import load_params
from deepsaliency.rise import RiseMasks


def setting(spec: str) -> tuple[str, dict]:
    method, steps, *pairs = spec.split(":")
    overrides: dict = {"num_iter": int(steps)}
    for pair in pairs:
        key, value = pair.split("=", 1)
        overrides[key] = int(value) if value.isdigit() else float(value)
    return method, overrides


def last_window_gain(evaluations: list[dict], image: int) -> float:
    """(best(t − ⌈0.2·t⌉) − best(t)) / |best(t − ⌈0.2·t⌉)| at the image's last evaluation t (best = lowest loss
    so far, as the attack's bookkeeping keeps it; class-keeping is ignored here)."""
    rows = sorted((e["step"], e["loss"]) for e in evaluations if e["image"] == image)
    best = np.minimum.accumulate([loss for _, loss in rows])
    t = rows[-1][0]
    then = best[max(k for k, (step, _) in enumerate(rows) if step <= t - math.ceil(0.2 * t))]
    return float((then - best[-1]) / abs(then)) if then else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="method:num_iter[:key=value...]")
    ap.add_argument("--eps", type=float, default=8.0, help="L∞ budget in /255 units")
    args = ap.parse_args()
    torch.set_num_threads(2)
    params = load_params()
    model = load_model(**params["model"])
    manifest, x = read_prepared()
    stems, classes = list(manifest["stem"]), [int(c) for c in manifest["class_idx"]]
    targets = choose_targets(stems, "next")
    for spec in args.settings:
        method, overrides = setting(spec)
        target_maps = torch.as_tensor(np.stack([read_explanation(method, t)["map"] for t in targets]))
        masks = RiseMasks.load(MASKS) if method == "rise" else None  # the masks stage's, as stages/attack.py
        run = attack_run_params(params, method) | attack_explanation_params(params, method, masks) | overrides
        run["eps"] = args.eps / 255
        run["lr_end"] = min(run["lr_end"], run["lr"])
        start = time.perf_counter()
        result = run_attack(model, x, method, target_map=target_maps, **run)
        wall = time.perf_counter() - start
        maps = explain_images(
            model, result.x_adv.detach(), method, stems, classes, **method_kwargs(params, method, model, masks)
        )
        r = [pearson(m.numpy(), t.numpy()) for (_, m), t in zip(maps, target_maps, strict=True)]
        gains = [last_window_gain(result.evaluations, i) for i in range(len(stems))]
        print(
            f"{spec:45s} {wall:7.1f} s  converged {sum(result.converged)}/{len(stems)} "
            f"(steps {', '.join(map(str, result.steps))}; passes {', '.join(map(str, result.passes))})  "
            f"last-20% gain {', '.join(f'{g:.2%}' for g in gains)}  "
            f"r(adv, target) {', '.join(f'{v:.3f}' for v in r)}  mean {np.mean(r):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
