"""Run an ablation grid: ``python -m experiments.ablate --grid key=v1,v2 [...] --out DIR``.

Every combination of the ``--grid`` values, for each of ``--seeds`` seeds (train.seed, train.seed
+ 1, ...), is a normal training run in ``DIR/<key=value>__...__seed=S``. Each finished run is
evaluated (gray baseline included) on the preset's held-out split or on ``--eval-data``, and
DIR gets results.csv, results.md, loss_curves.png, metrics.png and samples.png. Re-running the
same command skips finished cells, resumes interrupted ones and runs only new ones; a failing
cell is recorded (DIR/<cell>/cell.json) without stopping the others. Ctrl-C saves the running
cell and stops.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.cli import add_config_args, config_from_args, run_cli
from experiments.evaluate import positive


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a grid axis (repeatable); separate values with | when they contain commas",
    )
    parser.add_argument("--seeds", type=positive, default=1, help="seeds per combination")
    parser.add_argument("--out", help="ablation directory (default: runs/ablate_<preset>)")
    parser.add_argument(
        "--eval-data",
        metavar="SOURCE",
        help="evaluate on all test images of SOURCE (e.g. folder:../shared/data/CBSD68) "
        "instead of the training source's held-out split",
    )
    parser.add_argument("--eval-limit", type=positive, help="evaluate only the first N images")
    parser.add_argument(
        "--subprocess", action="store_true", help="train each cell in its own process"
    )
    parser.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    parser.add_argument(
        "--compile-cache",
        metavar="DIR",
        help="JAX compilation cache shared by the cells (default: OUT/jax_cache; '' = off)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    mode.add_argument(
        "--report-only", action="store_true", help="rewrite tables and plots, train nothing"
    )
    return parser.parse_args(argv)


def train_command(preset: str, overrides: Sequence[str]):
    """The ``experiments.train`` command line of a cell (for ``--subprocess``)."""

    def command(cell) -> list[str]:
        sets = [item for o in [*overrides, *cell.overrides] for item in ("--set", o)]
        argv = ["-m", "experiments.train", "--preset", preset, *sets]
        return [sys.executable, *argv, "--workdir", str(cell.workdir)]

    return command


def use_compilation_cache(directory: str) -> None:
    """Keep compiled XLA programs in ``directory``: cells whose programs are identical (the
    seeds of a combination, values that only change the input pipeline) compile once."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", directory)
    compilation_cache.reset_cache()


def cache_dir(args: argparse.Namespace, out: Path) -> str:
    """``--compile-cache``, by default ``OUT/jax_cache`` ("" = no cache)."""
    return str(out / "jax_cache") if args.compile_cache is None else args.compile_cache


def make_trainer(args: argparse.Namespace, cache: str):
    """Train in this process, or (``--subprocess``) one ``experiments.train`` per cell."""
    from colorjax import ablation

    if not args.subprocess:
        if cache:
            use_compilation_cache(cache)
        return ablation.train_in_process
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache} if cache else None
    return ablation.SubprocessTrainer(train_command(args.preset, args.overrides), env)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from colorjax import ablation

    base = config_from_args(args)
    out = Path(args.out or f"runs/ablate_{args.preset}")
    grid = [ablation.parse_grid(spec) for spec in args.grid]
    seeds = range(base.train.seed, base.train.seed + args.seeds)
    cells = ablation.expand_grid(base, grid, seeds, out)
    ablation.validate_cells(cells)
    ablation.check_trained_settings(cells)
    if args.dry_run:
        print(ablation.describe_cells(cells))
        return
    axes = " × ".join(key for key, _ in grid) or "seeds only"
    title = f"Ablation of preset {args.preset}: {axes}, {args.seeds} seed(s)"

    def report() -> None:
        paths = ablation.write_report(cells, out, title)
        print(f"report: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)

    spec = ablation.EvalSpec.from_config(base, args.eval_data, args.eval_limit)
    if args.report_only or not ablation.cells_to_run(cells, spec, args.retry_failed):
        report()
        return
    completed = ablation.run_grid(
        cells,
        make_trainer(args, cache_dir(args, out)),
        ablation.CellEvaluator(spec),
        retry_failed=args.retry_failed,
        on_cell_done=report,
    )
    if not completed:
        report()
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        raise SystemExit(ablation.INTERRUPTED_EXIT)


if __name__ == "__main__":
    run_cli(main)
