"""The README's Parameters table, generated from the models (``python -m deepsaliency.params`` prints it).

One row per key: its dotted name, THE default (:class:`~deepsaliency.params.load.Params`' field default),
what is allowed (the words of its one-line error) and the field's description. The optimisation keys of
the attacked methods (``attack.<m>.*``) get one row per method with its defaults and one row per key.
tests/test_params_docs.py checks that README.md holds exactly this table. Hand-written: a few lines of
Markdown formatting that pandas' ``to_markdown`` (via tabulate) would pad into a far wider table.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..methods import ATTACK_METHODS, METHODS
from .attack import AttackRun
from .load import Params
from .types import Section, allowed, nested

HEADER = ["| key | default | allowed | meaning |", "|---|---|---|---|"]


def _value(v: Any) -> str:
    """A default as YAML writes it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(e) for e in v) + "]"
    if isinstance(v, BaseModel):
        return "{" + ", ".join(f"{k}: {_value(e)}" for k, e in v.model_dump().items()) + "}"
    return str(v)


#: Long lists of names the table gives by reference (the one-line errors list them).
_SHORT = {
    f"a list of distinct names from {', '.join(METHODS)}": "a list of distinct method names (`methods.METHODS`)",
    f"a list of distinct names from {', '.join(ATTACK_METHODS)}": "a list of distinct attackable method names "
    "(`methods.ATTACK_METHODS`)",
}


def _row(key: str, default: Any, allowed_words: str, meaning: str) -> str:
    for names, short in _SHORT.items():
        allowed_words = allowed_words.replace(names, short)
    shown = "all methods" if default == list(METHODS) else f"`{_value(default)}`"
    return f"| `{key}` | {shown} | {allowed_words} | {meaning} |"


def _rows(section: Section, path: str) -> list[str]:
    rows, runs = [], []
    if not type(section).model_fields:
        return [_row(path, {}, "`{}`", (type(section).__doc__ or "").strip())]
    for key, field in type(section).model_fields.items():
        value = getattr(section, key)
        if isinstance(value, AttackRun):
            runs.append(key)
            rows.append(_row(f"{path}.{key}", value, "a mapping", f"the attack of `{key}`: keys `{path}.<m>.*` below"))
        elif nested(field) is not None:
            rows.extend(_rows(value, f"{path}.{key}"))
        else:
            rows.append(_row(f"{path}.{key}", value, allowed(field), field.description or ""))
    if runs:  # each optimisation key once, its defaults listed per method above
        kinds = [type(getattr(section, m)) for m in runs]
        seen: dict[str, list[str]] = {}
        for method, kind in zip(runs, kinds, strict=True):
            for key in kind.model_fields:
                seen.setdefault(key, []).append(method)
        for key, methods in seen.items():
            field = next(k for k in kinds if key in k.model_fields).model_fields[key]
            where = "" if len(methods) == len(runs) else f" ({', '.join(methods)})"
            rows.append(f"| `{path}.<m>.{key}` | per method | {allowed(field)} | {field.description}{where} |")
    return rows


def table(params: Params | None = None) -> str:
    """The Markdown table of every key of ``params`` (default: the defaults), one row per key."""
    params = params or Params()
    rows = list(HEADER)
    for name in type(params).model_fields:
        rows.extend(_rows(getattr(params, name), name))
    return "\n".join(rows) + "\n"
