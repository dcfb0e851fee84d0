"""deep-saliency: how far can an image classifier's explanations be trusted?

The library behind the DVC pipeline; every stage calls these functions.
"""
from .attack import AttackResult, perform_attack, pgd_attack, run_attack
from .data import load_img
from .diffexplain import explanation, normalized_map
from .explain import METHODS, attribute, reduce_map
from .metrics import compare_maps, compute_metrics, deletion, insertion
from .models import Model, load_model
from .plots import plot_attack, plot_comparison, plot_methods, plot_transfer_matrix
from .report import write_report
from .rise import RiseMasks, explain, generate_masks

__all__ = [
    "Model", "load_model", "load_img",
    "generate_masks", "RiseMasks", "explain", "attribute", "reduce_map", "METHODS",
    "perform_attack", "run_attack", "AttackResult", "pgd_attack", "explanation", "normalized_map",
    "compute_metrics", "compare_maps", "deletion", "insertion",
    "plot_comparison", "plot_methods", "plot_attack", "plot_transfer_matrix", "write_report",
]
