"""Run an ablation grid: ``python -m experiments.ablate --grid key=v1,v2 [...] --out DIR``.

Every combination of the ``--grid`` values, for each of ``--seeds`` seeds (train.seed, train.seed
+ 1, ...), is a normal training run in ``DIR/<key=value>__...__seed=S``. Each finished run is
evaluated (gray baseline included) on every eval set: ``--eval-data SOURCE`` (all its test
images) and ``--eval-heldout SOURCE`` (only the split training holds out of it), both
repeatable, each set named by its folder (``NAME=SOURCE`` to name it); without either, the
training source's held-out split. Every set is scored at each ``--eval-render-size`` and
``--eval-temperature`` (classification heads only), no retraining. DIR gets results.csv,
results.md (a table per set, and a summary across them), loss_curves.png, metrics.png and
samples.png. Re-running the same command skips finished cells, resumes interrupted ones, runs
only new ones and scores only the sets and variants a cell is missing; a failing cell is
recorded (DIR/<cell>/cell.json) without stopping the others. Ctrl-C saves the running cell and
stops.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from colorjax.config import ConfigError
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
        dest="eval_sets",
        action="append",
        default=[],
        type=_tagged("--eval-data"),
        metavar="SOURCE",
        help="score every test image of SOURCE (e.g. folder:../shared/data/CBSD68); repeatable, "
        "NAME=SOURCE names the set (default: its folder's name)",
    )
    parser.add_argument(
        "--eval-heldout",
        dest="eval_sets",
        action="append",
        type=_tagged("--eval-heldout"),
        metavar="SOURCE",
        help="score only the split training holds out of SOURCE (by data.eval_fraction); "
        "repeatable. Without --eval-data/--eval-heldout: the training source's held-out split",
    )
    parser.add_argument(
        "--eval-limit", type=positive, help="score only the first N images of each set"
    )
    parser.add_argument(
        "--eval-render-size",
        type=_number_list(int, "positive integers"),
        default=[],
        metavar="N[,N...]",
        help="score at each render size (longest side ab is predicted at; default: the model's)",
    )
    parser.add_argument(
        "--eval-temperature",
        type=_number_list(float, "positive numbers"),
        default=[],
        metavar="T[,T...]",
        help="score classification-head cells at each annealed-mean temperature (default: the "
        "model's); regression cells have none",
    )
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


def _tagged(option: str):
    """argparse type: the text with the option that gave it (for messages naming it)."""
    return lambda text: (option, text)


def _number_list(kind: type, what: str):
    """argparse type: ``N[,N...]`` of positive ``kind`` values, without repeats."""

    def parse(text: str) -> list:
        try:
            values = [kind(item) for item in text.split(",")]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected {what} separated by commas, got {text!r}")
        if len(set(values)) < len(values):
            raise argparse.ArgumentTypeError(f"{text!r} repeats a value")
        return values

    return parse


def eval_plan(args: argparse.Namespace, base, cells):
    """The eval sets and variants of the options for ``cells``; a bad source names its
    option."""
    from colorjax import ablation

    splits = {"--eval-data": ablation.ALL, "--eval-heldout": ablation.EVAL}
    sets = []
    for option, text in args.eval_sets:
        try:
            sets.append(ablation.eval_set(text, splits[option], base, args.eval_limit))
        except ValueError as err:
            raise ConfigError(f"{option} {text}: {err}") from None
    variants = ablation.variants(args.eval_render_size, args.eval_temperature)
    try:
        plan = ablation.EvalPlan(
            tuple(sets or [ablation.training_eval_set(base, args.eval_limit)]), variants
        )
        ablation.check_held_out_sets(plan, cells)
    except ValueError as err:
        raise ConfigError(f"--eval-data/--eval-heldout: {err}") from None
    return plan


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
    plan = eval_plan(args, base, cells)
    if args.dry_run:
        print(f"{plan.describe()}\n{ablation.describe_cells(cells, plan.pairs)}")
        return
    axes = " × ".join(key for key, _ in grid) or "seeds only"
    title = f"Ablation of preset {args.preset}: {axes}, {args.seeds} seed(s)"

    def report() -> None:
        paths = ablation.write_summary(cells, out, plan, title)
        print(f"report: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)

    evaluator = ablation.CellEvaluator(plan)
    if args.report_only or not ablation.cells_to_run(cells, evaluator, args.retry_failed):
        report()
        return
    try:
        evaluator.prepare()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    completed = ablation.run_grid(
        cells,
        make_trainer(args, cache_dir(args, out)),
        evaluator,
        retry_failed=args.retry_failed,
        on_cell_done=report,
    )
    if not completed:
        report()
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        raise SystemExit(ablation.INTERRUPTED_EXIT)


if __name__ == "__main__":
    run_cli(main)
