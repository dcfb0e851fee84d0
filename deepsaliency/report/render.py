"""Rendering: cell format, tables (pandas ``to_markdown`` / ``to_html``) and the Jinja2 templates.

The document is one Jinja2 template, ``templates/report.md.j2`` (all the prose). It is rendered twice: as
Markdown with figure links, and as Markdown with HTML tables and figures embedded as ``data:`` URIs that
markdown-it-py turns into the body of ``templates/report.html.j2`` (CSS inline from ``templates/report.css``).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markdown_it import MarkdownIt

#: The package's templates folder (package data, see pyproject.toml).
TEMPLATES = Path(__file__).with_name("templates")
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def format_number(v: Any, na: str = "—") -> str:
    """A cell as text: NaN/None → ``na``; integers as is; floats with 3 decimals (3 significant digits when tiny
    or huge); booleans yes/no."""
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(float(v))):
        return na
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == int(v) and abs(v) < 1e6:
            return str(int(v)) if abs(v) >= 1 or v == 0 else f"{v:.3f}"
        return f"{v:.3g}" if (abs(v) >= 1e4 or abs(v) < 1e-3) else f"{v:.3f}"
    return str(v)


def _formatted(df: pd.DataFrame, index: bool, na: str) -> pd.DataFrame:
    frame = df.reset_index() if index else df.copy()
    if index and df.index.name is None and not isinstance(df.index, pd.MultiIndex):
        frame = frame.rename(columns={"index": ""})
    for c in frame.columns:
        frame[c] = frame[c].map(lambda v: format_number(v, na))
    return frame


def _compact(line: str) -> str:
    """One line of a pipe table without tabulate's column padding (short, diff-friendly rows)."""
    cells = [c.strip() for c in _UNESCAPED_PIPE.split(line)[1:-1]]
    if all(c and set(c) <= {"-", ":"} for c in cells):  # the alignment row
        return (
            "|" + "|".join(":---" if c.startswith(":") else "---:" if c.endswith(":") else "---" for c in cells) + "|"
        )
    return "| " + " | ".join(cells) + " |"


def markdown_table(df: pd.DataFrame, index: bool = True, na: str = "—") -> str:
    """A GitHub-flavoured Markdown table (:meth:`pandas.DataFrame.to_markdown`, pipe format, padding removed).

    Numeric columns are right-aligned, the others left; ``|`` in a cell is escaped; NaN shows as ``na``.
    """
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    if index:
        numeric = [False] * (df.index.nlevels if isinstance(df.index, pd.MultiIndex) else 1) + numeric
    frame = _formatted(df, index, na)
    frame = frame.apply(lambda col: col.str.replace("|", "\\|").str.replace("\n", " "))
    frame.columns = [str(c).replace("|", "\\|") for c in frame.columns]
    text = frame.to_markdown(
        index=False, tablefmt="pipe", disable_numparse=True, colalign=["right" if n else "left" for n in numeric]
    )
    return "\n".join(_compact(line) for line in text.splitlines())


def html_table(df: pd.DataFrame, index: bool = True, na: str = "—") -> str:
    """An HTML table (:meth:`pandas.DataFrame.to_html`, escaped) with the same number format as Markdown."""
    frame = df.copy()
    for c in frame.columns:
        frame[c] = frame[c].map(lambda v: format_number(v, na))
    return frame.to_html(index=index, border=0, classes="table", escape=True, na_rep=na)


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_document(context: Mapping[str, Any], table: Callable[[str], str], figure: Callable[[str], str]) -> str:
    """``templates/report.md.j2`` with ``context``; ``table(key)`` and ``figure(name)`` write those parts."""
    text = _ENV.get_template("report.md.j2").render(**context, table=table, figure=figure)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"  # the template's optional parts leave blank runs


def render_page(body_markdown: str, title: str = "deep-saliency report") -> str:
    """One self-contained HTML page: ``body_markdown`` (CommonMark with HTML tables) through markdown-it-py, CSS
    inline, no script and no external reference."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(body_markdown)
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _ENV.get_template("report.html.j2").render(title=title, css=css, body=body)
