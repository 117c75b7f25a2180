"""Speed measurements, printed as ONE JSON object on the last line of stdout.

    python -m experiments.bench --preset pix2pix_unet128 --torch-python /tmp/torch-ref/bin/python
    python -m experiments.bench --only data --preset demo --set data.image_size=128
    python -m experiments.bench --only colorize --colorize-folder ../shared/data/imagenet900

Parts: ``train`` (one GAN step on synthetic batches: median seconds, images/s, compile time,
XLA cost-analysis FLOPs, peak host memory and, on GPU, device memory), ``l1`` (the same for
the L1-only step of the pretraining phase), ``infer`` (generator latency by image size and a
4000x3000 photo colorized end to end), ``data`` (input pipeline images/s), ``colorize`` (a
folder of photos through ``batch_colorize`` against a plain load/colorize/save loop, in the
same run, and the milliseconds of each step for one photo), ``layers`` (only when asked for:
GFLOP/s of each pass of each convolution by implementation, and ``onednn``'s routing). With
``--torch-python`` the PyTorch reference of the pix2pix networks (../shared/bench) runs in the
same invocation and precision (bfloat16 autocast when ``model.dtype=bfloat16``), and the speed
and memory ratios are reported. Each part is a function ``bench_<part>(cfg) -> dict``; only
``data`` imports the input pipeline (and TensorFlow), so ``train``, ``l1``, ``infer`` and
``colorize`` run where just JAX is installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Callable, Sequence

from colorjax.config import Config
from experiments.bench.colorize import COLORIZE_PHOTOS, bench_colorize
from experiments.bench.data import bench_data
from experiments.bench.infer import bench_infer
from experiments.bench.layers import bench_layers
from experiments.bench.torch_ref import bench_torch_reference, torch_precision_args
from experiments.bench.train import bench_l1, bench_train
from experiments.cli import add_config_args, config_from_args

__all__ = ["PARTS", "main", "ratios", "torch_precision_args"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


PARTS: dict[str, Callable[[Config], dict]] = {
    "train": bench_train,
    "l1": bench_l1,
    "infer": bench_infer,
    "data": bench_data,
    "colorize": bench_colorize,
    "layers": bench_layers,
}
DEFAULT_PARTS = ("train", "l1", "infer", "data", "colorize")


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
    for part in args.only or DEFAULT_PARTS:
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
