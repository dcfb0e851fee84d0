#!/usr/bin/env bash
# Regenerate the report from scratch on the CI profile (small masks/iterations, the three
# sample images) with `dvc exp run -S`, then check what a reader would open.
# Runs inside the venv that .ci/run set up; the clone is throwaway.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1 MPLBACKEND=Agg
# dvc exp run commits the experiment; the CI machine may have no git identity.
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-deep-saliency CI}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-ci@localhost}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-deep-saliency CI}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-ci@localhost}"

CI_PROFILE=(
  rise.N=64
  integrated_gradients.n_steps=8 smoothgrad.nt_samples=4 gradient_shap.n_samples=4
  occlusion.window=56 occlusion.stride=56
  attack.saliency.num_iter=4 attack.input_x_gradient.num_iter=4 attack.integrated_gradients.num_iter=2
  attack.smoothgrad.num_iter=2 attack.rise.num_iter=2 attack.rise.masks=8
  attack.saliency.eval_every=2 attack.input_x_gradient.eval_every=2 attack.integrated_gradients.eval_every=1
  attack.smoothgrad.eval_every=1 attack.rise.eval_every=1
  attack.gradcam.num_iter=4 attack.gradcam.eval_every=2 attack.saliency_smoothed.num_iter=4
  attack.saliency_smoothed.eval_every=2 attack.input_x_gradient_smoothed.num_iter=4
  attack.input_x_gradient_smoothed.eval_every=2 attack.integrated_gradients_smoothed.num_iter=2
  attack.integrated_gradients_smoothed.eval_every=1 untargeted.num_iter=2 untargeted.eval_every=1
  pgd.steps=3 faithfulness.step=3136 integrated_gradients_smoothed.n_steps=8
  sanity.max_depth=3 stability.n_perturb_samples=2
)
rm -rf data/prepared data/masks data/explanations data/attacks reports/figures reports/metrics reports/metrics.json \
  reports/sanity reports/sanity.json reports/stability reports/stability.json reports/report.md reports/index.html \
  data/untargeted reports/untargeted data/metrics reports/attack_loss
dvc exp run --name ci-report $(printf -- '-S %s ' "${CI_PROFILE[@]}")
python .ci/check_report.py
