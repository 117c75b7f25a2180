"""The ``train`` and ``l1`` parts: a compiled train step timed on synthetic batches."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from jax.sharding import Mesh

from colorjax.config import Config
from colorjax.gan.build import build_gan
from colorjax.gan.state import GANState, init_state
from colorjax.gan.step import make_train_step
from colorjax.models import conv
from colorjax.training import hostmem, parallel
from experiments.bench.timing import flops, median_seconds, memory, parameter_count

TRAIN_WARMUP_STEPS = 2


TRAIN_STEPS = 5


def _synthetic_batch(cfg: Config, mesh) -> dict:
    rng = np.random.default_rng(0)
    size, batch = cfg.data.image_size, cfg.data.batch_size
    local = {"rgb": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)}
    return parallel.global_batch(local, mesh)


@dataclasses.dataclass
class StepTiming:
    """A compiled train step timed on synthetic batches."""

    state: GANState
    mesh: Mesh
    compile_s: float
    step_s: float
    flops: float


def time_train_step(
    cfg: Config, *, adversarial: bool, warmup: int = TRAIN_WARMUP_STEPS, timed: int = TRAIN_STEPS
) -> StepTiming:
    """Compile ``make_train_step`` (GAN or L1-only) and time it: median of ``timed``
    steps after ``warmup``."""
    mesh = parallel.make_mesh(cfg.parallel)
    parallel.check_batch_size(cfg.data.batch_size, mesh)
    gan = build_gan(cfg)
    replicated = parallel.replicated(mesh)
    state = jax.jit(
        lambda key: init_state(gan, key, cfg.data.image_size), out_shardings=replicated
    )(jax.random.PRNGKey(0))
    batch = _synthetic_batch(cfg, mesh)
    step = make_train_step(gan, adversarial=adversarial, out_shardings=(replicated, replicated))
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    hostmem.release_freed_memory()
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch)
        return metrics

    median_seconds(run, warmup)
    step_s = median_seconds(run, timed)
    return StepTiming(holder[0], mesh, compile_s, step_s, flops(compiled))


def _step_figures(timing: StepTiming, batch_size: int, step: str, other: str) -> dict:
    """Compile time, step time, images/s and GFLOP/s of a timed step; ``step`` prefixes the
    step-time keys and ``other`` the compile and FLOP keys."""
    return {
        f"{other}compile_s": round(timing.compile_s, 2),
        f"{step}step_s": round(timing.step_s, 3),
        f"{step}images_per_s": round(batch_size / timing.step_s, 2),
        f"{other}flops_per_step": timing.flops,
        f"{step}gflops_per_s": round(timing.flops / timing.step_s / 1e9, 1),
    }


def bench_train(cfg: Config) -> dict:
    """One GAN train step (discriminator + generator update) on synthetic batches."""
    timing = time_train_step(cfg, adversarial=True)
    return {
        "params_g": parameter_count(timing.state.g_params),
        "params_d": parameter_count(timing.state.d_params),
        "conv_impl": conv.resolve_impl(cfg.model.conv_impl),
        "dtype": cfg.model.dtype,
        **_step_figures(timing, cfg.data.batch_size, step="train_", other=""),
        **memory(),
        **parallel.describe(timing.mesh),
        "jax_version": jax.__version__,
    }


def bench_l1(cfg: Config) -> dict:
    """One L1-only generator step (the pretraining phase) on synthetic batches."""
    timing = time_train_step(cfg, adversarial=False)
    return {
        "conv_impl": conv.resolve_impl(cfg.model.conv_impl),
        "dtype": cfg.model.dtype,
        **_step_figures(timing, cfg.data.batch_size, step="l1_", other="l1_"),
        **memory("l1_"),
    }
