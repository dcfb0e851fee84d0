"""A generic, reversible module swap: replace submodules of a network in place, put them back.

The attack's network surgery (:mod:`deepsaliency.nn.softplus` swaps activations,
:mod:`deepsaliency.nn.fastgrad` swaps convolutions) needs to replace modules of
the caller's network for the duration of a ``with`` block and restore the very same
objects afterwards, even on an exception. PyTorch has no such utility (``torch.fx``
rewrites a copy of the graph instead), so it is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn


class ModuleSwap:
    """Record of modules replaced in a network, able to put the originals back.

    Attributes:
        replaced: ``(parent, child_name, original, replacement)`` for every swap.
    """

    def __init__(self) -> None:
        self.replaced: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []

    def swap(self, root: nn.Module, make: Callable[[nn.Module], nn.Module | None]) -> ModuleSwap:
        """Replace each descendant ``m`` of ``root`` for which ``make(m)`` is not None; returns ``self``."""
        # Collect first, then replace: mutating while walking named_modules is unsafe.
        todo = []
        for parent in root.modules():
            for name, child in parent.named_children():
                new = make(child)
                if new is not None:
                    todo.append((parent, name, child, new))
        for parent, name, child, new in todo:
            setattr(parent, name, new)
            self.replaced.append((parent, name, child, new))
        return self

    def restore(self) -> None:
        """Put every original module object back, newest swap first."""
        while self.replaced:
            parent, name, original, _ = self.replaced.pop()
            setattr(parent, name, original)

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Temporarily put the originals back (e.g. to evaluate the original network), then re-swap."""
        for parent, name, original, _ in reversed(self.replaced):
            setattr(parent, name, original)
        try:
            yield
        finally:
            for parent, name, _, new in self.replaced:
                setattr(parent, name, new)

    @property
    def replacements(self) -> list[nn.Module]:
        return [new for _, _, _, new in self.replaced]
