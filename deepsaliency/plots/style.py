"""One look for every figure: the ``plots:`` params, font sizes as one rcParams context, colours, colour bars.

Every plotting function builds its figure inside :func:`plot_style`, so the sizes live in :data:`STYLE`
and nowhere else; :func:`colorbar` is the one colour-bar block of the package.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure, SubFigure
from matplotlib.typing import RcKeyType

from ..errors import ParamError

#: The ``plots:`` section of params.yaml with its defaults.
PLOT_DEFAULTS: dict[str, object] = {
    "signed_cmap": "seismic",  # diverging colour map for signed attributions (centred at 0)
    "map_cmap": "inferno",  # sequential colour map for non-negative maps
    "dpi": 100,
    "format": "png",  # the HTML report embeds PNG; no other format is written
    "overlay": False,  # draw non-negative maps over a grey copy of the image
    "overlay_alpha": 0.6,  # opacity of a map drawn over the image
    "clip_percentile": 99.5,  # maps are shown ÷ this percentile of |map|, clipped (100 = ÷ max)
    "min_max_methods": ["rise"],  # non-negative maps shown from their minimum, not from 0 (RISE has a large offset)
}

#: Colour maps treated as diverging by ``plot_comparison`` (a 0-centred norm even for non-negative maps).
DIVERGING_CMAPS = frozenset(
    name + suffix
    for name in (
        "seismic",
        "bwr",
        "coolwarm",
        "RdBu",
        "RdBu_r",
        "PiYG",
        "PRGn",
        "BrBG",
        "PuOr",
        "RdGy",
        "RdYlBu",
        "RdYlGn",
        "Spectral",
        "berlin",
        "managua",
        "vanimo",
    )
    for suffix in ("", "_r")
)

#: Fixed colour per method so a method looks the same in every curve figure.
METHOD_COLORS = {
    "rise": "tab:blue",
    "integrated_gradients": "tab:orange",
    "saliency": "tab:green",
    "input_x_gradient": "tab:red",
    "smoothgrad": "tab:purple",
    "gradient_shap": "tab:brown",
    "occlusion": "tab:pink",
    "gradcam": "tab:olive",
    "guided_backprop": "tab:cyan",
    "deeplift": "tab:gray",
    "gradcam_plus_plus": "gold",
    "lrp": "navy",
    # the β-smoothed defences: a dark shade of the method they smooth
    "saliency_smoothed": "darkgreen",
    "input_x_gradient_smoothed": "darkred",
    "integrated_gradients_smoothed": "saddlebrown",
    "random": "black",
}

#: Font sizes (points) of every figure: text, axis labels, ticks and legends 8, panel titles 9, figure titles 11.
STYLE: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 11,
    "lines.linewidth": 1.4,
    "axes.grid": False,
}

#: Colour-bar tick labels are one point smaller: a bar sits beside a whole row and its ticks must not crowd it.
COLORBAR_TICK_SIZE = 7


@contextmanager
def plot_style() -> Iterator[None]:
    """Apply :data:`STYLE` while a figure is built (matplotlib reads font sizes when an artist is created).

    Yields:
        Nothing; on exit the caller's rcParams are restored.
    """
    with matplotlib.rc_context(STYLE):
        yield


def colorbar(
    fig: Figure | SubFigure, mappable: ScalarMappable, ax: Any, label: str | None = None, **kwargs: Any
) -> Colorbar:
    """Add a colour bar next to ``ax`` (an Axes or a list of them) with the package's tick size and label.

    Args:
        fig: the figure or sub-figure that owns ``ax``.
        mappable: the image (or other ScalarMappable) whose scale the bar shows.
        ax: the axes the bar takes its room from.
        label: text along the bar (None: no label).
        kwargs: layout arguments for :meth:`matplotlib.figure.Figure.colorbar` (``fraction``, ``pad``, ``aspect``).

    Returns:
        The colour bar.
    """
    with matplotlib.rc_context({"xtick.labelsize": COLORBAR_TICK_SIZE, "ytick.labelsize": COLORBAR_TICK_SIZE}):
        cb = fig.colorbar(mappable, ax=ax, **kwargs)
    if label:
        cb.set_label(label)
    return cb


def check_colormap(name: object, key: str = "plots.map_cmap") -> str:
    """Return ``name`` if matplotlib knows the colour map.

    Raises:
        ParamError: ``name`` is not a registered colour-map name (the message names ``key``).
    """
    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise ParamError(
            f"{key}: {name!r} is not allowed (a matplotlib colour map name, e.g. seismic, bwr, inferno, hot, viridis)"
        )
    return name


def plot_params(section: Mapping | None = None) -> dict:
    """Validate the ``plots:`` section of params.yaml and fill in :data:`PLOT_DEFAULTS`.

    Args:
        section: the section as read from YAML; ``None`` (absent) gives the defaults.

    Returns:
        A complete, validated copy.

    Raises:
        ParamError: an unknown key or a value that is not allowed (one line naming it).
    """
    from ..params import validate_section

    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise ParamError(f"plots: {section!r} is not allowed (a mapping with keys {', '.join(PLOT_DEFAULTS)})")
    return validate_section("plots", {**PLOT_DEFAULTS, **section})


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG at ``dpi`` (no timestamp in the file: equal figures give equal bytes).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    return path


def method_label(method: str) -> str:
    """A method name as shown in titles and legends (``input_x_gradient`` → ``input x gradient``)."""
    return method.replace("_", " ")


def method_style(method: str, i: int) -> dict:
    """Line colour and style of ``method`` (the ``i``-th in its figure): fixed colours, the random baseline dashed."""
    if method == "random":
        return dict(color="black", linestyle="--")
    return dict(color=METHOD_COLORS.get(method, f"C{i % 10}"))


def short(text: object, n: int = 20) -> str:
    """``text`` cut to ``n`` characters with an ellipsis."""
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def image_axis(ax: Any, title: str | None = None) -> None:
    """Turn ``ax`` into a bare image panel (no ticks, no frame) with an optional title."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)


def row_label(ax: Any, text: str) -> None:
    """Name a row of panels on its first axes' y label, as large as a panel title (it names what the row shows)."""
    ax.set_ylabel(text, fontsize=matplotlib.rcParams["axes.titlesize"])
