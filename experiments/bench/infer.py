"""The ``infer`` part: generator latency by image size and a 4000x3000 photo end to end."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from colorjax.config import Config
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.inference import Colorizer
from experiments.bench.timing import INFER_REPEATS, median_seconds, peak_rss_mb

INFER_SIZES = (256, 512, 1024, 2048)


PHOTO_SHAPE = (3000, 4000)


PHOTO_RENDER_SIZE = 512


def random_colorizer(cfg: Config, render_size: int) -> Colorizer:
    """A randomly initialised generator of ``cfg``'s architecture."""
    gan = build_gan(cfg)
    state = init_state(gan, jax.random.PRNGKey(0), cfg.data.image_size)
    return Colorizer(cfg.model, state.g_params, state.g_state, render_size)


def bench_infer(cfg: Config, sizes: Sequence[int] = INFER_SIZES) -> dict:
    """Generator latency (batch 1, eval mode, compile excluded) and a 4000x3000 colorization."""
    colorizer = random_colorizer(cfg, PHOTO_RENDER_SIZE)
    latency = {}
    for size in sizes:
        gray = np.zeros((1, size, size, 1), np.float32)
        colorizer.predict_ab(gray)
        latency[str(size)] = round(
            median_seconds(lambda g=gray: colorizer.predict_ab(g), INFER_REPEATS), 3
        )
    photo = np.random.default_rng(0).integers(0, 256, (*PHOTO_SHAPE, 3), dtype=np.uint8)
    colorizer.colorize(photo)
    photo_s = median_seconds(lambda: colorizer.colorize(photo), INFER_REPEATS)
    return {
        "infer_s": latency,
        "colorize_4000x3000_s": round(photo_s, 3),
        "colorize_render_size": PHOTO_RENDER_SIZE,
        "infer_peak_rss_mb": round(peak_rss_mb(), 1),
    }
