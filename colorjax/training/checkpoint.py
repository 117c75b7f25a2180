"""Orbax checkpoints of the whole train state, with the run's config beside the weights.

Keeps the latest ``keep`` checkpoints plus the best one by a validation metric (stored in the
checkpoint, so it survives restarts; ``save_schedule`` decides when to save), and restores
onto any sharding (so a run saved on 4 devices resumes on 1 and back).

Damage is expected (a session killed mid-sync, a partly synced Drive folder): a checkpoint
that does not restore is moved aside to ``damaged/`` (never deleted) by the run that owns the
folder, and readers fall back to the newest one that restores. A save that fails (disk full,
I/O error) stops with the free space named; orbax writes into ``<step>.orbax-checkpoint-tmp``
and renames it only once complete, so a half-written step is never listed; the next run that
owns the folder removes it.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as policy

from colorjax.config import CheckpointConfig, Config, to_dict

DAMAGED_DIR = "damaged"
PARTIAL_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's name for a step still being written
REASON_LENGTH = 160


class DamagedCheckpointError(ValueError):
    """A checkpoint does not restore: its files are missing, truncated or unreadable."""


class NoRestorableCheckpointError(ValueError):
    """None of a run's checkpoints restores; nothing was moved or deleted."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, I/O error); earlier checkpoints are intact."""


@dataclasses.dataclass(frozen=True)
class Damage:
    """A checkpoint that failed to restore, why, and where it was moved (if it was)."""

    step: int
    reason: str
    moved_to: Path | None = None


@dataclasses.dataclass
class Restored:
    """The state of the newest checkpoint that restored, and the damaged ones passed over."""

    step: int
    state: Any
    damaged: list[Damage]

    def fallback_note(self, verb: str) -> str | None:
        """``checkpoint 9 is damaged (why, moved to where); <verb> step 6`` in one line, or
        None if no checkpoint was passed over."""
        if not self.damaged:
            return None
        parts = []
        for damage in self.damaged:
            where = f", moved to {damage.moved_to}" if damage.moved_to else ""
            parts.append(f"checkpoint {damage.step} is damaged ({damage.reason}{where})")
        return f"{'; '.join(parts)}; {verb} step {self.step}"


class _Manager(ocp.CheckpointManager):
    """Orbax's manager, reading an unreadable metrics file as "no metrics" (orbax would
    refuse to list any step) so the checkpoint's state can still be restored."""

    def metrics(self, step: int) -> Any:
        try:
            return super().metrics(step)
        except ValueError as err:
            warnings.warn(
                f"checkpoint {step} in {self.directory}: unreadable metrics ({err}); "
                "it does not count for the best checkpoint",
                stacklevel=2,
            )
            return None


class Checkpoints:
    """A run's ``checkpoints/`` folder: saving and restoring (``save_schedule`` decides when).

    Only the ``writer`` (the training run holding the workdir's lock) creates, saves, removes
    leftovers of interrupted saves and moves damaged checkpoints aside; every other user
    (inference, evaluation, reports) reads without changing anything.
    """

    def __init__(self, directory: str | Path, options: CheckpointConfig, *, writer: bool = False):
        self.directory = Path(directory).absolute()
        self.options = options
        self.writer = writer
        if writer:
            self._remove_partial_saves()
        keep = [
            policy.LatestN(n=max(options.keep, 1)),
            policy.BestN(
                get_metric_fn=self._metric,
                n=1,
                keep_checkpoints_without_metrics=False,
            ),
        ]
        self.manager = _Manager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy.AnyPreservationPolicy(keep),
                best_fn=self._metric,  # makes orbax store each checkpoint's metrics with it
                best_mode="max",
                enable_async_checkpointing=False,
                create=writer,
            ),
            item_names=("state", "config"),
        )

    def _remove_partial_saves(self) -> None:
        """Delete what interrupted saves left in ``<step>.orbax-checkpoint-tmp`` folders (safe:
        the writer holds the workdir, so no other run is saving; best effort: they are never
        listed as checkpoints anyway)."""
        if jax.process_index() == 0:
            for partial in self.directory.glob(f"*{PARTIAL_SUFFIX}*"):
                shutil.rmtree(partial, ignore_errors=True)

    def _metric(self, metrics: dict[str, float]) -> float:
        """The ranking of a checkpoint: its validation metric (-inf if saved without one)."""
        return metrics.get(self.options.best_metric, -math.inf)

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The saved step with the best validation metric, or None."""
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        """Every saved step, oldest first."""
        return sorted(self.manager.all_steps())

    def save(
        self, step: int, state: Any, config: Config, metrics: dict[str, float] | None = None
    ) -> None:
        """Write ``state`` and ``config`` as checkpoint ``step`` (replacing one of that step).

        A failed write raises CheckpointWriteError naming the folder and its free space. What
        it half wrote stays in ``<step>.orbax-checkpoint-tmp`` (orbax may still be writing
        there): never listed as a checkpoint, removed when the next writer opens the folder.
        """
        try:
            if step in self.manager.all_steps():
                self.manager.delete(step)
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(to_dict(config))
                ),
                metrics=metrics or {},
                force=True,
            )
            self.manager.wait_until_finished()
        except Exception as err:
            raise CheckpointWriteError(self._write_failure(step, err)) from err

    def _write_failure(self, step: int, err: BaseException) -> str:
        """What failed, the free space, and what is left to resume from."""
        message = (
            f"could not write checkpoint {step} to {self.directory}: "
            f"{short_reason(err, self.directory)}"
        )
        try:
            free = free_space(self.directory)
            self.manager.reload()
            kept = self.all_steps()
        except OSError as listing:  # the disk fails beyond this save
            return f"{message}; the folder cannot be read either ({listing})"
        resume = f"resumes from step {kept[-1]}" if kept else "starts afresh"
        intact = f"the checkpoints saved before ({', '.join(map(str, kept)) or 'none'}) are intact"
        return (
            f"{message}. {free} free on the disk of {self.directory.parent}; {intact}: once "
            f"there is room, re-running the same command {resume} (and removes the half-written "
            f"{step}{PARTIAL_SUFFIX})"
        )

    def restore(
        self, target: Any = None, step: int | None = None, *, fresh: Callable[[], Any] | None = None
    ) -> Any:
        """The state of ``step`` (default latest) laid out like ``target`` (arrays or
        ShapeDtypeStructs with shardings); without a target, as saved, in nested dicts.

        A dataclass ``target`` may have fields a checkpoint written by an older version lacks
        (a part of the state added since): they are taken from ``fresh()``, a new state.
        A checkpoint that does not restore raises DamagedCheckpointError.
        """
        step = self.latest_step() if step is None else step
        abstract = None if target is None else jax.tree.map(_abstract, target)
        try:
            missing = self._missing_fields(step, abstract) if fresh else []
            if missing:
                abstract = {k: v for k, v in vars(abstract).items() if k not in missing}
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )["state"]
        except Exception as err:
            raise DamagedCheckpointError(
                f"checkpoint {step} in {self.directory} does not restore: "
                f"{short_reason(err, self.directory)}"
            ) from err
        if missing:
            new = fresh()
            restored = type(target)(**restored, **{k: getattr(new, k) for k in missing})
        return restored

    def _missing_fields(self, step: int, abstract: Any) -> list[str]:
        """The fields of dataclass ``abstract`` that checkpoint ``step`` does not hold."""
        if not dataclasses.is_dataclass(abstract):
            return []
        stored = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state")
        return [f.name for f in dataclasses.fields(abstract) if f.name not in stored.item_metadata]

    def restore_newest(
        self, target: Any = None, *, best: bool = False, fresh: Callable[[], Any] | None = None
    ) -> Restored:
        """The newest checkpoint that restores (``best``: the best by the validation metric
        that restores), passing over damaged ones; the writer moves those to ``damaged/``.

        If none restores: NoRestorableCheckpointError naming each, and nothing is moved.
        """
        damaged: list[Damage] = []
        for step in self._ranked_by_metric() if best else self.all_steps()[::-1]:
            try:
                state = self.restore(target, step, fresh=fresh)
            except DamagedCheckpointError as err:
                damaged.append(Damage(step, short_reason(err.__cause__, self.directory)))
                continue
            if self.writer and damaged:
                damaged = self._set_aside(damaged)
            return Restored(step, state, damaged)
        details = "; ".join(f"step {d.step}: {d.reason}" for d in damaged)
        raise NoRestorableCheckpointError(
            f"no checkpoint in {self.directory} restores ({details}). Nothing was moved or "
            "deleted. If the folder is still syncing, wait and retry; if the settings changed "
            "the networks' shapes, use the original ones; to start afresh, use another workdir."
        )

    def _ranked_by_metric(self) -> list[int]:
        """Steps with a metric, best first, then those without one, newest first."""
        scored, unscored = [], []
        for step in self.all_steps()[::-1]:
            score = self._metric(self.manager.metrics(step) or {})
            if score > -math.inf:
                scored.append((score, step))
            else:
                unscored.append(step)
        return [step for _, step in sorted(scored, reverse=True)] + unscored

    def _set_aside(self, damaged: Sequence[Damage]) -> list[Damage]:
        """Move each damaged step to ``damaged/<step>`` (a fresh name if taken); re-list."""
        moved = [dataclasses.replace(d, moved_to=self._aside_path(d.step)) for d in damaged]
        if jax.process_index() == 0:
            for damage in moved:
                damage.moved_to.parent.mkdir(parents=True, exist_ok=True)
                (self.directory / str(damage.step)).rename(damage.moved_to)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("colorjax: damaged checkpoints set aside")
        self.manager.reload()
        return moved

    def _aside_path(self, step: int) -> Path:
        folder = self.directory / DAMAGED_DIR
        path, copy = folder / str(step), 1
        while path.exists():
            path, copy = folder / f"{step}.{copy}", copy + 1
        return path

    def close(self) -> None:
        """Finish pending writes."""
        self.manager.wait_until_finished()
        self.manager.close()


def short_reason(err: BaseException | None, root: Path | None = None) -> str:
    """The root cause of ``err`` (its explicit ``raise ... from`` chain) in one short line,
    paths shown relative to ``root``, TensorStore's long specs cut off."""
    while err is not None and err.__cause__ is not None:
        err = err.__cause__
    if err is None:
        return "unknown error"
    text = (str(err).strip().splitlines() or [""])[0].split(" [tensorstore_spec=")[0]
    if root is not None:
        text = text.replace(f"{root}/", "")
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 3] + "..."


def free_space(path: Path) -> str:
    """Free bytes on the disk holding ``path``, readably (e.g. ``1.5 GB``)."""
    free, unit = float(shutil.disk_usage(path).free), "bytes"
    for larger in ("kB", "MB", "GB", "TB"):
        if free < 1000:
            break
        free, unit = free / 1000, larger
    return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"


def _abstract(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))


def restore_chosen(
    checkpoints: Checkpoints, step: int | str | None, workdir: Path
) -> tuple[int, dict]:
    """(step, state as saved) of the checkpoint ``step`` names: None or "latest", "best",
    or a step number; "latest" and "best" pass over damaged ones with a warning."""
    steps = checkpoints.all_steps()
    if not steps:
        raise FileNotFoundError(f"{workdir} has no checkpoints")
    if step in (None, "latest", "best"):
        restored = checkpoints.restore_newest(best=step == "best")
        note = restored.fallback_note("using")
        if note:
            warnings.warn(f"{workdir}: {note}", stacklevel=3)
        return restored.step, restored.state
    if not str(step).isdigit():
        raise ValueError(f"checkpoint step must be a number, 'best' or 'latest', got {step!r}")
    if int(step) not in steps:
        raise ValueError(f"{workdir} has no checkpoint at step {step}; saved steps: {steps}")
    try:
        return int(step), checkpoints.restore(step=int(step))
    except DamagedCheckpointError as err:
        raise DamagedCheckpointError(
            f"{err}; saved steps: {steps} ('latest' or 'best' pass over damaged checkpoints)"
        ) from err.__cause__
