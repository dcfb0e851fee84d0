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
    "attack": ("AttackResult", "perform_attack", "pgd_attack", "run_attack"),
    "data": ("load_img",),
    "diffexplain": ("explanation", "normalized_map"),
    "explain": ("METHODS", "attribute", "reduce_map"),
    "metrics": ("compare_maps", "compute_metrics", "deletion", "insertion"),
    "models": ("Model", "load_model"),
    "plots": ("plot_attack", "plot_comparison", "plot_methods", "plot_transfer_matrix"),
    "report": ("write_report",),
    "rise": ("RiseMasks", "generate_masks"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

# ``explain`` names both a submodule (Captum methods) and RISE's function. The submodule is
# imported first, then the name is bound to the function, as the package always exported it;
# importing the submodule later would otherwise rebind the package attribute to the module.
from . import explain as _explain_module  # noqa: E402,F401
from .rise import explain  # noqa: E402

__all__ = [
    "Model", "load_model", "load_img",
    "generate_masks", "RiseMasks", "explain", "attribute", "reduce_map", "METHODS",
    "perform_attack", "run_attack", "AttackResult", "pgd_attack", "explanation", "normalized_map",
    "compute_metrics", "compare_maps", "deletion", "insertion",
    "plot_comparison", "plot_methods", "plot_attack", "plot_transfer_matrix", "write_report",
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
