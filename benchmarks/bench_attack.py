"""Speed of the explanation attack, in one process (issue 6).

Prints, for the embedded EfficientNet-Lite0 on the sample images:

* one forward+backward of the original network (the unit everything is compared to);
* one saliency double backward (∂/∂x of a function of ∇_x f): naive (autograd's
  softplus, native grouped-conv double backward; the embedded model's batch norms are folded
  into its convolutions at load time), with only the convolution swap
  (:mod:`deepsaliency.nn.fastgrad`), fully fast with the softplus kernels run eagerly, and fully fast
  as the attack runs it (``attack_network``: softplus kernels compiled by ``torch.compile``);
* one attack iteration per method (objective, backward, Adam step) and its ratio
  to the forward+backward, and — for methods that run the model on many inputs
  (IG steps, SmoothGrad samples, RISE masks) — to the first-order cost of the
  explanation itself (same inputs, no double backward; for RISE, which needs no
  gradient, that is its forward passes only), and the same iteration with eager softplus kernels.

Timings are the minimum over interleaved repeats (the machine may be shared).

Usage: python benchmarks/bench_attack.py [--batch 1] [--threads 2] [--repeats 5] [--clock wall|cpu]
       [--methods saliency,...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepsaliency import generate_masks, load_img, load_model
from deepsaliency.attack import ATTACK_METHOD_DEFAULTS, attack_network
from deepsaliency.attack.manipulation import map_mse
from deepsaliency.attack.objective import objective_terms
from deepsaliency.differentiable import DIFF_METHODS, differentiable_attribution, unit_sum_map
from deepsaliency.nn import fast_double_backward, softplus_activations

ROOT = Path(__file__).resolve().parents[1]


CLOCK = time.perf_counter


def interleaved_min(funcs: dict, repeats: int) -> dict[str, float]:
    """Minimum time of each function, run in turn ``repeats`` times after one warm-up each."""
    for f in funcs.values():
        f()
    best = {k: float("inf") for k in funcs}
    for _ in range(repeats):
        for k, f in funcs.items():
            t = CLOCK()
            f()
            best[k] = min(best[k], CLOCK() - t)
    return best


def double_backward_table(model, x: torch.Tensor, cls: torch.Tensor, repeats: int) -> float:
    """Print the double-backward timings; return one forward+backward (the unit), seconds."""

    def fwd_bwd():
        xx = x.detach().requires_grad_()
        model(xx).gather(1, cls[:, None]).sum().backward()

    def double_backward():
        xx = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(model(xx).gather(1, cls[:, None]).sum(), xx, create_graph=True)
        (unit_sum_map(g.abs()) ** 2).sum().backward()

    t = {"fwd+bwd": interleaved_min({"f": fwd_bwd}, repeats)["f"]}
    with softplus_activations(model, 10.0, fused=False):
        t["naive double backward"] = interleaved_min({"f": double_backward}, max(2, repeats // 2))["f"]
        with fast_double_backward(model):
            t["fast convolutions only"] = interleaved_min({"f": double_backward}, repeats)["f"]
    with attack_network(model, 10.0, compiled=False):
        t["fast, eager activations"] = interleaved_min({"f": double_backward}, repeats)["f"]
    with attack_network(model, 10.0):  # the attack's default: compiled activation kernels
        t["fast double backward"] = interleaved_min({"f": double_backward}, repeats)["f"]
    unit = t["fwd+bwd"]
    for k, v in t.items():
        print(f"{k:28s} {v * 1e3:8.1f} ms   {v / unit:5.2f}× fwd+bwd")
    return unit


def iteration_row(model, x: torch.Tensor, cls: torch.Tensor, method: str, masks, repeats: int, unit: float) -> None:
    """Print one attack iteration's time for ``method`` against the unit and its own first-order cost."""
    params = dict(ATTACK_METHOD_DEFAULTS[method])
    if method == "rise":
        params["masks"] = masks
    smooth = method != "rise"
    xa = x.detach().clone().requires_grad_()
    opt = torch.optim.Adam([xa], lr=1e-3)
    everyone = torch.arange(len(x))
    with torch.no_grad():
        h_t, p_0 = unit_sum_map(torch.rand(len(x), 1, *x.shape[-2:])), model(x).softmax(-1)

    def iteration():
        opt.zero_grad(set_to_none=True)
        h, p = objective_terms(model, xa, method, cls, params)
        e, o = map_mse(h_t)(h, everyone), ((p - p_0) ** 2).mean(1)
        (1e11 * e + 1e6 * o).sum().backward()
        opt.step()

    def own_fwd_bwd():  # the explanation's first-order cost on the original network
        xx = x.detach().requires_grad_(smooth)
        differentiable_attribution(model, xx, method, cls, create_graph=False, **params)

    own = interleaved_min({"f": own_fwd_bwd}, repeats)["f"]
    with attack_network(model, 10.0 if smooth else None, fast=smooth, compiled=False):
        eager = interleaved_min({"f": iteration}, repeats)["f"]
    with attack_network(model, 10.0 if smooth else None, fast=smooth):
        it = interleaved_min({"f": iteration}, repeats)["f"]
    shown = {k: v for k, v in params.items() if k != "masks"}
    print(
        f"{method:28s} {it * 1e3:8.1f}   {it / unit:8.2f}   {own * 1e3:14.1f}   {it / own:5.2f}   "
        f"{eager / unit:11.2f}   {shown}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1, help="images per call (1–3: chelsea, coffee, rocket)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default=",".join(DIFF_METHODS))
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu = this process's CPU time: robust on a busy machine, use with --threads 1",
    )
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    names = ["chelsea.png", "coffee.png", "rocket.jpg"][: args.batch]
    x = torch.cat([load_img(ROOT / "data" / "images" / n, model)[1] for n in names])
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        cls = model(x).argmax(-1)
    masks = generate_masks(N=2000, s=8, p1=0.5, input_size=model.input_size, seed=0)
    print(
        f"EfficientNet-Lite0, batch {len(x)}, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"min of {args.repeats} interleaved runs\n"
    )
    unit = double_backward_table(model, x, cls, args.repeats)
    print(
        f"\n{'attack iteration':28s} {'ms':>8s}   {'×fwd+bwd':>8s}   {'own fwd+bwd ms':>14s}   {'×own':>5s}"
        f"   {'×fwd+bwd eager':>11s}   attack params"
    )
    for method in args.methods.split(","):
        iteration_row(model, x, cls, method, masks, args.repeats, unit)


if __name__ == "__main__":
    main()
