"""Metrics: how similar saliency maps are, how visible attacks are, how faithful maps are.

* :mod:`.maps` — one map checked and scaled (by its maximum, or min–max);
* :mod:`.similarity` — map comparison (SSIM, MSE, PSNR on maps rescaled min–max; Pearson, Spearman,
  top-k intersection, centre-of-mass shift on maps divided by their maximum);
* :mod:`.attack_quality` — top-1 kept, probability change, perturbation norms,
  image PSNR/SSIM, PGD success rate;
* :mod:`.faithfulness` — deletion and insertion AUC (Petsiuk et al. 2018), with the deleted pixels'
  substrates in :mod:`.substrates`;
* :mod:`.statistics` — bootstrap confidence intervals, paired Wilcoxon tests and ranks over images;
* :mod:`.load` — the stage's inputs (listed runs only); :mod:`.tables` — its per-image tables;
  :mod:`.summary` — metrics.json (CIs, ranks, manipulability curves); :mod:`.aggregates` — the report's tables
  (leaderboard numbers, transfer matrices, summaries; the report computes nothing);
  :mod:`.defence_table` — the smoothing defences against the attack and the stability columns;
  :mod:`.untargeted_summary` — the untargeted attack's summary (Ghorbani et al. 2019).
"""

from .attack_quality import attack_quality, image_psnr, image_ssim, perturbation_l2, perturbation_linf, success_rate
from .faithfulness import Curve, deletion, insertion, random_map
from .similarity import (
    PSNR_CAP,
    center_of_mass_shift,
    compare_maps,
    compute_metrics,
    min_max_map,
    mse,
    normalize_map,
    pearson,
    psnr,
    spearman,
    ssim,
    top_k_intersection,
)

__all__ = [
    "compute_metrics",
    "compare_maps",
    "normalize_map",
    "min_max_map",
    "ssim",
    "mse",
    "psnr",
    "pearson",
    "spearman",
    "top_k_intersection",
    "center_of_mass_shift",
    "PSNR_CAP",
    "attack_quality",
    "perturbation_l2",
    "perturbation_linf",
    "image_psnr",
    "image_ssim",
    "success_rate",
    "deletion",
    "insertion",
    "random_map",
    "Curve",
]
