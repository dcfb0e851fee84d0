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
from .errors import ParamError

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
    """The folder name of shard ``index``: ``shard-0``, ``shard-1``, ... (unpadded: dvc.yaml writes
    ``shard-${item.shard}``)."""
    return f"shard-{int(index)}"


def shard_index(name: str) -> int:
    """The index of a shard folder or file name (``shard-12``, ``shard-12.csv`` → 12); -1 for another name."""
    tail = name.removeprefix("shard-").removesuffix(".csv")
    return int(tail) if name.startswith("shard-") and tail.isdigit() else -1


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


def stage_shard(args: Sequence[str], n_args: int, script: str, shards: Sequence[int]) -> tuple[list[str], int]:
    """Split a stage's command line into its ``n_args`` own arguments and the shard index after them.

    dvc.yaml passes the shard of each matrix item as the last argument; run by hand with a single shard
    (``compute.shards: [0]``) it may be left out.

    Args:
        args: the command-line arguments after the script name.
        n_args: how many come before the shard (e.g. 2 for ``<method> <eps>``).
        script: the script, for the message.
        shards: ``compute.shards``.

    Returns:
        ``(the first n_args arguments, the shard index)``; a wrong count of the first is the caller's to refuse.

    Raises:
        ParamError: the shard is not one of ``shards``, or is left out (exactly ``n_args`` arguments) while there
            are several.
    """
    args = list(args)
    if len(args) != n_args + 1:
        if len(shards) == 1 or len(args) != n_args:  # a wrong count of the own arguments: the caller says so
            return args, shards[0]
        raise ParamError(f"{script}: the shard is missing (the last argument, one of compute.shards: {list(shards)})")
    if not args[-1].isdigit() or int(args[-1]) not in shards:
        raise ParamError(f"{script}: shard {args[-1]!r} is not allowed (one of compute.shards: {list(shards)})")
    return args[:-1], int(args[-1])
