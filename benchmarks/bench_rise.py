"""RISE cost as a multiple of the model's own best batched forward cost.

    python benchmarks/bench_rise.py [--N 4000] [--device auto]

Prints the model's best batched forward throughput, RISE time per image (N masks,
224×224, class-specific as the explain stage runs it), its ratio to N ÷ that
throughput (target ≤ 1.10), and peak memory (target ≤ 1.5 GB RSS on CPU).
"""
from __future__ import annotations

import argparse
import time

import torch

from common import best_time, device_name, forward_throughput, peak_rss_gb, sync
from deepsaliency import explain, generate_masks, load_img, load_model
from deepsaliency.rise import auto_batch_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=4000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    model = load_model(device=args.device)
    _, x = load_img("data/images/chelsea.png", model)
    masks = generate_masks(N=args.N, s=8, p1=0.5, input_size=model.input_size, seed=0)
    rate, best_batch = forward_throughput(model)
    t0 = time.perf_counter()
    batch = auto_batch_size(model, model.input_size)
    t_probe = time.perf_counter() - t0
    sync(model.device)
    t_rise = best_time(lambda: explain(model, x, masks, batch_size=batch, target=285), model.device, repeats=1, warmup=0)
    # Measured again after RISE, the best of both counts: on a shared machine the reference
    # must not be the slower one, or the ratio flatters RISE.
    rate, best_batch = max((rate, best_batch), forward_throughput(model))
    floor = args.N / rate
    print(f"device: {device_name(model.device)}")
    print(f"best batched forward throughput: {rate:.1f} img/s (batch {best_batch})")
    print(f"RISE N={args.N}, 224x224, batch {batch} (auto, probe {t_probe:.2f} s): {t_rise:.2f} s/image")
    print(f"ratio RISE / (N / throughput) = {t_rise:.2f} / {floor:.2f} = {t_rise / floor:.3f}  (target <= 1.10)")
    if model.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.2f} GB")
    print(f"peak RSS: {peak_rss_gb():.2f} GB  (target <= 1.5 GB)")


if __name__ == "__main__":
    main()
