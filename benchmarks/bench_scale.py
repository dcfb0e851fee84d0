"""Seconds per image and peak memory per stage as the image set grows, and Ray against local (issue 14).

    python benchmarks/bench_scale.py [--sizes 8 32 128] [--ray-images 128] [--keep DIR]

For each size n, writes a real-photo ImageFolder of n images (deepsaliency.datasets: the five labelled
photos, enlarged by seeded crops and flips), copies the stages and params into a fresh project, and runs
prepare → masks → explain (saliency, integrated_gradients, rise) → attack (saliency, one budget) →
metrics_images → metrics there as subprocesses with 2 torch threads and the same params at every size, under
``/usr/bin/time`` for each stage's peak RSS. It prints, per size, seconds per image (stage wall time summed,
÷ n) and each stage's peak RSS. Targets: s/img at the largest size ≤ 1.1 × at the smallest, peak RSS ≤ 1.2 ×.

Then it times the explain stage (integrated_gradients) on ``--ray-images`` images with the ``ray`` backend
(2 workers × 1 torch thread) against ``local`` with 1 thread, and prints the images/s ratio (target ≥ 1.6).
Both are whole stage runs, start-up included (Ray's ≈ 10 s more: ``ray.init``, the actors' model loads), so the
ratio grows with the number of images: 1.24 at 32, 1.75 at 128 (README, Running a study). Ratios come from one
run on one machine; the absolute seconds are not a result on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["saliency", "integrated_gradients", "rise"]
#: The same at every size; small enough that 128 images finish in minutes on 2 cores.
PROFILE = {
    "prepare": {"images": "data/images"},
    "rise": {"N": 200},
    "explain": {"methods": METHODS},
    "attack": {"methods": ["saliency"], "eps": [8], "saliency": {"num_iter": 20}},
    "report": {"rank_eps": None},
    "compute": {"batch_size": 8, "threads": 2},
}
STAGES = [
    ["stages/prepare.py"],
    ["stages/masks.py"],
    *[["stages/explain.py", m] for m in METHODS],
    ["stages/attack.py", "saliency", "8"],
    ["stages/metrics_images.py"],
    ["stages/metrics.py"],
]


def make_project(work: Path, n: int, compute: dict | None = None) -> Path:
    """A project folder with ``n`` real photos as an ImageFolder, the stages and the benchmark's params."""
    from deepsaliency.datasets import PHOTOS, make_real_photo_folder

    project = work / f"n{n}"
    shutil.copytree(ROOT / "stages", project / "stages")
    copies = -(-n // len(PHOTOS))
    folder = make_real_photo_folder(project / "data" / "images", copies_per_photo=copies, seed=0)
    for rel in folder["file"].iloc[n:]:  # keep exactly n images
        (project / "data" / "images" / rel).unlink()
    for class_dir in (project / "data" / "images").iterdir():  # a class left without images is an input error
        if class_dir.is_dir() and not any(class_dir.iterdir()):
            class_dir.rmdir()
    # nested keys merged, lists replaced (as tests/dvc_project.py builds its profile)
    params = OmegaConf.to_container(OmegaConf.merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PROFILE))
    params = OmegaConf.to_container(OmegaConf.merge(params, {"compute": compute or {}}))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def timed_stage(project: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one stage script run as a subprocess."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed in {project}:\n{proc.stderr[-2000:]}")
    match = re.search(r"MAXRSS (\d+)", proc.stderr)
    return wall, int(match.group(1)) / 1e6 if match else float("nan")


def scale(work: Path, sizes: list[int]) -> None:
    rows = {}
    for n in sizes:
        project = make_project(work, n)
        rows[n] = {" ".join(s): timed_stage(project, s) for s in STAGES}
        total = sum(w for w, _ in rows[n].values())
        print(f"n = {n:4d}: {total / n:6.2f} s/img  ({total:.0f} s in all)", flush=True)
    names = [" ".join(s) for s in STAGES]
    print(f"\n{'stage':<40}" + "".join(f"{f'RSS n={n} (GB)':>16}" for n in sizes))
    for name in names:
        print(f"{name:<40}" + "".join(f"{rows[n][name][1]:16.2f}" for n in sizes))
    small, large = sizes[0], sizes[-1]
    spi = [sum(w for w, _ in rows[n].values()) / n for n in (small, large)]
    rss = [max(r for _, r in rows[n].values()) for n in (small, large)]
    print(f"\ns/img at n={large} ÷ at n={small}: {spi[1] / spi[0]:.2f} (target ≤ 1.1)")
    print(f"peak RSS at n={large} ÷ at n={small}: {rss[1] / rss[0]:.2f} (target ≤ 1.2)")


def ray_speedup(work: Path, n: int) -> None:
    speeds = {}
    for backend, compute in (
        ("local", {"backend": "local", "threads": 1, "batch_size": 1}),
        ("ray", {"backend": "ray", "workers": 2, "threads": 1, "batch_size": 1}),
    ):
        project = make_project(work / backend, n, compute)
        timed_stage(project, ["stages/prepare.py"])
        wall, _ = timed_stage(project, ["stages/explain.py", "integrated_gradients"])
        speeds[backend] = n / wall
        print(f"explain integrated_gradients, {backend:5s}: {speeds[backend]:.2f} img/s ({n} images, {wall:.1f} s)")
    print(f"ray (2 workers × 1 thread) ÷ local (1 thread): {speeds['ray'] / speeds['local']:.2f} (target ≥ 1.6)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[8, 32, 128], help="none: only the Ray comparison")
    ap.add_argument("--ray-images", type=int, default=128, help="images for the Ray comparison (0 = skip)")
    ap.add_argument("--keep", type=Path, help="work in this (empty) folder and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="deepsaliency-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.sizes:
        scale(work, sorted(args.sizes))
    if args.ray_images:
        ray_speedup(work, args.ray_images)
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
