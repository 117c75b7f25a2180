"""Look at a data source before training on it: counts, skip reasons, sizes, and eval crops.

    python -m experiments.inspect_data sample
    python -m experiments.inspect_data folder:/data/photos --size 128 --out crops.png
    python -m experiments.inspect_data tfds:tf_flowers --data-dir ~/tensorflow_datasets
    python -m experiments.inspect_data folder:/data/CBSD432,folder:/data/imagenet900*0.5

A mix is described source by source (with its draws per mix epoch), then as a whole. The PNG
shows eval crops as columns L | a/b (at L=70) | RGB; in a mix the sources take turns.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from colorjax import color
from colorjax.data import DataStats, Pipeline, build_pipeline, draws_per_epoch, parse_mix
from colorjax.imaging import visual

COLUMNS = ("L", "a/b at L=70", "RGB")


def source_slug(source: str) -> str:
    """``folder:/data/My Photos`` -> ``folder-data-my-photos``."""
    return re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")


def _spread(values: tuple[int, int, int]) -> str:
    return "min {} / median {} / max {}".format(*values)


def describe(train: DataStats, eval_: DataStats) -> list[str]:
    """The report lines; a TFDS eval split read separately is described on its own lines."""
    scanned = [("", train)] if train.eval is not None else [("", train), ("eval split ", eval_)]
    lines = []
    for label, stats in scanned:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(stats.skipped.items()))
        skipped = f"{sum(stats.skipped.values())}" + (f" ({reasons})" if reasons else "")
        lines += [
            f"{label}found:    {stats.found} images",
            f"{label}decoded:  {stats.decoded}",
            f"{label}skipped:  {skipped}",
            f"{label}width:    {_spread(stats.width)}",
            f"{label}height:   {_spread(stats.height)}",
        ]
    lines.append(
        f"split:    train {train.train}, eval {eval_.eval} "
        "(gray images are skipped for training only)"
    )
    return lines


def describe_mix(source: str, train: Pipeline, eval_: Pipeline) -> list[str]:
    """The report lines of a mix: each source's, indented under its name, then the totals."""
    sources = parse_mix(source)
    if len(sources) == 1:
        return describe(train.stats, eval_.stats)
    draws = [
        draws_per_epoch(s.weight, stats.train)
        for s, stats in zip(sources, train.source_stats, strict=True)
    ]
    lines = []
    for s, n, train_stats, eval_stats in zip(
        sources, draws, train.source_stats, eval_.source_stats, strict=True
    ):
        lines.append(
            f"{s.name}: {s.spec}, weight {s.weight:g}: {n} of the {sum(draws)} draws "
            f"per mix epoch ({n / sum(draws):.1%})"
        )
        lines += [f"  {line}" for line in describe(train_stats, eval_stats)]
    return [*lines, "all sources:", *(f"  {line}" for line in describe(train.stats, eval_.stats))]


def eval_grid(pipeline: Pipeline, count: int) -> tuple[np.ndarray, int]:
    """Rows L | ab | RGB of the first ``count`` eval crops, and how many there were."""
    rows = []
    for batch in pipeline.as_numpy():
        for l, ab in zip(*map(np.asarray, color.rgb8_to_network(batch["rgb"])), strict=True):
            rows.append(
                [visual.l_to_visual(l), visual.ab_to_visual(ab), visual.network_to_visual(l, ab)]
            )
        if len(rows) >= count:
            break
    rows = rows[:count]
    return visual.image_grid(rows, column_titles=COLUMNS), len(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", help="sample | folder:PATH | tfds:NAME[:SPLIT], or a comma list (a mix)"
    )
    parser.add_argument("--size", type=int, default=128, help="crop size in pixels")
    parser.add_argument("--count", type=int, default=8, help="eval crops in the grid")
    parser.add_argument("--out", help="PNG path (default: inspect_<source>.png)")
    parser.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="folder sources without train/ and eval/ sub-folders",
    )
    parser.add_argument("--data-dir", help="TFDS data_dir")
    args = parser.parse_args(argv)

    common = dict(
        image_size=args.size,
        batch_size=args.count,
        data_dir=args.data_dir,
        eval_fraction=args.eval_fraction,
    )
    train = build_pipeline(args.source, train=True, **common)
    eval_ = build_pipeline(args.source, train=False, **common)
    print(f"source:   {args.source}")
    print("\n".join(describe_mix(args.source, train, eval_)))
    grid, shown = eval_grid(eval_, args.count)
    out = visual.save_png(grid, args.out or f"inspect_{source_slug(args.source)}.png")
    print(f"grid:     {out} ({shown} eval crops of {args.size}px: {' | '.join(COLUMNS)})")


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point: a bad source is one line on stderr and exit status 2."""
    try:
        main(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    run()
