"""The ``colorize`` part: a folder of photos through ``batch_colorize`` against a plain
load/colorize/save loop, and the cost of each step for one photo."""

from __future__ import annotations

import collections
import io
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from colorjax import inference
from colorjax.config import Config
from colorjax.imaging import decoding, output_plan, visual, writing
from colorjax.inference import Colorizer, batch_colorize
from experiments.bench.infer import random_colorizer
from experiments.bench.timing import ms, peak_rss_mb
from experiments.colorize import load_colorizer

COLORIZE_PHOTOS = 100


COLORIZE_REPEATS = 3


COLORIZE_STAGE_PHOTOS = 10


COLORIZE_STAGE_BATCH = 4  # the network's cost per photo is also timed in batches of this size


COLORIZE_SHAPES = ((375, 500), (333, 500), (500, 375), (400, 500), (375, 500), (281, 500))


COLORIZE_SCENES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "moon", "grass", "brick")


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


def colorize_stage_ms(
    colorizer: Colorizer, paths: Sequence[Path], batch_size: int = COLORIZE_STAGE_BATCH
) -> dict:
    """Median milliseconds per photo of each step of colorizing ``paths`` (warm, one thread)."""
    times = collections.defaultdict(list)
    batched = f"network_batch_{batch_size}_per_photo"
    for path in paths:
        rgb = decoding.load_image(path)
        lightness = inference.full_resolution_l(rgb)
        small = inference.resize_plane(lightness, colorizer.render_shape(*lightness.shape))
        network_l = inference.network_input([small])
        batch = inference.network_input([small] * batch_size)
        colorizer.predict_ab(network_l), colorizer.predict_ab(batch)
        ab = colorizer.predict_ab(network_l)[0]
        out = inference.recombine(lightness, ab)
        steps_ms = {
            "read_decode": lambda p=path: decoding.load_image(p),
            "lightness": lambda r=rgb: inference.full_resolution_l(r),
            "resize": lambda l=lightness, s=small: inference.resize_plane(l, s.shape),
            "network_batch_1": lambda n=network_l: colorizer.predict_ab(n),
            batched: lambda b=batch: colorizer.predict_ab(b),
            "recombine": lambda l=lightness, a=ab: inference.recombine(l, a),
            "png_pillow_default": lambda o=out: Image.fromarray(o).save(io.BytesIO(), "PNG"),
            "png": lambda o=out: writing.encode_image(o, writing.PNG),
            "jpg": lambda o=out: writing.encode_image(o, writing.OutputFormat("jpg")),
        }
        for name, fn in steps_ms.items():
            times[name].append(ms(fn))
    times[batched] = [t / batch_size for t in times[batched]]
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def _plain_loop(
    colorizer: Colorizer, paths: Sequence[Path], out: Path, save=visual.save_png
) -> int:
    """The straightforward way: load, colorize, save one photo after the other."""
    for path in paths:
        save(colorizer.colorize(decoding.load_image(path)), out / f"{path.stem}.png")
    return len(paths)


def _fast_png(rgb: np.ndarray, path: Path) -> Path:
    return writing.write_image(rgb, path, writing.PNG)


def _pipeline(colorizer: Colorizer, paths: Sequence[Path], out: Path, **options) -> int:
    """``batch_colorize`` as the colorize CLI runs it: plan the outputs, then colorize."""
    sources = output_plan.find_inputs([str(p) for p in paths])
    plan = output_plan.plan_outputs(sources, out, writing.PNG.suffix, overwrite=False)
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
