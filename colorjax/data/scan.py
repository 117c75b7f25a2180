"""The build-time scan of a source's images: what was found, decoded and skipped, and why."""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from colorjax.imaging import decoding

GRAY, UNREADABLE = "gray", "unreadable"


TRAIN, EVAL = "train", "eval"


FULL_REGION = (0.0, 0.0, 1.0, 1.0)  # y0, x0, y1, x1 as fractions of the decoded image


_SCAN_THREADS = min(8, 2 * (os.cpu_count() or 1))


_SCAN_CHUNK = 256


Probe = decoding.ImageInfo | str  # what the scan learned about one image: its info or a reason


@dataclasses.dataclass(frozen=True)
class Item:
    """One training or evaluation example of a source: an encoded image, optionally a region."""

    key: str  # file path, or "NAME:SPLIT#position" for a TFDS record
    split: str  # TRAIN | EVAL
    region: tuple[float, float, float, float] = FULL_REGION


@dataclasses.dataclass(frozen=True)
class DataStats:
    """What the build-time scan found. Counts are of distinct images; ``None`` = not scanned."""

    source: str
    split: str
    found: int
    decoded: int
    skipped: dict[str, int]
    train: int | None
    eval: int | None
    width: tuple[int, int, int]  # min, median, max of the decoded images
    height: tuple[int, int, int]

    def summary(self) -> str:
        """One line for the log."""
        skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
        counts = ", ".join(
            f"{name} {n}" for name, n in ((TRAIN, self.train), (EVAL, self.eval)) if n is not None
        )
        return (
            f"data {self.source} [{self.split}]: found {self.found}, decoded {self.decoded}, "
            f"skipped {sum(self.skipped.values())}{f' ({skipped})' if skipped else ''}; "
            f"{counts}; width {'/'.join(map(str, self.width))}, "
            f"height {'/'.join(map(str, self.height))} (min/median/max)"
        )


def probe_bytes(data: bytes, name: str) -> Probe:
    try:
        return decoding.probe_image(data, name)
    except decoding.ImageDecodeError as err:
        return err.reason


@functools.lru_cache(maxsize=1 << 20)
def _probe_file_version(path: str, size: int, mtime_ns: int) -> Probe:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return UNREADABLE
    return probe_bytes(data, path)


def probe_file(path: str) -> Probe:
    """Probe of the file at ``path``, remembered for as long as its size and mtime hold."""
    try:
        stat = os.stat(path)
    except OSError:
        return UNREADABLE
    return _probe_file_version(path, stat.st_size, stat.st_mtime_ns)


def threaded_map(fn: Callable[[Any], Probe], inputs: Iterable[Any]) -> list[Probe]:
    """``[fn(x) for x in inputs]`` on a thread pool, consuming ``inputs`` chunk by chunk."""
    inputs, results = iter(inputs), []
    with ThreadPoolExecutor(_SCAN_THREADS) as pool:
        while chunk := list(itertools.islice(inputs, _SCAN_CHUNK)):
            results += pool.map(fn, chunk)
    return results


def is_usable(probe: Probe, skip_gray: bool) -> bool:
    return isinstance(probe, decoding.ImageInfo) and not (skip_gray and probe.gray)


def _skip_reason(probe: Probe, skip_gray: bool) -> str | None:
    if isinstance(probe, str):
        return probe
    return GRAY if skip_gray and probe.gray else None


def _min_median_max(values: Sequence[int]) -> tuple[int, int, int]:
    if not values:
        return (0, 0, 0)
    return min(values), int(statistics.median(values)), max(values)


def scan_stats(
    source: str, split: str, items: Sequence[Item], probes: dict[str, Probe], skip_gray: bool
) -> DataStats:
    """Counts over the distinct images behind ``items``; ``probes`` maps item key -> probe."""
    infos = [p for p in probes.values() if isinstance(p, decoding.ImageInfo)]
    reasons = (_skip_reason(p, skip_gray) for p in probes.values())
    kept = collections.Counter(it.split for it in items if is_usable(probes[it.key], skip_gray))
    splits = {it.split for it in items}
    return DataStats(
        source=source,
        split=split,
        found=len(probes),
        decoded=len(infos),
        skipped=dict(collections.Counter(r for r in reasons if r is not None)),
        train=kept[TRAIN] if TRAIN in splits else None,
        eval=kept[EVAL] if EVAL in splits else None,
        width=_min_median_max([i.width for i in infos]),
        height=_min_median_max([i.height for i in infos]),
    )
