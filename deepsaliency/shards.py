"""Splitting a prepared image set into shards that stay put when images come and go.

A study caches its expensive work per shard (one DVC stage item per shard), so a
shard must depend only on its own images: each image's shard is a stable hash of
its name, never its position in a sorted list. Adding or removing one image
changes only the shard it falls in; changing the number of shards reshuffles all.

Written here (a dozen lines on top of :mod:`hashlib`): no library assigns DVC
stage shards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from ._validate import check_int

T = TypeVar("T")


def shard_of(name: str, shards: int) -> int:
    """The shard of an image, from the SHA-1 of its name (stable across runs, machines and Python versions).

    Args:
        name: the image's stem (``chelsea``) as the manifest writes it.
        shards: the number of shards, ≥ 1.

    Returns:
        An index in ``[0, shards)``.

    Raises:
        ParamError: ``shards`` is not an integer ≥ 1.
    """
    shards = check_int(shards, "shards", 1)
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") % shards


def shard_name(index: int) -> str:
    """The folder / DVC item name of shard ``index``: ``shard-000``, ``shard-001``, ..."""
    return f"shard-{int(index):03d}"


def split(names: Iterable[str], shards: int) -> dict[int, list[str]]:
    """``{shard: [names in the given order]}`` for every shard, empty shards included."""
    out: dict[int, list[str]] = {i: [] for i in range(check_int(shards, "shards", 1))}
    for name in names:
        out[shard_of(name, shards)].append(name)
    return out


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of ``size`` (the last may be shorter).

    Batch boundaries are part of the result on a CPU (a batch of 4 and four of 1 give maps that differ by
    ≈ 0.5 % of their maximum), so every backend cuts batches with this one function.
    """
    size = check_int(size, "batch_size", 1)
    for start in range(0, len(items), size):
        yield items[start : start + size]
