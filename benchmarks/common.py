"""Shared measuring tools for the benchmark scripts (ratios within one process, never timed tests)."""

from __future__ import annotations

import functools
import resource
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` runs (the least-disturbed run on a shared machine)."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def forward_throughput(
    model, batch_sizes=(1, 2, 4, 8, 16, 32), repeats: int = 5, warmup_s: float = 2.0
) -> tuple[float, int]:
    """Best batched inference throughput (images/s) of ``model`` and the batch size that reached it.

    The CPU is first kept busy for ``warmup_s`` seconds (oneDNN primitive caches, clock
    ramp-up): without it the first batch sizes measured read up to 2× slow.
    """
    h, w = model.input_size
    best = (0.0, 1)
    with torch.inference_mode():
        x = torch.rand(8, 3, h, w, device=model.device).contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < warmup_s:
            model(x)
        for b in batch_sizes:
            x = torch.rand(b, 3, h, w, device=model.device).contiguous(memory_format=torch.channels_last)
            t = best_time(functools.partial(model, x), model.device, repeats)
            best = max(best, (b / t, b))
    return best


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"
