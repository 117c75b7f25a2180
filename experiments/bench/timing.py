"""Timing and memory helpers shared by the parts."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

INFER_REPEATS = 3


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parameter_count(tree) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


def memory(prefix: str = "") -> dict:
    """Peak host memory of this process so far and, where the device reports it (GPU),
    the device's peak."""
    device_peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    return {
        f"{prefix}peak_rss_mb": round(peak_rss_mb(), 1),
        f"{prefix}device_peak_mb": None if device_peak is None else round(device_peak / 2**20, 1),
    }


def ms(fn: Callable[[], object], repeats: int = INFER_REPEATS) -> float:
    return round(1000 * median_seconds(fn, repeats), 2)
