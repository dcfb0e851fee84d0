"""The state a library call leaves a model in: exactly the one it found.

:func:`library_state` (a context manager) and :func:`preserves_model_state` (a decorator) put a model into
eval mode with gradients off and the caller's hooks set aside for the duration of a library call, and restore
every flag and hook afterwards. Importable from :mod:`deepsaliency.models` as well.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from torch import nn

#: Per-module hook dictionaries of ``nn.Module`` that :func:`library_state` sets aside.
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)
_ACTIVE = threading.local()  # ids of the models inside library_state on this thread


@contextmanager
def library_state(model: Any) -> Iterator[Any]:
    """Put ``model`` into the state the library computes in, and put it back EXACTLY afterwards.

    Inside the block every module is in eval mode (batch norm uses its running statistics and
    never updates them; dropout is off), no parameter requires grad (so no ``.grad`` is ever
    written) and the caller's hooks (forward, forward-pre, backward; per module) are set aside,
    so results do not depend on how the caller left the model. On exit, even by an exception,
    each module's ``training`` flag, each parameter's ``requires_grad`` and the very hook
    dictionaries (so the caller's handles still remove them) are restored. Nested blocks on the
    same model cost nothing. Global hooks (``torch.nn.modules.module.register_module_*``) are
    left alone. No library does this, so it is written here.

    Args:
        model: an ``nn.Module`` (anything else is passed through untouched).

    Yields:
        ``model``.
    """
    active = getattr(_ACTIVE, "ids", None)
    if active is None:
        active = _ACTIVE.ids = set()
    if not isinstance(model, nn.Module) or id(model) in active:
        yield model
        return
    modules = list(model.modules())
    training = [m.training for m in modules]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    stashed = []
    active.add(id(model))
    try:
        for m in modules:
            # __dict__ directly: nn.Module.__setattr__ is slow and these are plain attributes
            saved = {k: m.__dict__[k] for k in _HOOK_DICTS if m.__dict__.get(k)}
            if saved:
                stashed.append((m, saved))
                m.__dict__.update({k: OrderedDict() for k in saved})
            m.training = False
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        active.discard(id(model))
        for m, flag in zip(modules, training, strict=True):
            m.training = flag
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        for m, saved in stashed:
            m.__dict__.update(saved)


_F = TypeVar("_F", bound=Callable[..., Any])


def preserves_model_state(fn: _F) -> _F:
    """Decorator: run ``fn(model, ...)`` inside :func:`library_state` of its ``model`` argument
    (the first positional argument, or ``model=``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with library_state(args[0] if args else kwargs.get("model")):
            return fn(*args, **kwargs)

    return cast(_F, wrapper)
