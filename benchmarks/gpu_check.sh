#!/usr/bin/env bash
# The CUDA path end to end in ≤ 5 minutes (issue 17 §5, issue 14 "CUDA"): run on a machine with an NVIDIA GPU
# from the repository root, after the README's set-up command:
#     bash benchmarks/gpu_check.sh
# Prints the device, the attack-step ratios (bench_attack), RISE's cost ratio (bench_rise), and a small-profile
# `dvc repro` with model.device=cuda in a throwaway copy, with per-stage seconds (bench_pipeline's timer).
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1 MPLBACKEND=Agg PYTHONWARNINGS=ignore
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU path"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
echo "== attack step (ratio to one forward+backward), batch 3 =="
timeout 120 python benchmarks/bench_attack.py --batch 3 --repeats 3 --methods saliency,input_x_gradient,integrated_gradients,smoothgrad,rise
echo "== RISE, 4000 masks, per image =="
timeout 60 python benchmarks/bench_rise.py --N 4000 --chunks 4 --device cuda
echo "== small-profile dvc repro on CUDA =="
work=$(mktemp -d)
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"
cd "$work" && rm -f dvc.lock && dvc config core.no_scm true
python - <<'PY'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["model"]["device"] = "cuda"
p["rise"]["N"] = 500
p["compute"]["batch_size"] = 8
for m, cfg in p["attack"].items():
    if isinstance(cfg, dict) and "num_iter" in cfg:
        cfg["num_iter"] = min(cfg["num_iter"], 20)
p["sanity"]["max_depth"] = 3
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
timeout 240 python - <<'PY'
import sys, time
sys.path.insert(0, "benchmarks")
from bench_pipeline import timed_repro
from pathlib import Path
stages, total = timed_repro(Path("."))
for name, s in stages:
    print(f"{name:<36} {s:7.1f} s")
print(f"dvc repro on CUDA (small profile): {total:.1f} s")
PY
