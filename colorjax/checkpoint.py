"""Orbax checkpoints of the whole train state, with the run's config beside the weights.

Keeps the latest ``keep`` checkpoints plus the best one by a validation metric, saves every
N steps and every M minutes, and restores onto any sharding (so a run saved on 4 devices
resumes on 1 and back).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as policy

from colorjax.config import CheckpointConfig, Config, to_dict


class Checkpoints:
    """A run's ``checkpoints/`` folder: when to save, saving, and restoring."""

    def __init__(self, directory: str | Path, options: CheckpointConfig):
        self.directory = Path(directory).absolute()
        self.options = options
        keep = [
            policy.LatestN(n=max(options.keep, 1)),
            policy.BestN(
                get_metric_fn=lambda m: m[options.best_metric],
                n=1,
                keep_checkpoints_without_metrics=False,
            ),
        ]
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy.AnyPreservationPolicy(keep),
                enable_async_checkpointing=False,
                create=True,
            ),
            item_names=("state", "config"),
        )
        self._last_save_time = time.monotonic()

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The saved step with the best validation metric, or None."""
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        """Every saved step, oldest first."""
        return sorted(self.manager.all_steps())

    def due(self, step: int) -> bool:
        """Whether ``step`` is a scheduled save (every N steps or M minutes since the last)."""
        by_steps = self.options.every > 0 and step % self.options.every == 0
        elapsed = time.monotonic() - self._last_save_time
        by_time = self.options.minutes > 0 and elapsed >= 60 * self.options.minutes
        return by_steps or by_time

    def save(
        self, step: int, state: Any, config: Config, metrics: dict[str, float] | None = None
    ) -> None:
        """Write ``state`` and ``config`` as checkpoint ``step`` (replacing one of that step)."""
        if step in self.manager.all_steps():
            self.manager.delete(step)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(to_dict(config))
            ),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()
        self._last_save_time = time.monotonic()

    def restore(self, target: Any = None, step: int | None = None) -> Any:
        """The state of ``step`` (default latest) laid out like ``target`` (arrays or
        ShapeDtypeStructs with shardings); without a target, as saved, in nested dicts."""
        step = self.latest_step() if step is None else step
        abstract = None if target is None else jax.tree.map(_abstract, target)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        return restored["state"]

    def close(self) -> None:
        """Finish pending writes."""
        self.manager.wait_until_finished()
        self.manager.close()


def _abstract(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))
