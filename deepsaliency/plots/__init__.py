"""Figures: saliency maps, attacks on them, faithfulness, attack and manipulability curves, the transfer matrix.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``: no global figure
registry to leak, no GUI backend; saving renders with Agg) inside :func:`~deepsaliency.plots.style.plot_style`
and returns it; :func:`save_figure` writes it as PNG.

Modules: :mod:`.style` (the ``plots:`` params, font sizes, colours, the colour bar), :mod:`.scaling`
(layouts, colour norms, map scaling, perturbation gain), :mod:`.maps` (image and map panels),
:mod:`.attacks` (attack panels), :mod:`.curves` (line figures), :mod:`.matrix` (the transfer matrix),
:mod:`.sanity` (the sanity-check figure).
Every name below stays importable from ``deepsaliency.plots``.
"""

from __future__ import annotations

from .attacks import AttackRow, perturbation_panel, plot_attack, plot_attack_transfer
from .curves import plot_attack_losses, plot_curves, plot_manipulability
from .maps import draw_map, plot_comparison, plot_methods
from .matrix import plot_transfer_matrix
from .sanity import plot_sanity
from .scaling import as_image, as_map, is_signed, map_norm, nice_gain, scale_label, scaled
from .style import (
    DIVERGING_CMAPS,
    METHOD_COLORS,
    PLOT_DEFAULTS,
    STYLE,
    check_colormap,
    colorbar,
    plot_params,
    plot_style,
    save_figure,
)

__all__ = [
    "AttackRow",
    "DIVERGING_CMAPS",
    "METHOD_COLORS",
    "PLOT_DEFAULTS",
    "STYLE",
    "as_image",
    "as_map",
    "check_colormap",
    "colorbar",
    "draw_map",
    "is_signed",
    "map_norm",
    "nice_gain",
    "perturbation_panel",
    "plot_attack",
    "plot_attack_losses",
    "plot_attack_transfer",
    "plot_comparison",
    "plot_curves",
    "plot_manipulability",
    "plot_methods",
    "plot_params",
    "plot_sanity",
    "plot_style",
    "plot_transfer_matrix",
    "save_figure",
    "scale_label",
    "scaled",
]
