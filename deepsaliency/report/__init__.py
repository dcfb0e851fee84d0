"""The report: figures, metric tables and a robustness leaderboard, as Markdown and self-contained HTML.

Reads the artifact contract (see :mod:`deepsaliency.artifacts`)::

    data/prepared/manifest.csv, <k>/<stem>.png          the images and the model's predictions
    data/explanations/<method>/<k>/<stem>.npz           attribution, map
    data/attacks/<k>/<method>/eps<e>/<stem>.npz         x_adv, map_<method>, target_stem, ... (one folder per budget)
    data/attacks/<k>/pgd/<stem>.npz                     PGD (Madry et al. 2018)
    reports/metrics.json, reports/metrics/*.csv         the metrics stage's summary, its long tables and the
                                                        report's tables (leaderboard.csv, transfer_*.csv,
                                                        own_map_shift.csv, *_summary.csv, defence.csv,
                                                        untargeted.csv): every number shown
    reports/plots/{deletion,insertion}_curves.csv       faithfulness curves
    reports/plots/attack_loss.csv                       attack optimisation curves (column attack)
    reports/sanity/summary.csv, sanity.png              optional: the sanity stage
    reports/stability/summary.csv                       optional: the stability stage

and writes ``reports/figures/*.png``, ``reports/report.md`` and ``reports/index.html`` (every image embedded
as a base64 ``data:`` URI, no external file, script or style sheet). Every input is optional: a figure or table
whose input is absent is left out and the report says so, in a "Missing inputs" section.

The report computes nothing: means, intervals, ranks and tests are the metrics stage's
(:mod:`deepsaliency.metrics.aggregates`, :mod:`deepsaliency.metrics.summary`); the per-image tables only say
which budgets exist. Modules: :mod:`.load` (inputs), :mod:`.tables` (the metrics stage's tables selected and
labelled), :mod:`.figures`, :mod:`.sections` and :mod:`.trust_sections` (what each section states; the defence
and untargeted-attack sections), :mod:`.render` (tables and the Jinja2 templates in ``templates/``),
:mod:`.build` (:func:`build_report`, :func:`write_report`).
"""

from .. import plots
from .build import Report, build_report, write_report
from .figures import FigureFile
from .load import ATTACK_ORDER, ORIGINAL, PGD, RANDOM, Artifacts, adversarials, load_artifacts, originals, tidy
from .render import format_number, html_table, markdown_table
from .tables import (
    LEADERBOARD_COLUMNS,
    RANKING_COLUMNS,
    faithfulness_summary,
    flatten,
    leaderboard,
    own_map_shift,
    quality_summary,
    random_baseline,
    transfer_matrix,
)

__all__ = [
    "ATTACK_ORDER", "LEADERBOARD_COLUMNS", "ORIGINAL", "PGD", "RANDOM", "RANKING_COLUMNS", "Artifacts", "FigureFile",
    "Report", "adversarials", "build_report", "faithfulness_summary", "flatten", "format_number", "html_table",
    "leaderboard", "load_artifacts", "markdown_table", "originals", "own_map_shift", "plots", "quality_summary",
    "random_baseline", "tidy", "transfer_matrix", "write_report",
]  # fmt: skip
