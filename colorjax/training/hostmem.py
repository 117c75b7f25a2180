"""Handing freed host memory back to the operating system.

XLA:CPU compiles with large short-lived allocations; glibc keeps the freed pages in its
arenas, and the train step's buffers are then allocated on top of them. Trimming once after
each compilation lowers the peak resident memory of a pix2pix_unet128 step by ~0.5 GB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Any


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def release_freed_memory() -> bool:
    """Return the allocator's free pages to the OS; False where the C library cannot
    (no glibc ``malloc_trim``)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def release_after_first_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, releasing freed memory once after its first call (when a jitted ``fn``
    has compiled)."""
    called = False

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        nonlocal called
        result = fn(*args, **kwargs)
        if not called:
            called = True
            release_freed_memory()
        return result

    return wrapper
