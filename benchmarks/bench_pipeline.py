"""The whole pipeline's wall time on the defaults, per stage, and a no-op ``dvc repro`` (issue 6).

    python benchmarks/bench_pipeline.py [--keep DIR]

Copies the repository's tracked files to a temporary folder (a clean clone's state:
no DVC cache, no outputs), runs ``dvc repro`` there, and prints every stage's wall
time (from DVC's "Running stage" lines), the total, and the time of a second,
no-op ``dvc repro``. Targets: default run ≤ 10 min on 2 CPU cores, no-op ≤ 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_tracked(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel != "dvc.lock":
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    subprocess.run(["dvc", "config", "core.no_scm", "true"], cwd=dst, check=True, capture_output=True)


def timed_repro(cwd: Path) -> tuple[list[tuple[str, float]], float]:
    """(stage, seconds) in run order and the total, for one ``dvc repro``."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", MPLBACKEND="Agg")
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    stages, current, t_stage = [], None, start
    assert proc.stdout is not None  # stdout=PIPE above
    for line in proc.stdout:
        if line.startswith("Running stage '"):
            now = time.perf_counter()
            if current:
                stages.append((current, now - t_stage))
            current, t_stage = line.split("'")[1], now
    if proc.wait() != 0:
        sys.exit(f"dvc repro failed in {cwd}")
    end = time.perf_counter()
    if current:
        stages.append((current, end - t_stage))
    return stages, end - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="run in this (empty) folder and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="deepsaliency-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    copy_tracked(work)
    stages, total = timed_repro(work)
    for name, seconds in stages:
        print(f"{name:<32} {seconds:7.1f} s")
    print(
        f"{'dvc repro (defaults, clean)':<32} {total:7.1f} s = {total / 60:.1f} min  (target <= 10 min on 2 CPU cores)"
    )
    t = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=work, check=True, capture_output=True)
    print(f"{'dvc repro (no-op)':<32} {time.perf_counter() - t:7.1f} s  (target <= 5 s)")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
