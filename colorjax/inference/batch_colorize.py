"""Colorize many photo files: decode ahead, batch by render shape, write behind.

    plan = plan_outputs(find_inputs(["scans/"]), Path("out"), ".png", overwrite=False)
    report = colorize_files(colorizer, plan.jobs, batch_size=8, progress=True)
    report.written, report.skipped

Three stages overlap: a thread pool reads and decodes photos ahead of the network (their
full-resolution L and its render-size version); ``NETWORK_THREADS`` threads run the generator
on batches of photos that share a render shape (padded to ``batch_size``, so that each shape
compiles once); a third pool recombines every photo at full size, encodes and writes it.
The queues between the stages are bounded: about ``6 * batch_size + 2 * workers`` photos at
most are held at once, however many files there are.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import jax
import numpy as np
from tqdm.auto import tqdm

from colorjax import inference
from colorjax.imaging import decoding, writing
from colorjax.imaging.output_plan import Job, Skipped
from colorjax.inference import Colorizer

T = TypeVar("T")
R = TypeVar("R")
# On CPU a batch costs more per photo than single photos (bigger activations than the caches
# hold: measured with experiments.bench --only colorize); accelerators gain from batches.
CPU_BATCH_SIZE, ACCELERATOR_BATCH_SIZE = 1, 8
# Two network calls at once: on CPU two single-photo calls side by side keep both cores busier
# than one call spread over them (about 15% more photos/s with the shipped model).
NETWORK_THREADS = 2


def default_batch_size() -> int:
    """Photos per network call unless told otherwise: 1 on CPU, 8 on GPU/TPU."""
    return CPU_BATCH_SIZE if jax.default_backend() == "cpu" else ACCELERATOR_BATCH_SIZE


@dataclasses.dataclass
class Report:
    """What a run produced: the files written and the inputs skipped (with why)."""

    written: list[Path] = dataclasses.field(default_factory=list)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Decoded:
    job: Job
    lightness: np.ndarray  # full resolution, 0..100
    small: np.ndarray  # at the render shape
    exif: bytes | None


def _decode(job: Job, colorizer: Colorizer, render_size: int | None) -> _Decoded | Skipped:
    try:
        rgb, exif = decoding.load_photo(job.source)
    except decoding.ImageDecodeError as err:
        return Skipped(job.source, str(err).removeprefix(f"{err.name}: "))
    except OSError as err:
        return Skipped(job.source, f"cannot read it: {err.strerror or err}")
    lightness = inference.full_resolution_l(rgb)
    shape = colorizer.render_shape(*lightness.shape, render_size)
    return _Decoded(job, lightness, inference.resize_plane(lightness, shape), exif)


def _predict(
    batch: list[_Decoded], colorizer: Colorizer, rows: int, flip: bool
) -> tuple[list[_Decoded], np.ndarray]:
    """The batch with its network ab, run as ``rows`` photos (gray padding rows)."""
    network_l = inference.network_input([d.small for d in batch], pad_to=rows)
    return batch, colorizer.predict_ab(network_l, flip)[: len(batch)]


def _write(
    decoded: _Decoded, ab_small: np.ndarray, chroma: float, fmt: writing.OutputFormat
) -> Path | Skipped:
    rgb = inference.recombine(decoded.lightness, ab_small, chroma)
    target = decoded.job.target
    try:
        return writing.write_image(rgb, target, fmt, decoded.exif)
    except (OSError, ValueError) as err:
        return Skipped(decoded.job.source, f"cannot write {target}: {err}")


def _in_order(pool: Executor, fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``pool``, at most ``ahead`` calls submitted and not yet
    consumed; results in the order of ``items``."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def colorize_files(
    colorizer: Colorizer,
    jobs: Sequence[Job],
    *,
    render_size: int | None = None,
    flip: bool = False,
    chroma: float = 1.0,
    fmt: writing.OutputFormat = writing.PNG,
    batch_size: int | None = None,
    workers: int = 2,
    progress: bool = False,
) -> Report:
    """Colorize every job's source into its target (as ``fmt``, with the source's EXIF);
    ``render_size``, ``flip`` and ``chroma`` as in ``Colorizer.colorize``; ``batch_size``
    defaults to ``default_batch_size()``. A file that cannot be read, decoded or written is
    skipped with its reason; the others are still done."""
    batch_size = batch_size or default_batch_size()
    report = Report()
    decode = functools.partial(_decode, colorizer=colorizer, render_size=render_size)
    rows = min(batch_size, len(jobs))  # every network call has this batch size
    predict = functools.partial(_predict, colorizer=colorizer, rows=rows, flip=flip)
    with (
        tqdm(total=len(jobs), unit="image", disable=not progress, dynamic_ncols=True) as bar,
        ThreadPoolExecutor(workers, thread_name_prefix="decode") as readers,
        ThreadPoolExecutor(NETWORK_THREADS, thread_name_prefix="network") as networks,
        ThreadPoolExecutor(workers, thread_name_prefix="write") as writers,
    ):

        def finish(result: Path | Skipped) -> None:
            (report.skipped if isinstance(result, Skipped) else report.written).append(result)
            bar.update()

        def decoded_with_shapes(results: Iterable[_Decoded | Skipped]):
            for result in results:
                if isinstance(result, Skipped):
                    finish(result)
                else:
                    yield result, result.small.shape

        decoded = decoded_with_shapes(_in_order(readers, decode, jobs, batch_size + workers))
        writes: collections.deque = collections.deque()
        shaped = inference.batches_by_shape(decoded, batch_size, 2 * batch_size)
        batches = (batch for _, batch in shaped)
        for batch, ab in _in_order(networks, predict, batches, NETWORK_THREADS):
            for item, ab_small in zip(batch, ab, strict=True):
                writes.append(writers.submit(_write, item, ab_small, chroma, fmt))
            while len(writes) > batch_size + workers:
                finish(writes.popleft().result())
        while writes:
            finish(writes.popleft().result())
    return report
