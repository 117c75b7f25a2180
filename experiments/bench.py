"""Speed measurements, printed as ONE JSON object on the last line of stdout.

    python -m experiments.bench --preset pix2pix_unet128 --torch-python /tmp/torch-ref/bin/python
    python -m experiments.bench --only data --preset demo --set data.image_size=128

Parts: ``train`` (one GAN step on synthetic batches: median seconds, images/s, compile time,
XLA cost-analysis FLOPs, peak host memory and, on GPU, device memory), ``l1`` (the same for
the L1-only step of the pretraining phase), ``infer`` (generator latency by image size and a
4000x3000 photo colorized end to end), ``data`` (input pipeline images/s). With
``--torch-python`` the PyTorch reference of the pix2pix networks (../shared/bench) runs in the
same invocation and precision (bfloat16 autocast when ``model.dtype=bfloat16``), and the speed
and memory ratios are reported. Each part is a function ``bench_<part>(cfg) -> dict``; only
``data`` imports the input pipeline (and TensorFlow), so ``train``, ``l1`` and ``infer`` run
where just JAX is installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import numpy as np
from jax.sharding import Mesh

from colorjax import hostmem, parallel, steps
from colorjax.config import Config, ConfigError
from colorjax.inference import Colorizer
from colorjax.models import conv
from experiments.cli import add_config_args, config_from_args, run_cli

DATA_WARMUP_BATCHES = 5
DATA_BATCHES = 50
TRAIN_WARMUP_STEPS = 2
TRAIN_STEPS = 5
INFER_SIZES = (256, 512, 1024, 2048)
INFER_REPEATS = 3
PHOTO_SHAPE = (3000, 4000)
PHOTO_RENDER_SIZE = 512
TORCH_PRECISION_ARGS = {"float32": [], "bfloat16": ["--bf16"]}  # bfloat16: autocast
TORCH_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared/bench/torch_pix2pix_ref.py"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _parameter_count(tree) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _synthetic_batch(cfg: Config, mesh) -> dict:
    rng = np.random.default_rng(0)
    size, batch = cfg.data.image_size, cfg.data.batch_size
    local = {"rgb": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)}
    return parallel.global_batch(local, mesh)


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


@dataclasses.dataclass
class StepTiming:
    """A compiled train step timed on synthetic batches."""

    state: steps.GANState
    mesh: Mesh
    compile_s: float
    step_s: float
    flops: float


def time_train_step(
    cfg: Config, *, adversarial: bool, warmup: int = TRAIN_WARMUP_STEPS, timed: int = TRAIN_STEPS
) -> StepTiming:
    """Compile ``steps.make_train_step`` (GAN or L1-only) and time it: median of ``timed``
    steps after ``warmup``."""
    mesh = parallel.make_mesh(cfg.parallel)
    parallel.check_batch_size(cfg.data.batch_size, mesh)
    gan = steps.build_gan(cfg)
    replicated = parallel.replicated(mesh)
    state = jax.jit(
        lambda key: steps.init_state(gan, key, cfg.data.image_size), out_shardings=replicated
    )(jax.random.PRNGKey(0))
    batch = _synthetic_batch(cfg, mesh)
    step = steps.make_train_step(
        gan, adversarial=adversarial, out_shardings=(replicated, replicated)
    )
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    hostmem.release_freed_memory()
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch)
        return metrics

    _median_seconds(run, warmup)
    step_s = _median_seconds(run, timed)
    return StepTiming(holder[0], mesh, compile_s, step_s, _flops(compiled))


def _memory(prefix: str = "") -> dict:
    """Peak host memory of this process so far and, where the device reports it (GPU),
    the device's peak."""
    device_peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    return {
        f"{prefix}peak_rss_mb": round(peak_rss_mb(), 1),
        f"{prefix}device_peak_mb": None if device_peak is None else round(device_peak / 2**20, 1),
    }


def bench_train(cfg: Config) -> dict:
    """One GAN train step (discriminator + generator update) on synthetic batches."""
    timing = time_train_step(cfg, adversarial=True)
    return {
        "params_g": _parameter_count(timing.state.g_params),
        "params_d": _parameter_count(timing.state.d_params),
        "conv_impl": conv.resolve_impl(cfg.model.conv_impl),
        "dtype": cfg.model.dtype,
        "compile_s": round(timing.compile_s, 2),
        "train_step_s": round(timing.step_s, 3),
        "train_images_per_s": round(cfg.data.batch_size / timing.step_s, 2),
        "flops_per_step": timing.flops,
        "train_gflops_per_s": round(timing.flops / timing.step_s / 1e9, 1),
        **_memory(),
        **parallel.describe(timing.mesh),
        "jax_version": jax.__version__,
    }


def bench_l1(cfg: Config) -> dict:
    """One L1-only generator step (the pretraining phase) on synthetic batches."""
    timing = time_train_step(cfg, adversarial=False)
    return {
        "conv_impl": conv.resolve_impl(cfg.model.conv_impl),
        "dtype": cfg.model.dtype,
        "l1_compile_s": round(timing.compile_s, 2),
        "l1_step_s": round(timing.step_s, 3),
        "l1_images_per_s": round(cfg.data.batch_size / timing.step_s, 2),
        "l1_flops_per_step": timing.flops,
        "l1_gflops_per_s": round(timing.flops / timing.step_s / 1e9, 1),
        **_memory("l1_"),
    }


def bench_infer(cfg: Config, sizes: Sequence[int] = INFER_SIZES) -> dict:
    """Generator latency (batch 1, eval mode, compile excluded) and a 4000x3000 colorization."""
    gan = steps.build_gan(cfg)
    state = steps.init_state(gan, jax.random.PRNGKey(0), cfg.data.image_size)
    colorizer = Colorizer(cfg.model, state.g_params, state.g_state, PHOTO_RENDER_SIZE)
    latency = {}
    for size in sizes:
        gray = np.zeros((1, size, size, 1), np.float32)
        colorizer.predict_ab(gray)
        latency[str(size)] = round(
            _median_seconds(lambda g=gray: colorizer.predict_ab(g), INFER_REPEATS), 3
        )
    photo = np.random.default_rng(0).integers(0, 256, (*PHOTO_SHAPE, 3), dtype=np.uint8)
    colorizer.colorize(photo)
    photo_s = _median_seconds(lambda: colorizer.colorize(photo), INFER_REPEATS)
    return {
        "infer_s": latency,
        "colorize_4000x3000_s": round(photo_s, 3),
        "colorize_render_size": PHOTO_RENDER_SIZE,
        "infer_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _peak_rss_of(process: subprocess.Popen) -> float | None:
    """The child's own peak resident memory (MB), polled from /proc while it runs (Linux);
    getrusage would report the parent's peak, which a fork child inherits."""
    status = Path(f"/proc/{process.pid}/status")
    peak = None
    while process.poll() is None:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            peak = int(fields["VmHWM"].split()[0]) / 1024
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    return peak


def torch_precision_args(dtype: str) -> list[str]:
    """The reference's options for the precision of ``model.dtype``."""
    if dtype not in TORCH_PRECISION_ARGS:
        valid = ", ".join(TORCH_PRECISION_ARGS)
        raise ConfigError(f"model.dtype={dtype} has no PyTorch reference; valid: {valid}")
    return TORCH_PRECISION_ARGS[dtype]


def bench_torch_reference(python: str, cfg: Config, steps_count: int = TRAIN_STEPS) -> dict:
    """Run the PyTorch pix2pix reference with ``python`` in the precision of ``cfg``; its step
    time, images/s, peak RSS."""
    command = [
        python,
        str(TORCH_REFERENCE),
        "--steps",
        str(steps_count),
        "--batch",
        str(cfg.data.batch_size),
        "--size",
        str(cfg.data.image_size),
        *torch_precision_args(cfg.model.dtype),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = _peak_rss_of(process)
    output = process.stdout.read()
    match = re.search(r"median_s_per_step=([\d.]+) images_per_s=([\d.]+)", output)
    if process.returncode or match is None:
        raise RuntimeError(f"{TORCH_REFERENCE} failed or printed no timing:\n{output}")
    return {
        "torch_dtype": cfg.model.dtype,
        "torch_train_step_s": float(match.group(1)),
        "torch_train_images_per_s": float(match.group(2)),
        "torch_peak_rss_mb": None if peak is None else round(peak, 1),
    }


def bench_data(cfg: Config, warmup: int = DATA_WARMUP_BATCHES, batches: int = DATA_BATCHES) -> dict:
    """Training input pipeline throughput (images/s) after ``warmup`` batches."""
    from colorjax.data import pipeline_from_config  # TensorFlow: imported for this part only

    start = time.perf_counter()
    pipeline = pipeline_from_config(cfg.data, train=True, seed=cfg.train.seed)
    build_s = time.perf_counter() - start
    stream = pipeline.as_numpy()
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    images = sum(len(next(stream)["rgb"]) for _ in range(batches))
    elapsed = time.perf_counter() - start
    return {
        "source": cfg.data.source,
        "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size,
        "data_build_s": round(build_s, 2),
        "data_images_per_s": round(images / elapsed, 1),
    }


PARTS: dict[str, Callable[[Config], dict]] = {
    "train": bench_train,
    "l1": bench_l1,
    "infer": bench_infer,
    "data": bench_data,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument(
        "--only",
        choices=sorted(PARTS),
        action="append",
        help="run only this part (repeatable; default: all)",
    )
    parser.add_argument(
        "--torch-python",
        help="a Python with torch: also time the PyTorch reference (pix2pix unet_128 + "
        "PatchGAN) in this run, in the same precision",
    )
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if args.torch_python:
        torch_precision_args(cfg.model.dtype)  # an unsupported precision fails before timing
    result: dict = {"preset": args.preset, "overrides": args.overrides}
    for part in args.only or PARTS:
        result.update(PARTS[part](cfg))
        print(json.dumps(result), flush=True)
    if args.torch_python:
        result.update(bench_torch_reference(args.torch_python, cfg))
    print(json.dumps(result | ratios(result)))


def ratios(result: dict) -> dict:
    """Comparisons between parts of one run: against PyTorch, and the input pipeline's
    margin over the train step's consumption (``data_vs_train``)."""
    pairs = {
        "speedup_vs_torch": ("train_images_per_s", "torch_train_images_per_s"),
        "memory_vs_torch": ("peak_rss_mb", "torch_peak_rss_mb"),
        "data_vs_train": ("data_images_per_s", "train_images_per_s"),
    }
    return {
        name: round(result[top] / result[bottom], 3)
        for name, (top, bottom) in pairs.items()
        if top in result and bottom in result
    }


if __name__ == "__main__":
    run_cli(main)
