"""RISE cost as a multiple of the model's own best batched forward cost.

    python benchmarks/bench_rise.py [--N 4000] [--chunks 8] [--device auto]

Prints the model's best batched forward throughput, RISE time per image (N masks,
224×224, class-specific as the explain stage runs it), its ratio to N ÷ that
throughput (target ≤ 1.10), and peak memory (target ≤ 1.5 GB RSS on CPU).

On a shared machine the throughput of the same code drifts by tens of percent
within minutes, so the ratio is measured twice: (1) one full RISE run against
the best batched throughput measured right after it (over batch sizes 1–32), and (2) interleaved: N masks in ``--chunks`` parts, each RISE part
followed at once by the same number of plain forward passes at the best batch
size, so both sides of the ratio see the same machine state.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import best_time, device_name, forward_throughput, peak_rss_gb, sync
from deepsaliency import explain, generate_masks, load_img, load_model
from deepsaliency.rise import RiseMasks, auto_batch_size


def plain_forwards(model, count: int, batch: int) -> float:
    """Seconds for ``count`` images through the model in batches of ``batch`` (random input)."""
    h, w = model.input_size
    x = torch.rand(batch, 3, h, w, device=model.device).contiguous(memory_format=torch.channels_last)
    sync(model.device)
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, count, batch):
            model(x[: min(batch, count - i)])
    sync(model.device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=4000)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    model = load_model(device=args.device)
    _, x = load_img("data/images/chelsea.png", model)
    masks = generate_masks(N=args.N, s=8, p1=0.5, input_size=model.input_size, seed=0)
    t0 = time.perf_counter()
    batch = auto_batch_size(model, model.input_size)
    t_probe = time.perf_counter() - t0
    # RISE first, so that the peak memory read next is RISE's (with its batch-size probe), not the
    # throughput sweep's large batches.
    t_rise = best_time(lambda: explain(model, x, masks, batch_size=batch, target=285), model.device, repeats=1, warmup=0)
    rss = peak_rss_gb()
    rate, best_batch = forward_throughput(model)
    floor = args.N / rate

    bounds = [round(k * args.N / args.chunks) for k in range(args.chunks + 1)]
    t_parts, t_plain = 0.0, 0.0
    for i, j in zip(bounds[:-1], bounds[1:]):
        part = RiseMasks(masks.grids[i:j], masks.shifts[i:j], masks.p1, masks.input_size)
        t_parts += best_time(lambda: explain(model, x, part, batch_size=batch, target=285), model.device, repeats=1, warmup=0)
        t_plain += plain_forwards(model, j - i, best_batch)

    print(f"device: {device_name(model.device)}")
    print(f"best batched forward throughput: {rate:.1f} img/s (batch {best_batch})")
    print(f"RISE N={args.N}, 224x224, batch {batch} (auto, probe {t_probe:.2f} s): {t_rise:.2f} s/image")
    print(f"ratio, one run vs best throughput:  {t_rise:.2f} / {floor:.2f} = {t_rise / floor:.3f}  (target <= 1.10)")
    print(f"ratio, interleaved in {args.chunks} parts:    {t_parts:.2f} / {t_plain:.2f} = {t_parts / t_plain:.3f}  (target <= 1.10)")
    if model.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.2f} GB")
    print(f"peak RSS during RISE (model, probe and run): {rss:.2f} GB  (target <= 1.5 GB)")
    print(f"peak RSS after the throughput sweep (batches up to 32): {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
