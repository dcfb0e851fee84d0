"""RISE cost as a multiple of the model's own best batched forward cost; with --curve, RISE's accuracy per mask.

    python benchmarks/bench_rise.py [--N 4000] [--chunks 8] [--device auto]
    python benchmarks/bench_rise.py --curve [--device cpu] [--cache /tmp/bench_rise_cache]

Prints the model's best batched forward throughput, RISE time per image (N masks,
224×224, class-specific as the explain stage runs it), its ratio to N ÷ that
throughput (target ≤ 1.10), and peak memory (target ≤ 1.5 GB RSS on CPU).

On a shared machine the throughput of the same code drifts by tens of percent
within minutes, so the ratio is measured twice: (1) one full RISE run against
the best batched throughput measured right after it (over batch sizes 1–32), and (2) interleaved:
N masks in ``--chunks`` parts, each RISE part followed at once by the same number of plain forward passes at
the best batch size, so both sides of the ratio see the same machine state.

``--curve`` measures how many masks each ``rise.sampling`` scheme needs: on the three sample images
and two real photos (scikit-image's astronaut, matplotlib's grace_hopper.jpg) it computes a reference
map from N = 8000 i.i.d. random masks (seed 1000, independent of the schemes' seed 0), then each
scheme's map at N = 250 … 4000 (nested prefixes of one mask set) and prints the Pearson correlation
with the reference, per image, and the N at which each scheme reaches 0.99 on every image (target:
≤ 2000 masks). The class is the model's prediction. Per-mask class probabilities are cached in
``--cache`` (npz), so a rerun only recomputes the maps.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import best_time, device_name, forward_throughput, peak_rss_gb, sync

from deepsaliency import explain, generate_masks, load_img, load_model
from deepsaliency.rise import SAMPLINGS, RiseMasks, auto_batch_size

CURVE_N = (250, 500, 750, 1000, 1500, 2000, 3000, 4000)
REFERENCE_N, REFERENCE_SEED, TARGET_PCC, TARGET_N = 8000, 1000, 0.99, 2000


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


def curve_images(model) -> dict[str, torch.Tensor]:
    """The sample images and two real photos as model inputs (224×224, [0, 1])."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    paths = {p.stem: p for p in sorted(Path("data/images").iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    tmp = Path(tempfile.mkdtemp(prefix="bench_rise_"))
    Image.fromarray(skimage.data.astronaut()).save(tmp / "astronaut.png")
    hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    paths.update(astronaut=tmp / "astronaut.png", grace_hopper=hopper)
    return {stem: load_img(path, model)[1] for stem, path in paths.items()}


def mask_probabilities(model, x, masks: RiseMasks, target: int, batch: int) -> np.ndarray:
    """p_target(x ⊙ M_i) for every mask, (N,) float64 — the only model-dependent part of a RISE map."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(masks), batch):
            m = masks.dense(i, min(i + batch, len(masks)), device=x.device)
            out.append(model((x * m).contiguous(memory_format=torch.channels_last)).softmax(-1)[:, target].cpu())
    return torch.cat(out).double().numpy()


def cached_probabilities(cache: Path, stem: str, model, x, masks: RiseMasks, target: int, batch: int) -> np.ndarray:
    path = cache / f"{stem}_{masks.sampling}_s{masks.s}_seed{masks.seed}_N{len(masks)}_t{target}.npz"
    if path.exists():
        return np.load(path)["p"]
    t = time.perf_counter()
    p = mask_probabilities(model, x, masks, target, batch)
    np.savez(path, p=p)
    print(f"  {stem}: {len(masks)} {masks.sampling} masks in {time.perf_counter() - t:.0f} s", flush=True)
    return p


def prefix_maps(masks: RiseMasks, p: np.ndarray, ns, chunk: int = 250) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Σ_{i<n} p_i·M_i and Σ_{i<n} M_i for each n in ``ns`` (float64, (H·W,) each)."""
    h, w = masks.input_size
    spm, sm, out = np.zeros(h * w), np.zeros(h * w), {}
    for i in range(0, max(ns), chunk):
        m = masks.dense(i, i + chunk).view(-1, h * w).double().numpy()
        spm += p[i : i + chunk] @ m
        sm += m.sum(0)
        if i + chunk in ns:
            out[i + chunk] = (spm.copy(), sm.copy())
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def curve(args) -> None:
    torch.set_num_threads(2)
    model = load_model(device=args.device)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images = curve_images(model)
    images = {stem: images[stem] for stem in args.images} if args.images else images
    global CURVE_N, REFERENCE_N
    CURVE_N, REFERENCE_N = tuple(sorted(args.curve_n)), args.reference_n
    table, noise = curve_table(model, images, cache, args)
    print_curve(table, noise, device_name(model.device))


def curve_table(
    model, images: dict[str, torch.Tensor], cache: Path, args
) -> tuple[dict[tuple[str, str], dict[str, list[float]]], dict[str, float]]:
    """Per (scheme, estimator) and image, the Pearson r with the reference at each N; per image the noise ratio."""
    size = model.input_size
    ref_masks = generate_masks(N=REFERENCE_N, s=8, p1=0.5, input_size=size, seed=REFERENCE_SEED)
    schemes = {
        sm: generate_masks(N=max(CURVE_N), s=8, p1=0.5, input_size=size, seed=0, sampling=sm) for sm in args.schemes
    }
    # (scheme, estimator) → image → [PCC per N]. "plain" is RISE's Σ p·M/(N·p1); "centred" subtracts the
    # sample mean probability (Σ (p − p̄)·M), the control variate the issue suggests, shown for comparison.
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    noise: dict[str, float] = {}  # image → noise/signal variance of N_ref/2 random masks
    for stem, x in images.items():
        with torch.inference_mode():
            target = int(model(x).argmax())
        p_ref = cached_probabilities(cache, stem, model, x, ref_masks, target, args.batch)
        halves = prefix_maps(ref_masks, p_ref, (REFERENCE_N // 2, REFERENCE_N))
        ref = halves[REFERENCE_N][0] / (REFERENCE_N * ref_masks.p1)
        # The reference is noisy too. Two independent half-references give the noise-to-signal variance
        # ratio of N_ref/2 random masks, v_h = 1/r_hh − 1 (r = v_S / (v_S + v_noise) for two independent
        # estimates); the full reference has v_h/2, so no map can correlate with it above 1/√(1 + v_h/2).
        first = halves[REFERENCE_N // 2][0]
        noise[stem] = 1 / pearson(first, halves[REFERENCE_N][0] - first) - 1
        for sm, masks in schemes.items():
            p = cached_probabilities(cache, stem, model, x, masks, target, args.batch)
            for n, (spm, sm_sum) in sorted(prefix_maps(masks, p, CURVE_N).items()):
                table.setdefault((sm, "plain"), {}).setdefault(stem, []).append(pearson(spm, ref))
                centred = spm - p[:n].mean() * sm_sum
                table.setdefault((sm, "centred"), {}).setdefault(stem, []).append(pearson(centred, ref))
    return table, noise


def print_curve(table: dict[tuple[str, str], dict[str, list[float]]], noise: dict[str, float], device: str) -> None:
    """The tables ``--curve`` prints: r per N and image, the mask count each map is worth, the worst image."""
    print(
        f"\nPearson r with the reference map (N = {REFERENCE_N} random masks, seed {REFERENCE_SEED}), "
        f"class = the model's prediction, s = 8, p1 = 0.5, {device}"
    )
    for stem, v_h in noise.items():
        half = REFERENCE_N // 2
        room = 1 / (TARGET_PCC**2 * (1 + v_h * half / 8000)) - 1
        need = f"{half * v_h / room:.0f}" if room > 0 else "no number of"
        print(
            f"{stem}: r between two {half}-mask random halves {1 / (1 + v_h):.3f}; ceiling r vs this reference "
            f"{1 / math.sqrt(1 + v_h / 2):.4f}, vs an 8000-mask one {1 / math.sqrt(1 + v_h * half / 8000):.4f} "
            f"(where {need} random masks reach {TARGET_PCC})"
        )
    header = "scheme / estimator / image".ljust(38) + "".join(f"{n:>8}" for n in CURVE_N) + "   N for r ≥ 0.99"
    print(header)
    print("-" * len(header))
    for (sm, est), rows in table.items():
        for stem, pccs in rows.items():
            reach = next((n for n, r in zip(CURVE_N, pccs, strict=True) if r >= TARGET_PCC), None)
            print(
                f"{sm} / {est} / {stem}".ljust(38)
                + "".join(f"{r:8.4f}" for r in pccs)
                + f"   {reach if reach else f'> {max(CURVE_N)}'}"
            )
        for stem, pccs in rows.items():
            # Each map's own noise/signal v from r = 1/√((1 + v)(1 + v_ref)), shown as the number of i.i.d.
            # masks with that noise (v ∝ 1/N for them). One reference, one seed: a rough figure.
            v_h, half = noise[stem], REFERENCE_N // 2
            v = [1 / (r**2 * (1 + v_h / 2)) - 1 for r in pccs]
            equiv = [half * v_h / vi if vi > 0 else math.inf for vi in v]
            print(
                f"  {stem}: ≈ random masks".ljust(38)
                + "".join(f"{e:8.0f}" for e in equiv)
                + f"   (×{equiv[-1] / CURVE_N[-1]:.1f} at N = {CURVE_N[-1]})"
            )
        worst = [min(col) for col in zip(*rows.values(), strict=True)]
        reach = next((n for n, r in zip(CURVE_N, worst, strict=True) if r >= TARGET_PCC), None)
        verdict = "meets" if reach and reach <= TARGET_N else "misses"
        print(
            f"{sm} / {est} / worst image".ljust(38)
            + "".join(f"{r:8.4f}" for r in worst)
            + f"   {reach if reach else f'> {max(CURVE_N)}'}  → {verdict} the target "
            f"(r ≥ {TARGET_PCC} on every image with ≤ {TARGET_N} masks)\n"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=4000)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--curve", action="store_true", help="PCC vs N per sampling scheme instead of the timing")
    ap.add_argument("--schemes", nargs="+", default=list(SAMPLINGS), choices=SAMPLINGS)
    ap.add_argument("--cache", default="/tmp/bench_rise_cache")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", nargs="+", help="only these stems (default: all five)")
    ap.add_argument("--reference-n", type=int, default=REFERENCE_N, help="random masks of the reference map")
    ap.add_argument("--curve-n", type=int, nargs="+", default=list(CURVE_N), help="N checkpoints (multiples of 250)")
    args = ap.parse_args()
    if args.curve:
        curve(args)
        return

    model = load_model(device=args.device)
    _, x = load_img("data/images/chelsea.png", model)
    masks = generate_masks(N=args.N, s=8, p1=0.5, input_size=model.input_size, seed=0)
    t0 = time.perf_counter()
    batch = auto_batch_size(model, model.input_size)
    t_probe = time.perf_counter() - t0
    # RISE first, so that the peak memory read next is RISE's (with its batch-size probe), not the
    # throughput sweep's large batches.
    t_rise = best_time(
        lambda: explain(model, x, masks, batch_size=batch, target=285), model.device, repeats=1, warmup=0
    )
    rss = peak_rss_gb()
    rate, best_batch = forward_throughput(model)
    floor = args.N / rate

    bounds = [round(k * args.N / args.chunks) for k in range(args.chunks + 1)]
    t_parts, t_plain = 0.0, 0.0
    for i, j in itertools.pairwise(bounds):
        part = RiseMasks(masks.grids[i:j], masks.shifts[i:j], masks.p1, masks.input_size)
        t_parts += best_time(
            functools.partial(explain, model, x, part, batch_size=batch, target=285), model.device, repeats=1, warmup=0
        )
        t_plain += plain_forwards(model, j - i, best_batch)

    print(f"device: {device_name(model.device)}")
    print(f"best batched forward throughput: {rate:.1f} img/s (batch {best_batch})")
    print(f"RISE N={args.N}, 224x224, batch {batch} (auto, probe {t_probe:.2f} s): {t_rise:.2f} s/image")
    print(f"ratio, one run vs best throughput:  {t_rise:.2f} / {floor:.2f} = {t_rise / floor:.3f}  (target <= 1.10)")
    print(
        f"ratio, interleaved in {args.chunks} parts:    {t_parts:.2f} / {t_plain:.2f} = {t_parts / t_plain:.3f}"
        "  (target <= 1.10)"
    )
    if model.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.2f} GB")
    print(f"peak RSS during RISE (model, probe and run): {rss:.2f} GB  (target <= 1.5 GB)")
    print(f"peak RSS after the throughput sweep (batches up to 32): {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
