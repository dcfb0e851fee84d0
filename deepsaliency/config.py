"""``params.yaml``: loading and validation before any work is done.

Every section and key is declared in :data:`SCHEMA`; an unknown key (a typo),
a wrong type or an out-of-range value raises :class:`ParamError` with one line
naming the key, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamError
from .methods import ATTACK_METHODS, METHODS, check_ig_steps, check_occlusion


@dataclass(frozen=True)
class Field:
    """One parameter: a checker returning the cleaned value or None if invalid, and the allowed values in words."""

    check: Callable[[Any], Any]
    allowed: str


_INVALID = object()


def _int(lo: int | None = None, hi: int | None = None) -> Field:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return _INVALID
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return _INVALID
        return v

    rng = f" ≥ {lo}" if hi is None else f" in [{lo}, {hi}]"
    return Field(check, f"an integer{rng if lo is not None else ''}")


def _float(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Field:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return _INVALID
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            return _INVALID
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return _INVALID
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return _INVALID
        return v

    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if lo is not None and hi is not None:
        words = f"a number in {left}{lo}, {hi}{right}"
    elif lo is not None:
        words = f"a number {'>' if lo_open else '≥'} {lo}"
    else:
        words = "a number"
    return Field(check, words)


def _choice(*options: str) -> Field:
    return Field(lambda v: v if isinstance(v, str) and v in options else _INVALID, f"one of {', '.join(options)}")


def _str() -> Field:
    return Field(lambda v: v if isinstance(v, str) and v else _INVALID, "a non-empty string")


def _bool() -> Field:
    return Field(lambda v: v if isinstance(v, bool) else _INVALID, "true or false")


def _optional(field: Field, none_word: str = "null") -> Field:
    return Field(lambda v: None if v is None else field.check(v), f"{none_word} or {field.allowed}")


def _either(word: str, field: Field) -> Field:
    return Field(lambda v: v if v == word else field.check(v), f"'{word}' or {field.allowed}")


def _subset(options: tuple[str, ...], min_len: int = 1) -> Field:
    def check(v):
        if not isinstance(v, list) or len(v) < min_len or len(set(v)) != len(v):
            return _INVALID
        return v if all(isinstance(m, str) and m in options for m in v) else _INVALID

    return Field(check, f"a list of distinct names from {', '.join(options)}")


def _budgets() -> Field:
    """``attack.eps``: a non-empty list of distinct L∞ budgets in /255 units, each in [0, 255]."""
    number = _float(0, 255)

    def check(v):
        if not isinstance(v, list) or not v:
            return _INVALID
        values = [number.check(e) for e in v]
        if any(e is _INVALID for e in values) or len({f"{e:g}" for e in values}) != len(values):
            return _INVALID
        return [int(e) if float(e).is_integer() else e for e in values]

    return Field(check, "a non-empty list of distinct numbers in [0, 255] (L∞ budgets in /255 units)")


def _colormap() -> Field:
    def check(v):
        import matplotlib

        return v if isinstance(v, str) and v in matplotlib.colormaps else _INVALID

    return Field(check, "a matplotlib colour map name, e.g. seismic, bwr, inferno, hot, viridis")


#: What every attacked method's own section under ``attack`` holds.
_ATTACK_RUN: dict[str, Field] = {
    "num_iter": _int(1),
    "lr": _float(0, 1, lo_open=True),
    "lr_end": _float(0, 1),
    "a": _float(0),
    "eval_every": _int(1),
}

#: Integrated Gradients' keys, shared by its β-smoothed version (deepsaliency.defence).
_IG_FIELDS: dict[str, Field] = {
    "n_steps": _int(1),
    "integration": _choice("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"),
    "internal_batch_size": _int(1),
}

#: section → key → :class:`Field`, or key → a nested mapping of the same kind.
SCHEMA: dict[str, dict[str, Any]] = {
    "model": {
        "name": _str(),
        "checkpoint": _optional(_str()),
        "device": _str(),
        "input_size": _int(8, 1024),
    },
    "prepare": {
        "images": _str(),
        "resize": _choice("stretch", "center_crop"),
        "labels": _optional(_str(), "null (no labels file)"),
        # A seeded subset; see deepsaliency.data.prepare_images.
        "sample": {"n": _optional(_int(1)), "per_class": _optional(_int(1)), "only_correct": _bool(), "seed": _int(0)},
    },
    "rise": {
        "N": _int(1),
        "s": _int(1),
        "p1": _float(0, 1, lo_open=True, hi_open=True),
        "seed": _int(0),
        "batch_size": _either("auto", _int(1)),
        "sampling": _choice("random", "sobol", "antithetic"),  # deepsaliency.rise.SAMPLINGS
    },
    "explain": {"methods": _subset(METHODS), "target": _optional(_int(0), "null (the model's prediction)")},
    "saliency": {"abs": _bool()},
    "input_x_gradient": {},
    "integrated_gradients": {**_IG_FIELDS},
    "smoothgrad": {
        "nt_samples": _int(1),
        "stdevs": _float(0, lo_open=True),
        "seed": _int(0),
        "nt_samples_batch_size": _int(1),
    },
    "gradient_shap": {"n_samples": _int(1), "stdevs": _float(0), "seed": _int(0)},
    "occlusion": {"window": _int(1), "stride": _int(1), "baseline": _float(0, 1), "perturbations_per_eval": _int(1)},
    "gradcam": {"layer": _str()},
    "guided_backprop": {},
    "deeplift": {"eps": _float(0, lo_open=True)},
    "gradcam_plus_plus": {"layer": _str()},
    "lrp": {"epsilon": _float(0, lo_open=True), "canonize_skips": _bool()},
    # Dombrowski et al. (2019)'s defence (deepsaliency.defence): the method on the softplus-β network. One section
    # each, like every method: explain@<m> reads section <m> alone, so a β sweep of one reruns only its stage.
    "saliency_smoothed": {"beta": _float(0, lo_open=True), "abs": _bool()},
    "input_x_gradient_smoothed": {"beta": _float(0, lo_open=True)},
    "integrated_gradients_smoothed": {"beta": _float(0, lo_open=True), **_IG_FIELDS},
    "attack": {
        "methods": _subset(ATTACK_METHODS),
        "target_image": _str(),
        "b": _float(0),
        "beta_start": _float(0, lo_open=True),
        "beta_end": _float(0, lo_open=True),
        # One attack@<method>-<eps> stage per budget (a DVC matrix axis): adding a budget runs only its attacks.
        "eps": _budgets(),
        # Stop an image's attack once its best evaluated loss improved by less than tol (relative) over the
        # last 20 % of its steps (deepsaliency.attack); null = always run num_iter steps.
        "tol": _optional(_float(0, 1), "null (always num_iter steps)"),
        "seed": _int(0),
        # One nested section per attacked method: its stage depends on it alone, so a sweep of
        # attack.saliency.num_iter reruns attack@saliency and what is downstream, nothing else.
        "saliency": {**_ATTACK_RUN},
        "input_x_gradient": {**_ATTACK_RUN},
        "integrated_gradients": {**_ATTACK_RUN, "n_steps": _int(1), "resample": _bool()},
        "smoothgrad": {**_ATTACK_RUN, "nt_samples": _int(1), "resample": _bool()},
        "rise": {**_ATTACK_RUN, "masks": _int(1), "resample": _bool()},
    },
    "pgd": {
        "eps": _float(0, 1, lo_open=True),
        "step_size": _float(0, 1, lo_open=True),
        "steps": _int(1),
        "seed": _int(0),
    },
    "metrics": {
        "top_k": _int(1),
        # Every mean in reports/metrics.json gets a seeded bootstrap CI (deepsaliency.metrics.statistics).
        "bootstrap": {"n_resamples": _int(100), "seed": _int(0)},
    },
    # The leaderboard's ranking, computed by the metrics stage: budget (/255) to rank at, and the paired tests' α.
    "report": {
        "rank_eps": _optional(_float(0, 255, lo_open=True), "null (the largest budget)"),
        "alpha": _float(0, 1, lo_open=True, hi_open=True),
    },
    "faithfulness": {
        "step": _int(1),
        "substrate": _choice("mean", "zero", "blur"),
        "blur_kernel": Field(
            lambda v: v if _int(1).check(v) is not _INVALID and v % 2 == 1 else _INVALID, "an odd integer ≥ 1"
        ),
        "blur_sigma": _float(0, lo_open=True),
        "batch_size": _int(1),
        "seed": _int(0),
        "random_cell": _int(1),
        "adversarial": _choice("diagonal", "all", "none"),
    },
    "plots": {
        "signed_cmap": _colormap(),
        "map_cmap": _colormap(),
        "dpi": _int(30, 600),
        "format": _choice("png"),
        "overlay": _bool(),
        "overlay_alpha": _float(0, 1, lo_open=True),
        "clip_percentile": _float(50, 100),
        "min_max_methods": _subset(METHODS, min_len=0),
    },
    # Model-parameter randomisation (Adebayo et al. 2018), stages/sanity.py;
    # variants = deepsaliency.metrics.sanity.MODES.
    "sanity": {
        "methods": _subset(METHODS),
        "variants": _subset(("cascading", "independent")),
        "max_depth": _optional(_int(0), "null (every layer group)"),
        "seed": _int(0),
    },
    # Max-sensitivity and infidelity (Yeh et al. 2019, captum.metrics), stages/stability.py.
    "stability": {
        "methods": _subset(METHODS),
        "radius": _float(0, 1, lo_open=True),
        "n_perturb_samples": _int(1),
        "seed": _int(0),
        "batch_size": _int(1),
    },
}

#: Sections whose keys must all be present; a missing key is as bad as a typo.
REQUIRED_SECTIONS = tuple(SCHEMA)


def validate(params: dict, source: str = "params.yaml") -> dict:
    """Check ``params`` against :data:`SCHEMA` and the cross-key rules; return it cleaned.

    Raises:
        ParamError: the first problem, as one line naming ``section.key``, the value and what is allowed.
    """
    if not isinstance(params, dict):
        raise ParamError(f"{source}: expected a mapping of sections, got {type(params).__name__}")
    unknown = [s for s in params if s not in SCHEMA]
    if unknown:
        raise ParamError(f"{source}: unknown section {unknown[0]!r} (allowed: {', '.join(SCHEMA)})")
    clean = {section: validate_section(section, params.get(section), source) for section in SCHEMA}
    _cross_checks(clean)
    return clean


def validate_section(section: str, values: Any, source: str = "params.yaml") -> dict:
    """Check one section of :data:`SCHEMA`: every key present, none unknown, each value allowed."""
    return _validate_mapping(section, SCHEMA[section], values, source)


def _validate_mapping(path: str, fields: dict[str, Any], values: Any, source: str) -> dict:
    if values is None and not fields:
        values = {}
    if not isinstance(values, dict):
        raise ParamError(f"{source}: section {path!r} is missing or not a mapping")
    for key in values:
        if key not in fields:
            raise ParamError(f"{path}.{key}: unknown key (allowed in {path!r}: {', '.join(fields) or 'none'})")
    clean = {}
    for key, field in fields.items():
        if key not in values:
            allowed = f"a mapping with keys {', '.join(field)}" if isinstance(field, dict) else field.allowed
            raise ParamError(f"{path}.{key}: missing (expected {allowed})")
        if isinstance(field, dict):
            clean[key] = _validate_mapping(f"{path}.{key}", field, values[key], source)
            continue
        value = field.check(values[key])
        if value is _INVALID:
            raise ParamError(f"{path}.{key}: {values[key]!r} is not allowed (expected {field.allowed})")
        clean[key] = value
    return clean


def _cross_checks(p: dict) -> None:
    size = p["model"]["input_size"]
    if p["rise"]["s"] > size:
        raise ParamError(f"rise.s: {p['rise']['s']!r} is not allowed (an integer in [1, {size}], model.input_size)")
    # What Captum's Occlusion asserts (window fits, stride ≤ window), checked here instead of mid-stage.
    check_occlusion(
        p["occlusion"]["window"],
        p["occlusion"]["stride"],
        (size, size),
        ("occlusion.window", "occlusion.stride"),
        "model.input_size",
    )
    # Captum's riemann_* rules need two or more steps; the attack uses the quadrature unless it resamples.
    integration = p["integrated_gradients"]["integration"]
    check_ig_steps(p["integrated_gradients"]["n_steps"], integration, "integrated_gradients.n_steps")
    if not p["attack"]["integrated_gradients"]["resample"]:
        check_ig_steps(
            p["attack"]["integrated_gradients"]["n_steps"], integration, "attack.integrated_gradients.n_steps"
        )
    smoothed = p["integrated_gradients_smoothed"]
    check_ig_steps(smoothed["n_steps"], smoothed["integration"], "integrated_gradients_smoothed.n_steps")
    # torchvision's reflect padding of the insertion blur needs kernel // 2 < the image side.
    if p["faithfulness"]["blur_kernel"] // 2 >= size:
        raise ParamError(
            f"faithfulness.blur_kernel: {p['faithfulness']['blur_kernel']!r} is not allowed "
            f"(an odd integer in [1, {2 * size - 1}] for model.input_size {size})"
        )
    device = p["model"]["device"]
    if not (device in ("auto", "cpu") or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ParamError(f"model.device: {device!r} is not allowed (expected auto, cpu, cuda or cuda:N)")
    pixels = size * size
    for key, value, top in (
        ("metrics.top_k", p["metrics"]["top_k"], pixels),
        ("faithfulness.step", p["faithfulness"]["step"], pixels),
        ("faithfulness.random_cell", p["faithfulness"]["random_cell"], size),
    ):
        if value > top:
            raise ParamError(f"{key}: {value!r} is not allowed (an integer in [1, {top}] for model.input_size {size})")
    missing = [m for m in p["attack"]["methods"] if m not in p["explain"]["methods"]]
    if missing:
        raise ParamError(
            f"attack.methods: {missing[0]!r} is not allowed (attacked methods must also be in explain.methods: "
            f"{', '.join(p['explain']['methods'])})"
        )
    if p["attack"]["rise"]["masks"] > p["rise"]["N"]:
        raise ParamError(
            f"attack.rise.masks: {p['attack']['rise']['masks']!r} is not allowed "
            f"(an integer in [1, {p['rise']['N']}], rise.N)"
        )
    for method in ATTACK_METHODS:
        run = p["attack"][method]
        if run["lr_end"] > run["lr"]:
            raise ParamError(
                f"attack.{method}.lr_end: {run['lr_end']!r} is not allowed "
                f"(a number in [0, {run['lr']}], attack.{method}.lr)"
            )
    if p["explain"]["target"] is not None and p["explain"]["target"] > 999:
        raise ParamError(
            f"explain.target: {p['explain']['target']!r} is not allowed (null or a class index in [0, 999])"
        )
    rank_eps, budgets = p["report"]["rank_eps"], p["attack"]["eps"]
    if rank_eps is not None and not any(abs(rank_eps - e) <= 1e-9 for e in budgets):
        raise ParamError(
            f"report.rank_eps: {rank_eps:g} is not allowed (null or one of attack.eps: "
            f"{', '.join(f'{e:g}' for e in budgets)})"
        )
    unshown = [m for m in p["plots"]["min_max_methods"] if m not in p["explain"]["methods"]]
    if unshown:
        raise ParamError(
            f"plots.min_max_methods: {unshown[0]!r} is not allowed "
            f"(methods must also be in explain.methods: {', '.join(p['explain']['methods'])})"
        )


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate ``params.yaml``.

    Returns:
        The validated parameters as nested dicts.

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
