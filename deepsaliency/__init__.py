"""deep-saliency: how far can an image classifier's explanations be trusted?

The library behind the DVC pipeline; every stage calls these functions.

Public names are imported on first use (PEP 562): a stage that only explains
does not pay for matplotlib, pandas and scipy at start-up, and each of the
pipeline's 17 stages is a fresh process.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "attack": ("AttackResult", "perform_attack", "pgd_attack", "run_attack", "untargeted_attack"),
    "data": ("load_img",),
    "differentiable": ("differentiable_attribution", "explanation", "normalized_map", "unit_sum_map"),
    "attribution": ("attribute", "reduce_map"),
    "methods": ("METHODS", "ATTACK_METHODS"),
    "metrics": ("compare_maps", "compute_metrics", "deletion", "insertion"),
    "models": ("Model", "library_state", "load_model"),
    "plots": ("plot_attack", "plot_comparison", "plot_methods", "plot_transfer_matrix"),
    "report": ("write_report",),
    "rise": ("RiseMasks", "explain", "generate_masks", "rise_saliency"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

# ``explain`` is RISE's function (the seed project's name; also ``rise_saliency``). The Captum
# methods live in the submodule ``attribution``, so no submodule shadows the function.
__all__ = [
    "Model",
    "library_state",
    "load_model",
    "load_img",
    "generate_masks",
    "RiseMasks",
    "explain",
    "rise_saliency",
    "attribute",
    "reduce_map",
    "METHODS",
    "ATTACK_METHODS",
    "perform_attack",
    "run_attack",
    "untargeted_attack",
    "AttackResult",
    "pgd_attack",
    "explanation",
    "normalized_map",
    "differentiable_attribution",
    "unit_sum_map",
    "compute_metrics",
    "compare_maps",
    "deletion",
    "insertion",
    "plot_comparison",
    "plot_methods",
    "plot_attack",
    "plot_transfer_matrix",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'deepsaliency' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
