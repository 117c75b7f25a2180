"""Export a run's generator for inference: ``python -m experiments.export --workdir RUN --out DIR``.

The folder holds the generator's weights and the config that rebuilds it, nothing else: the
run's EMA weights when it keeps some (train.ema.decay > 0), else (or with ``--weights raw``) the
trained ones. ``generator.json`` records the workdir, step and weights it came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from experiments.cli import run_cli
from experiments.colorize import add_weights_arg


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument("--out", required=True, help="folder to write the model to")
    parser.add_argument("--step", help="a step number, 'best' or 'latest' (default)")
    add_weights_arg(parser)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16"),
        help="storage precision of the weights",
    )
    args = parser.parse_args(argv)

    from colorjax import inference

    colorizer = inference.load_workdir(args.workdir, args.step, args.weights)
    path = inference.export_bundle(colorizer, args.out, dtype=args.dtype, metadata=colorizer.origin)
    print(f"exported the generator ({colorizer.origin['weights']} weights) to {path}")


if __name__ == "__main__":
    run_cli(main, errors=(FileNotFoundError, ValueError))
