"""Will the train step fit the device? The search for the largest batch or image size that
does, and the start-up check that stops a run before its first step when the step cannot.

The check runs on an accelerator (whose allocator reports its memory limit) or wherever
``COLORJAX_DEVICE_MEMORY_MB`` names a device memory to plan against (tests fake a small
device with it).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
from jax.sharding import Mesh

from colorjax.config import Config, apply_overrides
from colorjax.models import receptive_field
from colorjax.training.devices import RUNTIME_HEADROOM
from colorjax.training.plan import plan_train_step

DEVICE_MEMORY_ENV = "COLORJAX_DEVICE_MEMORY_MB"
MB = 2**20


class StepDoesNotFitError(RuntimeError):
    """The train step needs more device memory than the device has; the message names the
    settings that would fit."""


def largest_fitting(fits: Callable[[int], bool], start: int, ceiling: int) -> int | None:
    """The largest ``n`` in [1, ceiling] with ``fits(n)``, for a ``fits`` that holds up to some
    ``n`` and not above (memory grows with the batch and the image): doubling or halving from
    ``start``, then bisection. None when not even 1 fits."""
    low, high = (start, None) if fits(start) else (None, start)
    while low is None and high > 1:
        high_half = high // 2
        low, high = (high_half, high) if fits(high_half) else (None, high_half)
    if low is None:
        return None
    while high is None and low < ceiling:
        doubled = min(2 * low, ceiling)
        low, high = (doubled, None) if fits(doubled) else (low, doubled)
    if high is None:
        return low
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def size_multiple(config: Config) -> int:
    """Image sizes the generator takes without padding: multiples of ``2 ** model.depth``."""
    return 2**config.model.depth


def smallest_size(config: Config) -> int:
    """The smallest image size the networks take: the discriminator's receptive field,
    rounded up to the generator's multiple."""
    multiple = size_multiple(config)
    return -(-receptive_field(config.disc.layers) // multiple) * multiple


def device_memory_limit() -> int | None:
    """Bytes the train step may take per device: ``COLORJAX_DEVICE_MEMORY_MB`` if set, else
    the accelerator allocator's limit; less the runtime headroom. None on a CPU."""
    if os.environ.get(DEVICE_MEMORY_ENV):
        limit = float(os.environ[DEVICE_MEMORY_ENV]) * MB
    elif jax.default_backend() == "cpu":
        return None
    else:
        limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
        if limit is None:
            return None
    return int(limit * (1 - RUNTIME_HEADROOM))


def check_step_fits(config: Config, mesh: Mesh) -> None:
    """Raise StepDoesNotFitError when ``config``'s train step needs more memory per device
    than ``device_memory_limit``, naming the settings that would fit."""
    limit = device_memory_limit()
    if limit is None:
        return
    needed = plan_train_step(config, mesh).step.total
    if needed <= limit:
        return
    raise StepDoesNotFitError(
        f"the train step needs {needed / MB:.1f} MB per device but {limit / MB:.1f} MB are "
        f"usable (the device's limit less {RUNTIME_HEADROOM:.0%} headroom), so it would stop "
        f"with an out-of-memory error. {_remedies(config, mesh, limit)} "
        "(--no-plan skips this check)"
    )


def _remedies(config: Config, mesh: Mesh, limit: int) -> str:
    """One sentence on the single changes that would fit, with what each needs."""
    planned: dict[str, int] = {}

    def needed(change: str) -> int:
        if change not in planned:
            changed = apply_overrides(config, [change])
            planned[change] = plan_train_step(changed, mesh).step.total
        return planned[change]

    needs = {label: needed(change) for change, label in _changes(config, mesh, needed, limit)}
    fitting = [f"--set {label} ({n / MB:.1f} MB)" for label, n in needs.items() if n <= limit]
    if fitting:
        return f"These would fit: {', '.join(fitting)}."
    tried = ", ".join(f"{label} ({n / MB:.1f} MB)" for label, n in needs.items())
    return f"None of these fits alone, so combine them: {tried}."


def _changes(
    config: Config, mesh: Mesh, needed: Callable[[str], int], limit: int
) -> list[tuple[str, str]]:
    """(override, how the message names it) of the settings that lower the step's memory: a
    smaller batch (the first halving that fits), rematerialisation, half precision (bfloat16
    and float16 hold the same), half the image size."""
    labelled = []
    batch = _half_batch(config, mesh, needed, limit)
    if batch is not None:
        labelled.append((f"data.batch_size={batch}",) * 2)
    for mode in ("blocks", "full"):
        if mode != config.model.remat:
            labelled.append((f"model.remat={mode}",) * 2)
    if config.model.dtype == "float32":
        labelled.append(("model.dtype=bfloat16", "model.dtype=bfloat16 (or float16)"))
    multiple = size_multiple(config)
    half_size = config.data.image_size // 2 // multiple * multiple
    if half_size >= smallest_size(config):
        labelled.append((f"data.image_size={half_size}",) * 2)
    return labelled


def _half_batch(config: Config, mesh: Mesh, needed: Callable[[str], int], limit: int) -> int | None:
    """The first of batch/2, batch/4, ... (multiples of the devices) whose step fits, else the
    smallest of them; None when the batch cannot shrink."""
    devices = mesh.size
    batch = config.data.batch_size // 2 // devices * devices
    if batch < devices:
        return None
    while batch // 2 >= devices and needed(f"data.batch_size={batch}") > limit:
        batch = batch // 2 // devices * devices
    return batch
