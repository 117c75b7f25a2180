"""Speed measurements, printed as ONE JSON object on the last line of stdout.

    python -m experiments.bench --only data --preset demo --set data.image_size=128

Each part is a function ``bench_<part>(cfg) -> dict`` whose keys are prefixed by the part.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from colorjax.config import Config
from colorjax.data import pipeline_from_config
from experiments.cli import add_config_args, config_from_args, run_cli

DATA_WARMUP_BATCHES = 5
DATA_BATCHES = 50


def bench_data(cfg: Config, warmup: int = DATA_WARMUP_BATCHES, batches: int = DATA_BATCHES) -> dict:
    """Training input pipeline throughput (images/s) after ``warmup`` batches."""
    start = time.perf_counter()
    pipeline = pipeline_from_config(cfg.data, train=True, seed=cfg.train.seed)
    build_s = time.perf_counter() - start
    stream = pipeline.as_numpy()
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    images = sum(len(next(stream)["L"]) for _ in range(batches))
    elapsed = time.perf_counter() - start
    return {
        "source": cfg.data.source,
        "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size,
        "data_build_s": round(build_s, 2),
        "data_images_per_s": round(images / elapsed, 1),
    }


PARTS: dict[str, Callable[[Config], dict]] = {"data": bench_data}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument(
        "--only",
        choices=sorted(PARTS),
        action="append",
        help="run only this part (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    result: dict = {}
    for part in args.only or PARTS:
        result.update(PARTS[part](cfg))
    print(json.dumps(result))


if __name__ == "__main__":
    run_cli(main)
