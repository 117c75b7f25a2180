"""Side-by-side figures of a model on photos without ground truth.

    python -m experiments.showcase --out imgs/historical_bw.png PHOTO...
    python -m experiments.showcase PHOTO1 PHOTO2 --out imgs/seed_comparison.png \\
        --beside OTHER1.png OTHER2.png --beside-title "other model"
    python -m experiments.showcase PHOTO --render-size 128 256 512 --out imgs/render_sizes.png

Each photo is shown as the gray input, then (with ``--beside``, one file per photo, in the
same order) another colorization of it, then this model's (one per ``--render-size``). The
model is the shipped one unless ``--workdir`` or ``--model`` names another.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from experiments.colorize import RENDER_SIZE_HELP, add_model_args, load_colorizer


def photo_cells(
    gray: np.ndarray, colorized: Sequence[np.ndarray], beside: np.ndarray | None, height: int
) -> list[np.ndarray]:
    """The cells of one photo, each ``height`` pixels tall: input, [beside], colorized..."""
    from colorjax.imaging import visual

    cells = [gray] + ([] if beside is None else [beside]) + list(colorized)
    return [visual.resize_to_height(cell, height) for cell in cells]


def showcase_grid(
    cells: Sequence[list[np.ndarray]], per_row: int, titles: Sequence[str]
) -> np.ndarray:
    """Photos' cells laid out ``per_row`` photos to a grid row, ``titles`` over each photo."""
    from colorjax.imaging import visual

    rows = [
        [cell for photo in cells[start : start + per_row] for cell in photo]
        for start in range(0, len(cells), per_row)
    ]
    return visual.image_grid(rows, column_titles=list(titles) * min(per_row, len(cells)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="PHOTO", help="files, folders or globs")
    parser.add_argument("--out", required=True, help="PNG file to write")
    add_model_args(parser)
    parser.add_argument("--beside", nargs="+", help="another colorization of each PHOTO")
    parser.add_argument("--beside-title", default="other", help="title of the --beside column")
    parser.add_argument(
        "--render-size", type=int, nargs="+", help=f"one column per size: {RENDER_SIZE_HELP}"
    )
    parser.add_argument("--height", type=int, default=200, help="height of every cell")
    parser.add_argument("--per-row", type=int, default=1, help="photos per grid row")
    args = parser.parse_args(argv)

    from colorjax import evaluation
    from colorjax.imaging import decoding, visual
    from colorjax.imaging.output_plan import find_inputs

    photos = [source.path for source in find_inputs(args.inputs)]
    if args.beside is not None and len(args.beside) != len(photos):
        parser.error(f"--beside names {len(args.beside)} files for {len(photos)} photos")
    render_sizes = args.render_size or [None]

    colorizer = load_colorizer(args.workdir, args.model, args.step, args.weights, args.temperature)
    cells = []
    for index, path in enumerate(photos):
        rgb = decoding.load_image(path)
        gray = evaluation.gray_baseline(rgb)
        beside = None if args.beside is None else decoding.load_image(args.beside[index])
        colorized = [colorizer.colorize(rgb, render_size=size) for size in render_sizes]
        cells.append(photo_cells(gray, colorized, beside, args.height))
    titles = ["input"] + ([] if args.beside is None else [args.beside_title])
    titles += [f"render {size}" for size in args.render_size or []] or ["colorjax"]
    path = visual.save_png(showcase_grid(cells, args.per_row, titles), args.out)
    print(f"wrote {path} ({len(photos)} photos)")


if __name__ == "__main__":
    main()
