"""CI check of a regenerated report: it exists, every figure it references exists, metrics are finite."""

import json
import math
import re
import sys
from pathlib import Path

REPORTS = Path("reports")


def finite_numbers(node, path="metrics.json"):
    """Yield (path, value) for every leaf that is not a finite number."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from finite_numbers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from finite_numbers(value, f"{path}[{i}]")
    elif isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        yield path, node


def main() -> int:
    problems = []
    md, html = REPORTS / "report.md", REPORTS / "index.html"
    for page in (md, html):
        if not page.is_file() or page.stat().st_size == 0:
            problems.append(f"{page}: missing or empty")
    if md.is_file():
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())
        if not figures:
            problems.append(f"{md}: references no figure")
        problems += [f"{md}: figure {f} does not exist" for f in figures if not (REPORTS / f).is_file()]
        print(f"report.md references {len(figures)} figures, all present" if figures and not problems else "")
    if html.is_file():
        text = html.read_text()
        embedded = text.count("data:image/png;base64,")
        missing = [
            src
            for src in re.findall(r'<img[^>]+src="([^"]+)"', text)
            if not src.startswith("data:") and not (REPORTS / src).is_file()
        ]
        problems += [f"{html}: image {src} does not exist" for src in missing]
        print(f"index.html embeds {embedded} images")
    metrics = json.loads((REPORTS / "metrics.json").read_text())
    bad = list(finite_numbers(metrics))
    problems += [f"{p}: {v!r} is not a finite number" for p, v in bad]
    for p in problems:
        print(f"check_report: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
