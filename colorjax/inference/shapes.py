"""Grouping photos by the shape the network renders them at, so a batch compiles once."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batches_by_shape(
    items: Iterable[tuple[T, Hashable]], batch_size: int, max_pending: int | None = None
) -> Iterator[tuple[Hashable, list[T]]]:
    """(shape, items) batches of at most ``batch_size`` items sharing a shape, from
    (item, shape) pairs consumed lazily.

    A batch is yielded as soon as it is full; once more than ``max_pending`` items wait for
    their batch to fill, the largest partial batch goes early; the rest go at the end.
    """
    pending: dict[Hashable, list[T]] = {}
    waiting = 0
    for item, shape in items:
        pending.setdefault(shape, []).append(item)
        waiting += 1
        ready = shape
        if len(pending[shape]) < batch_size:
            if max_pending is None or waiting <= max_pending:
                continue
            ready = max(pending, key=lambda s: len(pending[s]))
        waiting -= len(pending[ready])
        yield ready, pending.pop(ready)
    yield from pending.items()
