"""Argument validators shared by the library functions, by argument name.

Each checker returns the cleaned value or raises :class:`~deepsaliency.errors.ParamError`
with one line naming the argument (``name``), the value and what is allowed. Library
functions pass their own argument's name (``target``, ``window``); the stages pass the
``params.yaml`` key (``explain.target``). Hand-written: these are a few lines of type and
range checks that no library offers with this message format.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is checked: params validation stays torch-free
    import torch
    from torch import nn

from .errors import ParamError


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of ``value`` cut to ``limit`` characters (a 1000-element target stays one short line)."""
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    if torch is not None and isinstance(value, torch.Tensor):
        text = f"tensor({value.tolist()!r})" if value.numel() <= 16 else f"tensor of shape {tuple(value.shape)}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer in [{low}, {high}]"
    if low is not None:
        return f"an integer ≥ {low}"
    return "an integer" if high is None else f"an integer ≤ {high}"


def check_int(
    value: Any,
    name: str,
    low: int | None = None,
    high: int | None = None,
    why: str = "",
    allowed: str = "",
) -> int:
    """``value`` as an int in [low, high] (None: unbounded); bool is not an integer.

    ``allowed`` replaces the generated description of the range in the message (e.g. ``"None or an
    integer ≥ 1"`` where the caller accepts None before calling this).

    Raises:
        ParamError: ``"<name>: <value> is not allowed (an integer ≥ low[, why])"``.
    """
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        allowed = allowed or _int_range(low, high)
        raise ParamError(f"{name}: {_short(value)} is not allowed ({allowed}{', ' + why if why else ''})")
    return int(value)


def check_float(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allowed: str = "",
) -> float:
    """``value`` as a finite float in the interval [low, high] (``*_open``: the bound excluded).

    ``allowed`` replaces the generated ``a finite number in [low, high]`` in the message.

    Raises:
        ParamError: not a finite number, or outside the interval.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    v = float(value) if ok else math.nan
    ok = ok and math.isfinite(v)
    ok = ok and (low is None or v > low or (v == low and not low_open))
    ok = ok and (high is None or v < high or (v == high and not high_open))
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        allowed = allowed or f"a finite number in {left}{lo}, {hi}{right}"
        raise ParamError(f"{name}: {_short(value)} is not allowed ({allowed})")
    return v


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a bool (numpy's too); 0, 1 and strings are not.

    Raises:
        ParamError: ``"<name>: <value> is not allowed (True or False)"``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ParamError(f"{name}: {_short(value)} is not allowed (True or False)")
    return bool(value)


def check_choice(value: Any, name: str, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``.

    Raises:
        ParamError: anything else, naming the options.
    """
    if not isinstance(value, str) or value not in options:
        raise ParamError(f"{name}: {_short(value)} is not allowed (one of {', '.join(options)})")
    return value


def num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """How many classes ``model`` scores: ``len(model.labels)`` for a :class:`deepsaliency.Model`
    with labels, else the width of the logits of one forward pass on ``x[:1]`` (B, 3, H, W)."""
    import torch

    labels = getattr(model, "labels", None)
    if labels:
        return len(labels)
    with torch.no_grad():
        return int(model(x[:1].detach()).shape[-1])


def check_target(target: Any, n_images: int, num_classes: int, name: str = "target") -> torch.Tensor:
    """One class index per image, checked.

    Args:
        target: an int (numpy ints too), a sequence of ints, or a 0-d / 1-d integer tensor or
            array: one class for all images, or exactly one per image. ``bool`` is not a class.
        n_images: the batch size B the targets are for (≥ 1).
        num_classes: the number of classes K of the model's output.
        name: the argument's name in messages (``target``, or ``explain.target`` from a stage).

    Returns:
        A CPU ``torch.LongTensor`` of shape (B,), each entry in [0, K).

    Raises:
        ParamError: a wrong type, a value outside [0, K − 1], or a count that is neither 1 nor B,
            as one line naming ``name``.
    """
    import torch

    allowed = f"a class index in [0, {num_classes - 1}]"
    if n_images > 1:
        allowed += f", one for all {n_images} images or exactly one per image"
    if isinstance(target, (torch.Tensor, np.ndarray)):
        values = torch.as_tensor(target)
        if values.dim() > 1 or values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
            raise ParamError(
                f"{name}: {_short(target)} is not allowed ({allowed}; got dtype {values.dtype}, "
                f"{values.dim()} dimensions)"
            )
        values = values.detach().cpu().reshape(-1).long()
    elif _is_int(target):
        values = torch.tensor([int(target)])
    elif isinstance(target, Sequence) and not isinstance(target, (str, bytes)) and all(_is_int(t) for t in target):
        values = torch.tensor([int(t) for t in target], dtype=torch.long)
    else:
        raise ParamError(f"{name}: {_short(target)} is not allowed ({allowed})")
    if len(values) not in (1, n_images):
        raise ParamError(f"{name}: {len(values)} values for {n_images} images is not allowed ({allowed})")
    bad = ((values < 0) | (values >= num_classes)).nonzero()
    if len(bad):
        where = f" (position {int(bad[0])})" if len(values) > 1 else ""
        raise ParamError(f"{name}: {int(values[bad[0]])}{where} is not allowed ({allowed})")
    return values.expand(n_images).clone()
