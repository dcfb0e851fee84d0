"""The model-parameter randomisation figure (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", Fig. 2).

Rows are methods, columns the randomisation depth: the original model's map, then the map after the
layer groups down to the one named in the column title were re-initialised (cascading). A method whose
row does not change explains something other than what the network learned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..errors import ParamError


def _shown(smap: np.ndarray, percentile: float) -> np.ndarray:
    """|map| divided by its own ``percentile`` of |map| and clipped to [0, 1] (a zero map stays zero)."""
    a = np.abs(np.asarray(smap, dtype=np.float64))
    scale = float(np.percentile(a, percentile))
    return np.clip(a / scale, 0, 1) if scale > 0 else np.zeros_like(a)


def plot_sanity(
    maps: Mapping[str, Sequence[np.ndarray]],
    layers: Sequence[str],
    image: np.ndarray | None = None,
    *,
    cmap: str = "inferno",
    clip_percentile: float = 99.5,
    title: str | None = None,
) -> Figure:
    """Maps of each method (rows) at each randomisation depth (columns), as in Adebayo et al. (2018), Fig. 2.

    Args:
        maps: ``{method: [map at depth 0, 1, …]}``, each map (H, W), non-negative or signed (|·| is shown);
            every method must have ``len(layers)`` maps.
        layers: the column titles: ``"original"`` then the layer group randomised last at each depth.
        image: the explained image (H, W, 3) uint8 or float in [0, 1], drawn as an extra first column.
        cmap: a matplotlib colour map for the maps.
        clip_percentile: each map is divided by this percentile of its |values| (in (0, 100]) and clipped,
            so a column compares shapes, not units.
        title: the figure title.

    Returns:
        A :class:`matplotlib.figure.Figure` (not attached to pyplot).

    Raises:
        ParamError: no method, or a method whose number of maps differs from ``len(layers)``.
    """
    if not maps:
        raise ParamError("maps: empty (expected at least one method's maps)")
    for method, row in maps.items():
        if len(row) != len(layers):
            raise ParamError(f"maps: {method!r} has {len(row)} maps, but layers has {len(layers)} entries")
    offset = 0 if image is None else 1
    n_rows, n_cols = len(maps), len(layers) + offset
    fig = Figure(figsize=(1.15 * n_cols + 0.8, 1.15 * n_rows + 0.7), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, (method, row) in enumerate(maps.items()):
        if image is not None:
            axes[r, 0].imshow(image)
        for c, smap in enumerate(row):
            axes[r, c + offset].imshow(_shown(smap, clip_percentile), cmap=cmap, vmin=0, vmax=1)
        axes[r, 0].set_ylabel(method.replace("_", " "), fontsize=7, rotation=0, ha="right", va="center")
    for c, layer in enumerate(["image"] * offset + list(layers)):
        axes[0, c].set_title(layer.removeprefix("net."), fontsize=7, rotation=45 if c >= offset else 0)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "Cascading randomisation from the logits down (Adebayo et al. 2018)", fontsize=10)
    return fig
