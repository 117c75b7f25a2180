"""Evaluate colorizers on whole photos: ``python -m experiments.evaluate --workdir RUN --data SRC``.

SOURCE is ``sample`` (each photo's held-out region), ``folder:PATH`` or ``tfds:NAME[:SPLIT]``
(its eval split), or a mix of them as in ``data.source`` (``folder:A,folder:B``: the images of
every source, named ``<source>/<image>``). A folder with train/ and eval/ (or val/) sub-folders
gives its eval images. Any other folder is, with ``--split all`` (the default), all test, every
image evaluated; with ``--split eval``, only the photos a run on it held out, by exactly the
rule training used (``--eval-fraction``: the run's ``data.eval_fraction``, 0.1 by default).
Images are evaluated at native size unless ``--size N`` asks for the view validation uses
(shorter side N, central square). Each --workdir / --model is a method named by its folder; the
gray baseline (L with a = b = 0) is always included. Photos whose ground truth is grayscale
are left out (the gray baseline is exact on them), unless ``--keep-gray``. Writes the results
as JSON to --out, the markdown table beside it (.md, also printed) and a comparison grid
(``<stem>_grid.png``: gray | each method | ground truth).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from colorjax.config import DataConfig
from experiments.colorize import add_temperature_arg, add_weights_arg, load_colorizer

SPLITS = ("all", "eval")  # evaluation.SPLITS, without importing TensorFlow before parsing


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", action="append", default=[], help="training run directory (repeatable)"
    )
    parser.add_argument(
        "--model", action="append", default=[], help="exported model folder (repeatable)"
    )
    parser.add_argument("--step", help="checkpoint of every --workdir: a step, 'best' or 'latest'")
    add_weights_arg(parser)
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        help="method names in place of the folder names: one per --workdir, then per --model",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="sample | folder:PATH | tfds:NAME[:SPLIT], or a comma list of them (a mix)",
    )
    parser.add_argument("--data-dir", help="TFDS data directory")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=SPLITS[0],
        help="plain folders: all their images (default), or only the eval split training held out",
    )
    parser.add_argument(
        "--eval-fraction",
        type=float,
        default=DataConfig().eval_fraction,
        help="the share training holds out (the run's data.eval_fraction, default %(default)s): "
        "plain folders with --split eval, TFDS without an eval split",
    )
    parser.add_argument(
        "--keep-gray", action="store_true", help="also score photos whose ground truth is gray"
    )
    parser.add_argument("--size", type=positive, help="evaluate N x N validation views")
    parser.add_argument("--render-size", type=positive, help="longest side ab is predicted at")
    add_temperature_arg(parser)
    parser.add_argument(
        "--limit", type=positive, help="evaluate only the first N images (of each source)"
    )
    parser.add_argument("--out", default="results.json", help="JSON file (default results.json)")
    parser.add_argument("--grid-images", type=int, default=6, help="rows of the grid (0: none)")
    parser.add_argument("--grid-height", type=positive, default=160, help="grid cell height")
    args = parser.parse_args(argv)
    if not args.workdir and not args.model:
        parser.error("give at least one --workdir or --model")
    if args.name and len(args.name) != len(args.workdir) + len(args.model):
        parser.error(f"{len(args.name)} --name for {len(args.workdir) + len(args.model)} methods")
    return args


def load_methods(
    workdirs: Sequence[str],
    models: Sequence[str],
    step: str | None,
    names: Sequence[str] = (),
    weights: str | None = None,
    temperature: float | None = None,
) -> dict:
    """{name: Colorizer} of the workdirs then the model folders, named by ``names`` or by
    folder; ``step`` and ``weights`` apply to every workdir; classification-head models decode
    at ``temperature`` (None: their own)."""
    from colorjax.evaluation import method_names

    colorizers = [load_colorizer(w, None, step, weights, temperature) for w in workdirs]
    colorizers += [load_colorizer(None, m, None, None, temperature) for m in models]
    return dict(zip(method_names(names or [*workdirs, *models]), colorizers, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from colorjax import evaluation

    try:
        methods = load_methods(
            args.workdir, args.model, args.step, args.name, args.weights, args.temperature
        )
        images = evaluation.eval_images(
            args.data,
            split=args.split,
            data_dir=args.data_dir,
            eval_fraction=args.eval_fraction,
            size=args.size,
            limit=args.limit,
            skip_gray=not args.keep_gray,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"evaluating {len(images)} images: {', '.join(methods)}", file=sys.stderr)
    outputs = evaluation.colorize_all(methods, images, render_size=args.render_size)
    results = evaluation.score(outputs, images)
    grid = None
    if args.grid_images > 0:
        grid = evaluation.grid_from_outputs(outputs, images, args.grid_images, args.grid_height)
    paths = evaluation.write_results(results, Path(args.out), grid)
    print(evaluation.markdown_table(results))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
