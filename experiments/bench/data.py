"""The ``data`` part: input pipeline throughput (imports TensorFlow, for this part only)."""

from __future__ import annotations

import time

from colorjax.config import Config

DATA_WARMUP_BATCHES = 5


DATA_BATCHES = 50


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
