"""Building and writing the report: sections → figures and tables → the Jinja2 templates → Markdown and HTML."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import plots
from ..params import DEFAULTS
from ..stage import atomic_dir, atomic_file
from . import render
from . import sections as sec
from . import trust_sections as trust
from .figures import FigureFile, FigureWriter
from .load import PGD, load_artifacts, select_images


@dataclass
class Report:
    """The built report: the template's context, the figures written, the tables shown and the notes about
    missing inputs. ``tables["leaderboard_raw"]`` is the whole leaderboard (every column, numbers)."""

    context: dict[str, Any]
    figures: list[FigureFile]
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    index: dict[str, bool]

    def _render(self, table, figure) -> str:
        return render.render_document(
            {**self.context, "figures": {f.name[:-4] for f in self.figures}, "tables": set(self.index)},
            table=table,
            figure=figure,
        )

    def markdown(self, figures_rel: str = "figures") -> str:
        """The report as Markdown; figures as ``![title](<figures_rel>/<name>.png)``."""
        files = {f.name[:-4]: f for f in self.figures}
        return self._render(
            lambda k: render.markdown_table(self.tables[k], index=self.index[k]),
            lambda n: f"![{files[n].title}]({figures_rel}/{files[n].name})",
        )

    def html(self, figures_dir: Path) -> str:
        """The report as one self-contained HTML page (figures embedded as ``data:image/png;base64`` URIs)."""
        files = {f.name[:-4]: f for f in self.figures}
        body = self._render(
            lambda k: "\n" + render.html_table(self.tables[k], index=self.index[k]) + "\n",
            lambda n: f"![{files[n].title}]({render.data_uri(Path(figures_dir) / files[n].name)})",
        )
        return render.render_page(body)


def _shown_budget(params: dict | None, metrics: dict | None) -> float | None:
    """The budget metrics.json ranked at (so the table's numbers match its ranks), else ``report.rank_eps``, else
    None (each attack's largest)."""
    eps = (metrics.get("leaderboard") or {}).get("eps") if isinstance(metrics, dict) else None
    if eps is None:
        eps = ((params or {}).get("report") or {}).get("rank_eps")
    return None if eps is None else float(eps)


def build_report(
    root: str | Path,
    figures_dir: str | Path,
    params: dict | None = None,
    plot_params: dict | None = None,
    labels: Sequence[str] | None = None,
) -> Report:
    """Read the artifacts under ``root``, write every figure into ``figures_dir`` and assemble the report.

    Args:
        root: repository root (``data/`` and ``reports/`` below it).
        figures_dir: an existing folder for the PNG files.
        params: the run's validated parameters (shown in the report; ``explain.methods`` and ``attack.methods``
            (plus pgd) choose and order the methods and attacks shown; ``report.rank_eps`` the budget, /255).
        plot_params: the ``plots:`` section (see :func:`deepsaliency.plots.plot_params`); None → defaults.
        labels: class names by index (for x_adv's predicted class); None → "class <idx>".

    Returns:
        The :class:`Report`; render it with :meth:`Report.markdown` / :meth:`Report.html`.
    """
    p = plots.plot_params(plot_params)
    methods = ((params or {}).get("explain") or {}).get("methods")
    attacks = ((params or {}).get("attack") or {}).get("methods")
    if attacks is not None:
        attacks = [*attacks, *([] if PGD in attacks else [PGD])]  # the pgd stage always runs
    art = load_artifacts(root, methods, attacks)
    if art.manifest is not None and "stem" in art.manifest.columns:
        most = ((params or {}).get("report") or {}).get("max_images", DEFAULTS.report.max_images)
        stems = [str(s) for s in art.manifest["stem"]]
        art.shown = select_images(stems, most)
        if len(art.shown) < len(stems):
            art.notes.append(
                f"The per-image figures show {len(art.shown)} of the {len(stems)} images (a seeded selection, "
                "report.max_images); every table covers all of them."
            )
    s = sec.Sections(
        art, FigureWriter(Path(figures_dir), p["dpi"], art.notes), p, labels, _shown_budget(params, art.metrics)
    )
    context = {
        "model": ((params or {}).get("model") or {}).get("name", "unknown"),
        "n_images": 0 if art.manifest is None else len(art.manifest),
        "methods": art.methods, "attacks": art.attacks, "eps": s.eps, "plots": p,
        "leaderboard": sec.section_leaderboard(s),
        "manipulability": sec.section_manipulability(s),
        "explanations": sec.section_explanations(s),
        "attack": sec.section_attacks(s),
        "transfer": sec.section_transfer(s),
        "faithfulness": sec.section_faithfulness(s),
        "sanity": sec.section_extra(s, "sanity", "reports/sanity/sanity.png"),
        "stability": sec.section_extra(s, "stability", None),
        "defence": trust.section_defence(s),
        "untargeted": trust.section_untargeted(s),
        "params": sec.section_params(s, params),
        "notes": art.notes,
    }  # fmt: skip
    return Report(context, list(s.writer.written.values()), s.tables, art.notes, s.index)


def write_report(
    root: str | Path = ".",
    out: str | Path = "reports",
    params: dict | None = None,
    plot_params: dict | None = None,
    labels: Sequence[str] | None = None,
) -> Report:
    """Build the report and write ``<out>/figures/``, ``<out>/report.md`` and ``<out>/index.html`` all-or-nothing.

    The figures folder and both files are renamed into place only after everything was written
    (:func:`deepsaliency.stage.atomic_dir` / :func:`~deepsaliency.stage.atomic_file`); on an error none of them
    changes except that the figures folder is removed (DVC reruns the stage).

    Returns:
        The :class:`Report`.
    """
    out = Path(root) / out
    with (
        atomic_dir(out / "figures") as figs,
        atomic_file(out / "report.md") as md,
        atomic_file(out / "index.html") as page,
    ):
        report = build_report(root, figs, params, plot_params, labels)
        md.write_text(report.markdown("figures"), encoding="utf-8")
        page.write_text(report.html(figs), encoding="utf-8")
    return report
