"""Colorize photos: ``python -m experiments.colorize [--workdir RUN | --model DIR] INPUT...``.

Outputs go to ``--out DIR`` as PNG. INPUT is any mix of files, folders (searched
recursively) and glob patterns. Without ``--workdir`` or ``--model`` the generator shipped in
``weights/`` is used.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from experiments.cli import run_cli

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def expand_inputs(patterns: Sequence[str]) -> list[tuple[Path, Path]]:
    """(image path, output name relative to --out) for every input; missing ones are errors."""
    from colorjax.imageio import IMAGE_EXTENSIONS

    found: list[tuple[Path, Path]] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            found += [(p, p.relative_to(path).with_suffix(".png")) for p in files]
        elif path.is_file():
            found.append((path, Path(path.name).with_suffix(".png")))
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no such file, folder or matching glob: {pattern}")
            found += [(p, Path(p.name).with_suffix(".png")) for p in matches if p.is_file()]
    return found


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


def plan_outputs(
    inputs: list[tuple[Path, Path]], out: Path, overwrite: bool
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs to do, and messages for the ones skipped to protect files."""
    sources = {p.resolve() for p, _ in inputs}
    todo, skipped = [], []
    for path, name in inputs:
        target = out / name
        if target.resolve() in sources:
            skipped.append(f"{path}: the output would overwrite an input; choose another --out")
        elif target.exists() and not overwrite:
            skipped.append(f"{path}: {target} exists (use --overwrite to replace it)")
        else:
            todo.append((path, target))
    return todo, skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    add_model_args(parser)
    parser.add_argument("--out", default="colorized", help="output folder (default: colorized)")
    parser.add_argument("--render-size", type=int, help="longest side at which ab is predicted")
    parser.add_argument("--flip", action="store_true", help="average with the mirrored input")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)

    from colorjax import imageio, viz

    try:
        colorizer = load_colorizer(
            args.workdir, args.model, args.step, args.weights, args.temperature
        )
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    todo, problems = plan_outputs(expand_inputs(args.inputs), Path(args.out), args.overwrite)
    written = 0
    for path, target in tqdm(todo, unit="image", disable=len(todo) < 2):
        try:
            image = imageio.load_image(path)
        except (imageio.ImageDecodeError, OSError) as err:
            problems.append(f"{path}: {err}")
            continue
        rgb = colorizer.colorize(image, render_size=args.render_size, flip=args.flip)
        viz.save_png(rgb, target)
        written += 1
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    print(f"wrote {written} image(s) to {args.out}; skipped {len(problems)}")
    return 1 if problems and not written else 0


if __name__ == "__main__":
    run_cli(main, errors=(FileNotFoundError, ValueError))
