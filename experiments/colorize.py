"""Colorize photos: ``python -m experiments.colorize [--workdir RUN | --model DIR] INPUT...``.

INPUT is any mix of files, folders (searched recursively) and glob patterns. Results go to
``--out DIR`` as PNG (or ``--format jpg|webp``) with the input's EXIF (date, camera; the
orientation is already applied). Output paths are planned before anything is written:
inputs whose outputs would coincide keep their folders and, where needed, their extension
(``a/x.jpg b/x.jpg b/x.png`` -> ``a/x.png b/x_jpg.png b/x_png.png``); existing files are
replaced only with ``--overwrite``, inputs never. Without ``--workdir`` or ``--model`` the
generator shipped in ``weights/`` is used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from experiments.cli import run_cli

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
RENDER_SIZE_HELP = (
    "longest side in pixels at which colour is predicted, then upsampled onto the photo's "
    "full-resolution lightness (rounded to a multiple of the model's downsampling; default: "
    "the model's, 256 for the shipped one). The trade-off of DeOldify's render factor: "
    "smaller gives calmer, more consistent colour but blurs colour over small objects; "
    "larger resolves finer coloured detail but the colours get patchier and less stable, "
    "the more so the further it is above the model's training size"
)


def _bounded(kind: Callable[[str], float], low: float, name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {text}")
        return value

    return parse


def add_weights_arg(parser: argparse.ArgumentParser) -> None:
    """``--weights ema|raw``: which weights of a training workdir to use."""
    parser.add_argument(
        "--weights",
        choices=("ema", "raw"),
        help="weights of --workdir: the EMA (default when the run keeps one) or the raw ones",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--workdir`` or ``--model`` (else the shipped model), ``--step``, ``--weights`` and
    ``--temperature``: what ``load_colorizer`` takes."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--workdir", help="training run directory")
    source.add_argument("--model", help="exported model folder (experiments.export)")
    parser.add_argument("--step", help="checkpoint of --workdir: a step, 'best' or 'latest'")
    add_weights_arg(parser)
    add_temperature_arg(parser)


def add_temperature_arg(parser: argparse.ArgumentParser) -> None:
    """``--temperature`` of a classification-head model's decoding."""
    parser.add_argument(
        "--temperature",
        type=float,
        help="classification-head models: annealed-mean temperature, lower is more vivid and "
        "riskier, 1 the plain mean (default: the model's, 0.38 unless trained otherwise)",
    )


def load_colorizer(
    workdir: str | None,
    model: str | None,
    step: str | None,
    weights: str | None = None,
    temperature: float | None = None,
):
    """The generator from a training workdir, an exported model folder, or the shipped one,
    decoding at ``temperature`` (None: the model's own)."""
    from colorjax import inference

    if weights and not workdir:
        raise ValueError("--weights selects among a --workdir run's weights; give --workdir")
    if workdir:
        colorizer = inference.load_workdir(workdir, step, weights)
    elif model:
        colorizer = inference.load_bundle(model)
    elif SHIPPED_WEIGHTS.is_dir():
        colorizer = inference.load_bundle(SHIPPED_WEIGHTS)
    else:
        raise FileNotFoundError(
            f"no --workdir or --model given and no shipped model at {SHIPPED_WEIGHTS}"
        )
    return colorizer.with_temperature(temperature)


def add_rendering_args(parser: argparse.ArgumentParser) -> None:
    """How each photo is colorized: ``--render-size``, ``--chroma``, ``--flip``."""
    group = parser.add_argument_group("colour")
    group.add_argument(
        "--render-size", type=_bounded(int, 1, "--render-size"), help=RENDER_SIZE_HELP
    )
    group.add_argument(
        "--chroma",
        type=_bounded(float, 0.0, "--chroma"),
        default=1.0,
        help="multiplier on the predicted colour (a*b*): 0 gray, below 1 more muted, above 1 "
        "more colourful; colours beyond sRGB are clipped (default: 1)",
    )
    group.add_argument("--flip", action="store_true", help="average with the mirrored photo")


def rendering_options(args: argparse.Namespace) -> dict:
    """The ``add_rendering_args`` values as keyword arguments of ``colorize_files``."""
    return {"render_size": args.render_size, "chroma": args.chroma, "flip": args.flip}


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Where and how results are written: ``--out``, ``--format``, ``--quality``,
    ``--overwrite``."""
    from colorjax.imaging.writing import DEFAULT_QUALITY, FORMATS

    group = parser.add_argument_group("output")
    group.add_argument("--out", default="colorized", help="output folder (default: colorized)")
    group.add_argument("--format", choices=list(FORMATS), default="png", help="default: png")
    group.add_argument(
        "--quality",
        type=int,
        help=f"jpg/webp quality, 1-100 (default: {DEFAULT_QUALITY}); png is lossless",
    )
    group.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_speed_args(parser: argparse.ArgumentParser) -> None:
    """``--batch-size`` and ``--workers``."""
    group = parser.add_argument_group("speed")
    group.add_argument(
        "--batch-size",
        type=_bounded(int, 1, "--batch-size"),
        help="photos of one render shape per network call, same pixels at any size "
        "(default: 1 on CPU, where batches are slower per photo, 8 on GPU)",
    )
    group.add_argument(
        "--workers",
        type=_bounded(int, 1, "--workers"),
        default=2,
        help="threads decoding ahead, and threads writing behind (default: 2 each)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    add_model_args(parser)
    add_rendering_args(parser)
    add_output_args(parser)
    add_speed_args(parser)
    args = parser.parse_args(argv)

    from colorjax.imaging import output_plan, writing
    from colorjax.inference import batch_colorize

    try:
        fmt = writing.OutputFormat(args.format, args.quality)
        sources = output_plan.find_inputs(args.inputs)
        plan = output_plan.plan_outputs(sources, Path(args.out), fmt.suffix, args.overwrite)
        colorizer = load_colorizer(
            args.workdir, args.model, args.step, args.weights, args.temperature
        )
    except (ValueError, OSError) as err:
        parser.error(str(err))
    report = batch_colorize.Report()
    if plan.jobs:
        report = batch_colorize.colorize_files(
            colorizer,
            plan.jobs,
            **rendering_options(args),
            fmt=fmt,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=len(plan.jobs) > 1,
        )
    skipped = plan.skipped + report.skipped
    for item in skipped:
        print(f"skipped {item}", file=sys.stderr)
    print(f"wrote {len(report.written)} image(s) to {args.out}; skipped {len(skipped)}")
    return 1 if skipped and not report.written else 0


if __name__ == "__main__":
    run_cli(main, errors=(FileNotFoundError, ValueError))
