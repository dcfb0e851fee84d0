"""The value types of ``params.yaml`` and the words its one-line errors use for them.

Each type is an ``Annotated`` pydantic type: its ``Field`` constraints validate it and, read back by
:func:`allowed`, say in words what is allowed (``an integer ≥ 1``, ``a number in (0, 1]``). Strict:
YAML's ``true`` is not the integer 1 and ``"8"`` is not a number. Hand-written here: only the few
checks no pydantic constraint expresses (distinct list entries, odd integers, matplotlib colour maps)
and the translation of constraints into words.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import annotated_types as at
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema


class Section(BaseModel):
    """A section (or nested section) of ``params.yaml``: no unknown keys, immutable, strict types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=False)

    #: The keys the method's differentiable explanation takes during the attack (the rest batch the explain
    #: stage's Captum call); see :meth:`attack_kwargs`.
    ATTACK_KEYS: ClassVar[tuple[str, ...]] = ()

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the library call this section feeds (for a method section:
        :func:`deepsaliency.attribution.attribute`)."""
        return self.model_dump()

    def attack_kwargs(self) -> dict[str, Any]:
        """The keys of :attr:`ATTACK_KEYS`, for :func:`deepsaliency.differentiable.differentiable_attribution`."""
        return {key: getattr(self, key) for key in self.ATTACK_KEYS}


@dataclass(frozen=True)
class Words:
    """What a value may be, in words, where the constraints cannot say it (replaces the generated words)."""

    text: str


@dataclass(frozen=True)
class Null:
    """What ``null`` means for an optional key, e.g. ``null (the model's prediction)``."""

    text: str


PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosNum = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegNum = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: (0, 1), (0, 1] and [0, 1]
OpenUnit = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Rate = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
NonEmpty = Annotated[str, Field(min_length=1)]


def _distinct(values: list[Any]) -> list[Any]:
    if len({f"{v:g}" if isinstance(v, float) else v for v in values}) != len(values):
        raise PydanticCustomError("not_distinct", "entries are not distinct")
    return values


@dataclass(frozen=True)
class Names:
    """Annotates ``list[str]``: distinct names from ``options``, at least ``min_length`` of them."""

    options: tuple[str, ...]
    min_length: int = 1

    @property
    def words(self) -> str:
        return f"a list of distinct names from {', '.join(self.options)}"

    def check(self, values: list[str]) -> list[str]:
        if len(values) < self.min_length or any(v not in self.options for v in values):
            raise PydanticCustomError("not_allowed", "not allowed")
        return _distinct(values)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


def _integral(values: list[float]) -> list[int | float]:
    return [int(v) if v.is_integer() else v for v in values]


#: L∞ budgets in /255 units: a non-empty list of distinct numbers in [0, 255] (integral ones kept as int).
Budgets = Annotated[
    list[Annotated[float, Field(ge=0, le=255, allow_inf_nan=False)]],
    Field(min_length=1),
    AfterValidator(_distinct),
    AfterValidator(_integral),
    Words("a non-empty list of distinct numbers in [0, 255] (L∞ budgets in /255 units)"),
]


def _consecutive(values: list[int]) -> list[int]:
    if values != list(range(len(values))):
        raise PydanticCustomError("not_consecutive", "not 0, 1, …, n − 1")
    return values


#: Shard indices ``[0, 1, …, n − 1]`` (a list, because DVC's ``matrix`` expands a list: one item per shard).
ShardIndices = Annotated[
    list[Annotated[int, Field(ge=0)]],
    Field(min_length=1),
    AfterValidator(_consecutive),
    Words("the shard indices [0, 1, …, n − 1] of n ≥ 1 shards, e.g. [0, 1, 2, 3]"),
]


def _odd(value: int) -> int:
    if value % 2 != 1:
        raise PydanticCustomError("not_odd", "not odd")
    return value


OddInt = Annotated[int, Field(ge=1), AfterValidator(_odd), Words("an odd integer ≥ 1")]


def _colormap(value: str) -> str:
    import matplotlib  # only when a colour map is validated: the stages that read no plots key skip it

    if value not in matplotlib.colormaps:
        raise PydanticCustomError("colormap", "unknown colour map")
    return value


Colormap = Annotated[
    str, AfterValidator(_colormap), Words("a matplotlib colour map name, e.g. seismic, bwr, inferno, hot, viridis")
]


def _bound(lo: Any, hi: Any, lo_open: bool, hi_open: bool, noun: str) -> str:
    if lo is not None and hi is not None:
        return f"{noun} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{noun} {'>' if lo_open else '≥'} {lo}"
    if hi is not None:
        return f"{noun} {'<' if hi_open else '≤'} {hi}"
    return noun


def _describe(annotation: Any, metadata: Sequence[Any]) -> str:
    """Words for a type and its constraints, e.g. ``an integer in [8, 1024]``."""
    for m in metadata:
        if isinstance(m, (Words, Names)):
            return m.text if isinstance(m, Words) else m.words
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        flat = [x for e in extra for x in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _describe(inner, [*metadata, *flat])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        null = next((m.text for m in metadata if isinstance(m, Null)), "null")
        words = [null if a is type(None) else _describe(a, metadata) for a in args]
        return " or ".join(sorted(words, key=lambda w: not w.startswith(("null", "'"))))
    if origin is Literal:
        options = typing.get_args(annotation)
        return f"'{options[0]}'" if len(options) == 1 else f"one of {', '.join(options)}"
    lo = next((m.ge if isinstance(m, at.Ge) else m.gt for m in metadata if isinstance(m, (at.Ge, at.Gt))), None)
    hi = next((m.le if isinstance(m, at.Le) else m.lt for m in metadata if isinstance(m, (at.Le, at.Lt))), None)
    lo_open, hi_open = any(isinstance(m, at.Gt) for m in metadata), any(isinstance(m, at.Lt) for m in metadata)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _bound(lo, hi, lo_open, hi_open, "an integer")
    if annotation is float:
        return _bound(lo, hi, lo_open, hi_open, "a number")
    if annotation is str:
        return "a non-empty string" if any(isinstance(m, at.MinLen) for m in metadata) else "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with keys {', '.join(annotation.model_fields)}"
    return str(annotation)


def allowed(field: FieldInfo) -> str:
    """What ``field`` allows, in words (the ``expected ...`` of its one-line error)."""
    extra: Any = field.json_schema_extra or {}
    null = [Null(extra["null"])] if "null" in extra else []
    return _describe(field.annotation, [*field.metadata, *null])


def nested(field: FieldInfo) -> type[Section] | None:
    """The section class of a nested section field, else None."""
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, Section) else None
