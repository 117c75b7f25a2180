"""The training loop: ``train_and_evaluate(config, workdir)`` trains, validates, samples, saves.

Re-running with the same workdir resumes from the latest checkpoint on exactly the data and
random stream an uninterrupted run would have seen (passing over damaged checkpoints, which
``checkpoint`` sets aside). SIGINT/SIGTERM save before exiting; a non-finite loss stops the run
without touching the last good checkpoint. One run at a time holds the workdir (``lock``).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax

from colorjax import data
from colorjax.config import Config
from colorjax.gan import regularizers
from colorjax.gan.build import GAN, build_gan
from colorjax.gan.state import GANState
from colorjax.gan.step import make_train_step
from colorjax.heads import binprior
from colorjax.heads.generate import make_generate
from colorjax.training import hostmem, parallel
from colorjax.training.checkpoint import Checkpoints
from colorjax.training.fit import check_step_fits
from colorjax.training.lock import WorkdirLock
from colorjax.training.progress import Reporter
from colorjax.training.resume import initial_state, reconcile_config
from colorjax.training.save_schedule import SaveSchedule
from colorjax.training.validation import Validation, load_validation, validate

SAMPLE_ROWS = 8


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stopped without saving the broken state."""


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _pull(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
    """Bring the buffered per-step metrics to the host (the only sync of the loop)."""
    fetched = jax.device_get([m for _, m in pending])
    return [
        (step, {k: float(v) for k, v in m.items()})
        for (step, _), m in zip(pending, fetched, strict=True)
    ]


def _check_finite(records: list[tuple[int, dict[str, float]]]) -> None:
    for step, values in records:
        bad = [k for k, v in values.items() if not math.isfinite(v) and k != "loss_scale"]
        if bad and any(k.endswith(("loss", "l1", "adv", "real", "fake")) for k in bad):
            raise NonFiniteLossError(
                f"non-finite loss at step {step}: {', '.join(bad)}; the run stopped and the "
                "last good checkpoint is intact (try a lower learning rate or train.clip_norm)"
            )


def train_and_evaluate(
    config: Config, workdir: str | Path, *, stop_at: int | None = None, plan: bool = True
) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir`` until ``train.steps`` (or ``stop_at``).

    With ``plan``, a train step that cannot fit the device's memory stops the run before
    anything else (``colorjax.training.fit``). Returns a summary: final step, validation
    metrics, the gray baseline, the last sample grid.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parallel.initialize_distributed(config.parallel.distributed)
    with WorkdirLock(workdir, hold=jax.process_index() == 0):
        return _train(config, workdir, stop_at, plan)


def _train(config: Config, workdir: Path, stop_at: int | None, plan: bool) -> dict[str, Any]:
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size(config.data.batch_size, mesh)
    if plan:
        check_step_fits(config, mesh)
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt, writer=True)
    changed = reconcile_config(config, workdir, checkpoints.latest_step() is not None)
    weights, prior_note = None, None
    if config.model.head == "classification":
        weights, prior_note = binprior.class_weights(config, workdir)
    gan = build_gan(config, weights)
    state, start_note = initial_state(gan, config, checkpoints, mesh)
    hostmem.release_freed_memory()
    start = int(state.step)
    end = config.train.steps if stop_at is None else min(stop_at, config.train.steps)
    main_host = jax.process_index() == 0
    reporter = Reporter(
        workdir,
        total_steps=config.train.steps,
        start_step=start,
        batch_size=config.data.batch_size,
        enabled=main_host,
    )
    if changed:
        reporter.message(f"resuming with changed settings: {', '.join(changed)}")
    if prior_note:
        reporter.message(prior_note)
    if start_note:
        reporter.message(start_note)
    elif start:
        reporter.message(f"resumed from step {start} in {workdir}")
    validation = load_validation(config)
    reporter.scalars(start, validation.baseline, prefix="gray_baseline")
    generate = make_generate(gan.generator, gan.head)
    loop = _Loop(config, gan, mesh, checkpoints, reporter, validation, generate)
    try:
        state, summary = loop.run(state, start, end)
    finally:
        reporter.close()
        checkpoints.close()
    return summary


class _Loop:
    """The steps between ``start`` and ``end`` with their logging, sampling and saving."""

    def __init__(
        self,
        config: Config,
        gan: GAN,
        mesh,
        checkpoints: Checkpoints,
        reporter: Reporter,
        validation: Validation,
        generate,
    ):
        self.config, self.gan, self.mesh = config, gan, mesh
        self.checkpoints, self.reporter = checkpoints, reporter
        self.schedule = SaveSchedule(config.ckpt)
        self.validation, self.generate = validation, generate
        state_sharding = parallel.replicated(mesh)
        jit_kwargs = {"out_shardings": (state_sharding, state_sharding)}
        self.pretrain_step, self.gan_step, self.gan_r1_step = (
            hostmem.release_after_first_call(
                make_train_step(gan, adversarial=adversarial, r1=r1, **jit_kwargs)
            )
            for adversarial, r1 in ((False, False), (True, False), (True, True))
        )
        self.pending: list[tuple[int, dict]] = []
        self.last_metrics: dict[str, float] = {}
        self.last_sample: Path | None = None

    def batches(self, start: int) -> Iterator[dict[str, jax.Array]]:
        pipeline = data.pipeline_from_config(
            self.config.data,
            train=True,
            seed=self.config.train.seed,
            start_step=start,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        return parallel.device_batches(pipeline.as_numpy(), self.mesh)

    def flush(self) -> None:
        """Pull buffered metrics, stop on a non-finite loss, record them."""
        if not self.pending:
            return
        records = _pull(self.pending)
        self.pending = []
        _check_finite(records)
        for step, values in records:
            self.reporter.scalars(step, values)
        step, self.last_metrics = records[-1]
        images_per_s = self.reporter.progress(step, self.last_metrics)
        self.reporter.scalars(step, {"images_per_s": images_per_s}, prefix="speed")

    def evaluate(self, state: GANState, step: int) -> dict[str, float]:
        rgb, values = validate(self.generate, state, self.validation)
        self.reporter.scalars(step, values, prefix="val")
        base = self.validation.baseline
        self.reporter.message(
            f"step {step}: val PSNR {values['psnr']:.2f} dB (gray {base['psnr']:.2f}), "
            f"colorfulness {values['colorfulness']:.1f} (gray {base['colorfulness']:.1f})"
        )
        rows = slice(0, max(SAMPLE_ROWS, len(set(self.validation.sources))))
        self.last_sample = self.reporter.sample_grid(
            step, self.validation.gray_rgb[rows], rgb[rows], self.validation.real_rgb[rows]
        )
        return values

    def save(self, state: GANState, step: int, values: dict[str, float] | None) -> None:
        self.flush()
        self.checkpoints.save(step, state, self.config, values)
        self.schedule.saved()

    def run(self, state: GANState, start: int, end: int):
        log = self.config.log
        step, values = start, None
        with _StopSignals() as stop:
            batches = self.batches(start)
            while step < end and stop.received is None:
                batch = next(batches)
                state, step_metrics = self.step_function(step)(state, batch)
                step += 1
                self.pending.append((step, step_metrics))
                if step % log.every == 0:
                    self.flush()
                values = self._periodic(state, step)
            if stop.received is not None:
                self.reporter.message(f"signal {stop.received}: saving step {step} and exiting")
        self.flush()
        if values is None:
            values = self.evaluate(state, step)
        if step not in self.checkpoints.all_steps():
            self.save(state, step, values)
        summary = {
            "step": step,
            "val": values,
            "gray_baseline": self.validation.baseline,
            "sample": str(self.last_sample) if self.last_sample else None,
            "interrupted": stop.received is not None,
            "train": self.last_metrics,
        }
        return state, summary

    def step_function(self, step: int):
        """The jitted step for the step with index ``step``: L1 pre-training, GAN, GAN + R1."""
        if step < self.config.train.pretrain_steps:
            return self.pretrain_step
        return self.gan_r1_step if regularizers.r1_due(self.config.train, step) else self.gan_step

    def _periodic(self, state: GANState, step: int) -> dict[str, float] | None:
        """Samples and validation when due; a checkpoint when due (with the metrics if any)."""
        eval_due = step % self.config.log.eval_every == 0
        values = None
        if eval_due or step % self.config.log.sample_every == 0:
            values = self.evaluate(state, step)
        synced = step % self.config.log.every == 0
        if eval_due or self.schedule.due(step, synced=synced):
            self.save(state, step, values if eval_due else None)
        return values
