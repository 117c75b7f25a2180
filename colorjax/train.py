"""The training loop: ``train_and_evaluate(config, workdir)`` trains, validates, samples, saves.

Re-running with the same workdir resumes from the latest checkpoint on exactly the data and
random stream an uninterrupted run would have seen (passing over damaged checkpoints, which
``checkpoint`` sets aside). SIGINT/SIGTERM save before exiting; a non-finite loss stops the run
without touching the last good checkpoint. One run at a time holds the workdir (``lock``).
"""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from colorjax import binprior, color, data, ema, hostmem, metrics, parallel, regularizers, steps
from colorjax.checkpoint import Checkpoints
from colorjax.config import Config, ConfigError, differing_keys, load_json, save_json
from colorjax.lock import WorkdirLock
from colorjax.report import Reporter

# Fields that change the networks' parameters: a run cannot resume with other values.
ARCHITECTURE_KEYS = (
    "model.depth",
    "model.features",
    "model.max_mult",
    "model.norm",
    "model.num_groups",
    "model.upsample",
    "model.out_channels",
    "model.head",
    "disc.layers",
    "disc.features",
    "disc.norm",
    "disc.num_groups",
    "disc.spectral",
)
# Fields whose switching on or off (0 <-> non-zero) changes what the train state holds.
STATE_SWITCHES = ("train.ema_decay", "train.ada_target", "train.d_skip_above")
SAMPLE_ROWS = 8


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stopped without saving the broken state."""


@dataclasses.dataclass
class Validation:
    """A fixed validation set: network inputs, the ground truth and the gray baseline."""

    gray: np.ndarray  # L [N,H,W,1] in [-1, 1]
    real_rgb: np.ndarray  # [N,H,W,3] in [0, 1]
    gray_rgb: np.ndarray
    baseline: dict[str, float]
    sources: list[str]  # each image's source name (a mix: the sources take turns)


def reconcile_config(config: Config, workdir: Path, has_checkpoint: bool) -> list[str]:
    """Check ``config`` against the one a resumed run was trained with; write ``config.json``.

    Returns the changed (allowed) keys; a changed architecture, or a state knob switched on or
    off, is a ConfigError naming the fields.
    """
    path = workdir / "config.json"
    changed: list[str] = []
    if has_checkpoint and path.exists():
        previous = load_json(path)
        changed = differing_keys(previous, config)
        arch = [k for k in changed if k in ARCHITECTURE_KEYS]
        switched = [
            k
            for k in changed
            if k in STATE_SWITCHES and bool(_get(previous, k)) != bool(_get(config, k))
        ]
        for keys, what in ((arch, "model shape"), (switched, "train state (a knob on or off)")):
            if keys:
                details = ", ".join(
                    f"{k} (was {_get(previous, k)!r}, now {_get(config, k)!r})" for k in keys
                )
                raise ConfigError(
                    f"{workdir} holds a run with a different {what}: {details}. "
                    "Use another --workdir or the original settings."
                )
    if jax.process_index() == 0:
        save_json(config, path)
    return changed


def _get(config: Config, key: str) -> Any:
    section, leaf = key.split(".")
    return getattr(getattr(config, section), leaf)


def source_means(per_image: list[dict[str, float]], sources: list[str]) -> dict[str, float]:
    """Mean metrics of a validation set. A mix: each source's means as ``<source>/<metric>``,
    and as ``<metric>`` the mean of the sources' means (every source counts the same)."""
    names = list(dict.fromkeys(sources))
    if len(names) == 1:
        return metrics.mean_metrics(per_image)
    by_source = {
        name: metrics.mean_metrics(
            [m for m, s in zip(per_image, sources, strict=True) if s == name]
        )
        for name in names
    }
    means = metrics.mean_metrics(list(by_source.values()))
    for name, values in by_source.items():
        means |= {f"{name}/{key}": value for key, value in values.items()}
    return means


def load_validation(config: Config) -> Validation:
    """The first ``log.eval_images`` images of each source's eval split, with their gray
    baseline."""
    rgb8, sources = data.validation_images(config.data, config.log.eval_images)
    gray, target = map(np.asarray, color.rgb8_to_network(rgb8))
    real_rgb = np.asarray(color.network_to_rgb(gray, target))
    gray_rgb = np.asarray(color.network_to_rgb(gray, np.zeros_like(target)))
    per_image = [metrics.quick_metrics(g, r) for g, r in zip(gray_rgb, real_rgb, strict=True)]
    return Validation(gray, real_rgb, gray_rgb, source_means(per_image, sources), sources)


def validate(generate, state: steps.GANState, validation: Validation) -> tuple[np.ndarray, dict]:
    """Colorize the validation set (with the EMA weights if the run keeps some); return the RGB
    outputs and the mean ``quick_metrics`` (per source too for a mix, ``source_means``)."""
    params, norm_state = ema.generator_weights(state.ema, state.g_params, state.g_state)
    ab = np.asarray(generate(params, norm_state, validation.gray))
    rgb = np.asarray(color.network_to_rgb(validation.gray, ab))
    per_image = [metrics.quick_metrics(p, r) for p, r in zip(rgb, validation.real_rgb, strict=True)]
    return rgb, source_means(per_image, validation.sources)


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


def _initial_state(
    gan: steps.GAN, config: Config, checkpoints: Checkpoints, mesh
) -> tuple[steps.GANState, str | None]:
    """Restore the newest intact checkpoint onto the mesh, or initialise from the seed; with
    a line on the damaged checkpoints passed over, if any."""
    init = jax.jit(
        lambda key: steps.init_state(gan, key, config.data.image_size),
        out_shardings=parallel.replicated(mesh),
    )
    key = jax.random.PRNGKey(config.train.seed)
    if checkpoints.latest_step() is None:
        return init(key), None
    abstract = jax.eval_shape(init, key)
    sharding = parallel.replicated(mesh)
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract
    )
    restored = checkpoints.restore_newest(target)
    return restored.state, restored.fallback_note("resumed from")


def train_and_evaluate(
    config: Config, workdir: str | Path, *, stop_at: int | None = None
) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir`` until ``train.steps`` (or ``stop_at``).

    Returns a summary: final step, validation metrics, the gray baseline, the last sample grid.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parallel.initialize_distributed(config.parallel.distributed)
    with WorkdirLock(workdir, hold=jax.process_index() == 0):
        return _train(config, workdir, stop_at)


def _train(config: Config, workdir: Path, stop_at: int | None) -> dict[str, Any]:
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size(config.data.batch_size, mesh)
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt, writer=True)
    changed = reconcile_config(config, workdir, checkpoints.latest_step() is not None)
    weights, prior_note = None, None
    if config.model.head == "classification":
        weights, prior_note = binprior.class_weights(config, workdir)
    gan = steps.build_gan(config, weights)
    state, damage_note = _initial_state(gan, config, checkpoints, mesh)
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
    if damage_note:
        reporter.message(damage_note)
    elif start:
        reporter.message(f"resumed from step {start} in {workdir}")
    validation = load_validation(config)
    reporter.scalars(start, validation.baseline, prefix="gray_baseline")
    generate = steps.make_generate(gan.generator, gan.head)
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
        gan: steps.GAN,
        mesh,
        checkpoints: Checkpoints,
        reporter: Reporter,
        validation: Validation,
        generate,
    ):
        self.config, self.gan, self.mesh = config, gan, mesh
        self.checkpoints, self.reporter = checkpoints, reporter
        self.validation, self.generate = validation, generate
        state_sharding = parallel.replicated(mesh)
        jit_kwargs = {"out_shardings": (state_sharding, state_sharding)}
        self.pretrain_step, self.gan_step, self.gan_r1_step = (
            hostmem.release_after_first_call(
                steps.make_train_step(gan, adversarial=adversarial, r1=r1, **jit_kwargs)
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

    def evaluate(self, state: steps.GANState, step: int) -> dict[str, float]:
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

    def save(self, state: steps.GANState, step: int, values: dict[str, float] | None) -> None:
        self.flush()
        self.checkpoints.save(step, state, self.config, values)

    def run(self, state: steps.GANState, start: int, end: int):
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

    def _periodic(self, state: steps.GANState, step: int) -> dict[str, float] | None:
        """Samples and validation when due; a checkpoint when due (with the metrics if any)."""
        eval_due = step % self.config.log.eval_every == 0
        values = None
        if eval_due or step % self.config.log.sample_every == 0:
            values = self.evaluate(state, step)
        if eval_due or self.checkpoints.due(step):
            self.save(state, step, values if eval_due else None)
        return values
