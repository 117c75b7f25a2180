"""Speed measurements, printed as ONE JSON object on the last line of stdout.

    python -m experiments.bench --preset pix2pix_unet128 --torch-python /tmp/torch-ref/bin/python
    python -m experiments.bench --only data --preset demo --set data.image_size=128
    python -m experiments.bench --only colorize --colorize-folder ../shared/data/imagenet900

Parts: ``train`` (one GAN step on synthetic batches: median seconds, images/s, compile time,
XLA cost-analysis FLOPs, peak host memory and, on GPU, device memory), ``l1`` (the same for
the L1-only step of the pretraining phase), ``infer`` (generator latency by image size and a
4000x3000 photo colorized end to end), ``data`` (input pipeline images/s), ``colorize`` (a
folder of photos through ``batch_colorize`` against a plain load/colorize/save loop, in the
same run, and the milliseconds of each step for one photo). With
``--torch-python`` the PyTorch reference of the pix2pix networks (../shared/bench) runs in the
same invocation and precision (bfloat16 autocast when ``model.dtype=bfloat16``), and the speed
and memory ratios are reported. Each part is a function ``bench_<part>(cfg) -> dict``; only
``data`` imports the input pipeline (and TensorFlow), so ``train``, ``l1``, ``infer`` and
``colorize`` run where just JAX is installed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import io
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import numpy as np
from jax.sharding import Mesh
from PIL import Image

from colorjax import (
    batch_colorize,
    encode,
    hostmem,
    imageio,
    inference,
    output_plan,
    parallel,
    steps,
    viz,
)
from colorjax.config import Config, ConfigError
from colorjax.inference import Colorizer
from colorjax.models import conv
from experiments.cli import add_config_args, config_from_args, run_cli
from experiments.colorize import load_colorizer

DATA_WARMUP_BATCHES = 5
DATA_BATCHES = 50
TRAIN_WARMUP_STEPS = 2
TRAIN_STEPS = 5
INFER_SIZES = (256, 512, 1024, 2048)
INFER_REPEATS = 3
PHOTO_SHAPE = (3000, 4000)
PHOTO_RENDER_SIZE = 512
TORCH_PRECISION_ARGS = {"float32": [], "bfloat16": ["--bf16"]}  # bfloat16: autocast
COLORIZE_PHOTOS = 100
COLORIZE_REPEATS = 3
COLORIZE_STAGE_PHOTOS = 10
COLORIZE_STAGE_BATCH = 4  # the network's cost per photo is also timed in batches of this size
COLORIZE_SHAPES = ((375, 500), (333, 500), (500, 375), (400, 500), (375, 500), (281, 500))
COLORIZE_SCENES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "moon", "grass", "brick")
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
        "params_g": _parameter_count(timing.state.g_params),
        "params_d": _parameter_count(timing.state.d_params),
        "conv_impl": conv.resolve_impl(cfg.model.conv_impl),
        "dtype": cfg.model.dtype,
        **_step_figures(timing, cfg.data.batch_size, step="train_", other=""),
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
        **_step_figures(timing, cfg.data.batch_size, step="l1_", other="l1_"),
        **_memory("l1_"),
    }


def random_colorizer(cfg: Config, render_size: int) -> Colorizer:
    """A randomly initialised generator of ``cfg``'s architecture."""
    gan = steps.build_gan(cfg)
    state = steps.init_state(gan, jax.random.PRNGKey(0), cfg.data.image_size)
    return Colorizer(cfg.model, state.g_params, state.g_state, render_size)


def bench_infer(cfg: Config, sizes: Sequence[int] = INFER_SIZES) -> dict:
    """Generator latency (batch 1, eval mode, compile excluded) and a 4000x3000 colorization."""
    colorizer = random_colorizer(cfg, PHOTO_RENDER_SIZE)
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


def synthetic_photos(folder: Path, count: int) -> list[Path]:
    """``count`` gray JPEG scans of about 500x375 (landscape and portrait), cut from
    scikit-image's photos, written to ``folder``."""
    import skimage.data

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = [
        Image.fromarray(getattr(skimage.data, name)()).convert("L") for name in COLORIZE_SCENES
    ]
    paths = []
    for index in range(count):
        height, width = COLORIZE_SHAPES[index % len(COLORIZE_SHAPES)]
        scene = scenes[index % len(scenes)]
        scale = rng.uniform(0.6, 1.0) * min(scene.width / width, scene.height / height)
        left = rng.uniform(0, scene.width - width * scale)
        top = rng.uniform(0, scene.height - height * scale)
        box = (left, top, left + width * scale, top + height * scale)
        path = folder / f"scan{index:03d}.jpg"
        scene.resize((width, height), Image.Resampling.LANCZOS, box).save(path, quality=90)
        paths.append(path)
    return paths


def _bench_colorizer(cfg: Config, model: str) -> Colorizer:
    """The shipped generator, a random one of the preset's architecture, or a model folder."""
    if model == "shipped":
        return load_colorizer(None, None, None)
    if model != "preset":
        return load_colorizer(None, model, None)
    return random_colorizer(cfg, inference.default_render_size(cfg.model, cfg.data.image_size))


def _ms(fn: Callable[[], object], repeats: int = INFER_REPEATS) -> float:
    return round(1000 * _median_seconds(fn, repeats), 2)


def colorize_stage_ms(
    colorizer: Colorizer, paths: Sequence[Path], batch_size: int = COLORIZE_STAGE_BATCH
) -> dict:
    """Median milliseconds per photo of each step of colorizing ``paths`` (warm, one thread)."""
    times = collections.defaultdict(list)
    batched = f"network_batch_{batch_size}_per_photo"
    for path in paths:
        rgb = imageio.load_image(path)
        lightness = inference.full_resolution_l(rgb)
        small = inference.resize_plane(lightness, colorizer.render_shape(*lightness.shape))
        network_l = inference.network_input([small])
        batch = inference.network_input([small] * batch_size)
        colorizer.predict_ab(network_l), colorizer.predict_ab(batch)
        ab = colorizer.predict_ab(network_l)[0]
        out = inference.recombine(lightness, ab)
        steps_ms = {
            "read_decode": lambda p=path: imageio.load_image(p),
            "lightness": lambda r=rgb: inference.full_resolution_l(r),
            "resize": lambda l=lightness, s=small: inference.resize_plane(l, s.shape),
            "network_batch_1": lambda n=network_l: colorizer.predict_ab(n),
            batched: lambda b=batch: colorizer.predict_ab(b),
            "recombine": lambda l=lightness, a=ab: inference.recombine(l, a),
            "png_pillow_default": lambda o=out: Image.fromarray(o).save(io.BytesIO(), "PNG"),
            "png": lambda o=out: encode.encode_image(o, encode.PNG),
            "jpg": lambda o=out: encode.encode_image(o, encode.OutputFormat("jpg")),
        }
        for name, fn in steps_ms.items():
            times[name].append(_ms(fn))
    times[batched] = [t / batch_size for t in times[batched]]
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def _plain_loop(colorizer: Colorizer, paths: Sequence[Path], out: Path, save=viz.save_png) -> int:
    """The straightforward way: load, colorize, save one photo after the other."""
    for path in paths:
        save(colorizer.colorize(imageio.load_image(path)), out / f"{path.stem}.png")
    return len(paths)


def _fast_png(rgb: np.ndarray, path: Path) -> Path:
    return encode.write_image(rgb, path, encode.PNG)


def _pipeline(colorizer: Colorizer, paths: Sequence[Path], out: Path, **options) -> int:
    """``batch_colorize`` as the colorize CLI runs it: plan the outputs, then colorize."""
    sources = output_plan.find_inputs([str(p) for p in paths])
    plan = output_plan.plan_outputs(sources, out, encode.PNG.suffix, overwrite=False)
    return len(batch_colorize.colorize_files(colorizer, plan.jobs, **options).written)


def _render_shape(colorizer: Colorizer, path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return colorizer.render_shape(image.height, image.width)


def _one_per_render_shape(colorizer: Colorizer, paths: Sequence[Path]) -> list[Path]:
    firsts: dict[tuple, Path] = {}
    for path in paths:
        firsts.setdefault(_render_shape(colorizer, path), path)
    return list(firsts.values())


def bench_colorize(
    cfg: Config,
    folder: str | None = None,
    model: str = "shipped",
    photos: int = COLORIZE_PHOTOS,
    repeats: int = COLORIZE_REPEATS,
    batch_size: int | None = None,
    workers: int = 2,
) -> dict:
    """Images/s of colorizing a folder of ``photos`` photos (``folder``'s first ones, else
    synthetic 500x375 scans) with ``batch_colorize`` and with a plain per-photo loop (also
    with the faster PNG level, to tell encoding apart from overlap), alternated ``repeats``
    times after a first pass that compiles every render shape; and the cost of each step for
    one photo."""
    colorizer = _bench_colorizer(cfg, model)
    options = {"batch_size": batch_size or batch_colorize.default_batch_size(), "workers": workers}
    ways = {
        "plain": lambda paths, out: _plain_loop(colorizer, paths, out),
        "plain_fast_png": lambda paths, out: _plain_loop(colorizer, paths, out, _fast_png),
        "pipeline": lambda paths, out: _pipeline(colorizer, paths, out, **options),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if folder:
            paths = [s.path for s in output_plan.find_inputs([folder])][:photos]
        else:
            paths = synthetic_photos(tmp / "photos", photos)
        first_pass = {}
        for name, way in ways.items():
            start = time.perf_counter()
            way(_one_per_render_shape(colorizer, paths), tmp / f"{name}_first")
            first_pass[name] = round(time.perf_counter() - start, 2)
        seconds = collections.defaultdict(list)
        for repeat in range(repeats):
            for name, way in ways.items():
                start = time.perf_counter()
                written = way(paths, tmp / f"{name}{repeat}")
                seconds[name].append(time.perf_counter() - start)
                if written != len(paths):
                    raise RuntimeError(f"{name} wrote {written} of {len(paths)} photos")
        stages = colorize_stage_ms(colorizer, paths[:COLORIZE_STAGE_PHOTOS])
        shapes = collections.Counter("x".join(map(str, _render_shape(colorizer, p))) for p in paths)
    rates = {name: len(paths) / statistics.median(s) for name, s in seconds.items()}
    return {
        "colorize_source": folder or "synthetic gray JPEGs",
        "colorize_model": model,
        "colorize_photos": len(paths),
        "colorize_render_shapes": dict(shapes),
        **{f"colorize_{k}": v for k, v in options.items()},
        **{f"colorize_{name}_images_per_s": round(rate, 2) for name, rate in rates.items()},
        "colorize_speedup": round(rates["pipeline"] / rates["plain"], 2),
        "colorize_speedup_vs_fast_png": round(rates["pipeline"] / rates["plain_fast_png"], 2),
        "colorize_first_pass_s": first_pass,
        "colorize_stage_ms": stages,
        "colorize_peak_rss_mb": round(peak_rss_mb(), 1),
    }


PARTS: dict[str, Callable[[Config], dict]] = {
    "train": bench_train,
    "l1": bench_l1,
    "infer": bench_infer,
    "data": bench_data,
    "colorize": bench_colorize,
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
    parser.add_argument("--colorize-folder", help="colorize: photos to use (default: synthetic)")
    parser.add_argument(
        "--colorize-model",
        default="shipped",
        help="colorize: 'shipped' (weights/), 'preset' (random, the --preset network) or a "
        "model folder",
    )
    parser.add_argument("--colorize-photos", type=int, default=COLORIZE_PHOTOS)
    parser.add_argument("--colorize-batch-size", type=int, help="colorize: default as the CLI's")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if args.torch_python:
        torch_precision_args(cfg.model.dtype)  # an unsupported precision fails before timing
    parts = PARTS | {
        "colorize": functools.partial(
            bench_colorize,
            folder=args.colorize_folder,
            model=args.colorize_model,
            photos=args.colorize_photos,
            batch_size=args.colorize_batch_size,
        )
    }
    result: dict = {"preset": args.preset, "overrides": args.overrides}
    for part in args.only or PARTS:
        result.update(parts[part](cfg))
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
