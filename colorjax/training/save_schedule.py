"""When a run saves: every ``ckpt.every`` steps, and once ``ckpt.minutes`` have passed since
the last save.

Every process must save at the same steps (a multi-host save is collective), so the clock that
decides is process 0's: its decision is shared with all processes. That exchange synchronises
the hosts, so it happens only at the steps where the loop pulls metrics anyway (every
``log.every`` steps); a single process decides on its own at every step.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from colorjax.config import CheckpointConfig


def clock() -> float:
    """Seconds on this process's monotonic clock."""
    return time.monotonic()


def agreed(flag: bool) -> bool:
    """Process 0's ``flag``, the same on every process (a collective: all processes call it)."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


class SaveSchedule:
    """Decides which steps the loop saves at; ``saved()`` restarts the clock."""

    def __init__(self, options: CheckpointConfig):
        self.options = options
        self._last_save = clock()

    def due(self, step: int, *, synced: bool) -> bool:
        """Whether ``step`` is a scheduled save. ``synced``: the loop has just pulled metrics
        from the devices, where the processes can exchange the time decision cheaply."""
        by_steps = self.options.every > 0 and step % self.options.every == 0
        return by_steps or self._time_is_up(synced)

    def _time_is_up(self, synced: bool) -> bool:
        if self.options.minutes <= 0 or not (synced or jax.process_count() == 1):
            return False
        return agreed(clock() - self._last_save >= 60 * self.options.minutes)

    def saved(self) -> None:
        """A save just finished: the minutes count from now."""
        self._last_save = clock()
