"""``params.yaml``: reading it, and validating it against :class:`Params` before any work is done.

Every key must be present (DVC tracks params by key: a missing key is as bad as a typo); the models'
defaults serve the library and the docs, and ``params.yaml`` equals them as shipped. The first problem
becomes one line naming the key, the value and what is allowed, generated from the key's type and
``Field`` constraints (:func:`deepsaliency.params.types.allowed`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from ..errors import ParamError
from . import attack as a
from . import explainers as e
from . import sections as s
from .cross import check_cross
from .types import Section, allowed, nested

F = TypeVar("F", bound=Callable[..., Any])


class Params(Section):
    """All of ``params.yaml``; ``Params()`` holds every default."""

    model_config = ConfigDict(protected_namespaces=())

    model: s.Model = s.Model()
    prepare: s.Prepare = s.Prepare()
    rise: s.Rise = s.Rise()
    explain: s.Explain = s.Explain()
    saliency: e.Saliency = e.Saliency()
    input_x_gradient: e.InputXGradient = e.InputXGradient()
    integrated_gradients: e.IntegratedGradients = e.IntegratedGradients()
    smoothgrad: e.SmoothGrad = e.SmoothGrad()
    gradient_shap: e.GradientShap = e.GradientShap()
    occlusion: e.Occlusion = e.Occlusion()
    gradcam: e.GradCam = e.GradCam()
    guided_backprop: e.GuidedBackprop = e.GuidedBackprop()
    deeplift: e.DeepLift = e.DeepLift()
    gradcam_plus_plus: e.GradCamPlusPlus = e.GradCamPlusPlus()
    lrp: e.Lrp = e.Lrp()
    saliency_smoothed: e.SaliencySmoothed = e.SaliencySmoothed()
    input_x_gradient_smoothed: e.InputXGradientSmoothed = e.InputXGradientSmoothed()
    integrated_gradients_smoothed: e.IntegratedGradientsSmoothed = e.IntegratedGradientsSmoothed()
    attack: a.Attack = a.Attack()
    untargeted: a.Untargeted = a.Untargeted()
    pgd: a.Pgd = a.Pgd()
    metrics: s.Metrics = s.Metrics()
    report: s.Report = s.Report()
    faithfulness: s.Faithfulness = s.Faithfulness()
    plots: s.Plots = s.Plots()
    sanity: s.Sanity = s.Sanity()
    stability: s.Stability = s.Stability()
    compute: a.Compute = a.Compute()

    @classmethod
    def load(cls, path: str | Path = "params.yaml") -> Params:
        """Read and validate ``path`` (:func:`load_params`) as a typed object."""
        return cls.model_validate(load_params(path))

    def method_kwargs(self, method: str) -> dict[str, Any]:
        """Keyword arguments of :func:`deepsaliency.attribution.attribute` from section ``method``."""
        section: Section = getattr(self, method)
        return section.model_dump()


#: section → its model class.
SECTIONS: dict[str, type[Section]] = {name: nested(field) or Section for name, field in Params.model_fields.items()}
#: section → key → field (what the old hand-written schema listed).
SCHEMA: dict[str, dict[str, FieldInfo]] = {name: dict(cls.model_fields) for name, cls in SECTIONS.items()}


def _structure(cls: type[Section], values: Any, path: str, source: str) -> dict[str, Any]:
    """``values`` as a mapping with exactly ``cls``'s keys (nested sections likewise), else one line."""
    if values is None and not cls.model_fields:
        values = {}
    if not isinstance(values, dict):
        raise ParamError(f"{source}: section {path!r} is missing or not a mapping")
    fields = cls.model_fields
    for key in values:
        if key not in fields:
            raise ParamError(f"{path}.{key}: unknown key (allowed in {path!r}: {', '.join(fields) or 'none'})")
    out = dict(values)
    for key, field in fields.items():
        if key not in values:
            raise ParamError(f"{path}.{key}: missing (expected {allowed(field)})")
        sub = nested(field)
        if sub is not None:
            out[key] = _structure(sub, values[key], f"{path}.{key}", source)
    return out


def _one_line(exc: ValidationError, cls: type[Section], values: dict[str, Any], prefix: str) -> ParamError:
    """The first pydantic error as ``section.key: <value> is not allowed (expected ...)``."""
    loc = exc.errors()[0]["loc"]
    path, value, field = [prefix] if prefix else [], values, None
    for part in loc:
        if not (isinstance(part, str) and part in cls.model_fields):
            break
        path.append(part)
        field, value = cls.model_fields[part], value[part]
        sub = nested(field)
        if sub is None:
            break
        cls = sub
    if field is None:  # cannot happen after _structure; kept so a pydantic change still gives one line
        return ParamError(f"{'.'.join(path) or 'params'}: {exc.errors()[0]['msg']}")
    return ParamError(f"{'.'.join(path)}: {value!r} is not allowed (expected {allowed(field)})")


def validate_section(section: str, values: Any, source: str = "params.yaml") -> dict[str, Any]:
    """Check one section: every key present, none unknown, each value allowed; return it cleaned.

    Raises:
        ParamError: the first problem, as one line naming ``section.key``.
    """
    cls = SECTIONS[section]
    values = _structure(cls, values, section, source)
    try:
        return cls.model_validate(values).model_dump()
    except ValidationError as exc:
        raise _one_line(exc, cls, values, section) from None


def validate(params: Any, source: str = "params.yaml") -> dict[str, Any]:
    """Check ``params`` (nested dicts as read from YAML) against :class:`Params` and the cross-key rules.

    Returns:
        The cleaned parameters as nested dicts, in :class:`Params`' section order.

    Raises:
        ParamError: the first problem, as one line naming ``section.key``, the value and what is allowed.
    """
    if not isinstance(params, dict):
        raise ParamError(f"{source}: expected a mapping of sections, got {type(params).__name__}")
    unknown = [name for name in params if name not in SECTIONS]
    if unknown:
        raise ParamError(f"{source}: unknown section {unknown[0]!r} (allowed: {', '.join(SECTIONS)})")
    values = {name: _structure(cls, params.get(name), name, source) for name, cls in SECTIONS.items()}
    try:
        clean = Params.model_validate(values).model_dump()
    except ValidationError as exc:
        raise _one_line(exc, Params, values, "") from None
    check_cross(clean)
    return clean


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate ``params.yaml`` (:func:`validate`); :meth:`Params.load` gives the typed object.

    Returns:
        The validated parameters as nested dicts (``params["attack"]["eps"]``).

    Raises:
        ParamError: the file is missing, not YAML, or a value is not allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: parameter file does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None
    return validate(raw, str(path))


#: Every default, typed: the library's signatures take theirs from here (``DEFAULTS.integrated_gradients.n_steps``).
DEFAULTS = Params()


def section_defaults(section: Section) -> Callable[[F], F]:
    """Decorator: the parameters of a library function named like keys of ``section`` take the section's
    values as their defaults (pass ``DEFAULTS.<section>``): the function's signature repeats no default.

    Written here because Python has no way to say "this argument's default is that model field's";
    :func:`inspect.signature` shows the defaults as if written in the ``def``.

    Raises:
        TypeError: at import, a parameter named like a key that cannot take a default (one before it has none).
    """
    values = section.model_dump()

    def apply(function: F) -> F:
        positional = [
            p
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        defaults: list[Any] = []
        for p in reversed(positional):  # __defaults__ are those of the trailing positional parameters
            if p.name not in values and p.default is p.empty:
                break
            defaults.insert(0, values.get(p.name, p.default))
        missing = [p.name for p in positional[: len(positional) - len(defaults)] if p.name in values]
        if missing:
            raise TypeError(f"{function.__qualname__}: parameter {missing[0]!r} cannot take a default")
        function.__defaults__ = tuple(defaults)
        return function

    return apply
