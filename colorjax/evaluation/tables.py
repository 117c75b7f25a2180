"""An evaluation's results as a markdown table, a comparison grid and files on disk."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colorjax import inference
from colorjax.evaluation.compare import (
    GOALS,
    GRID_HEIGHT,
    GROUND_TRUTH,
    MATCH_TRUTH,
    MAX,
    METRICS,
    MIN,
    Images,
    colorize_all,
)
from colorjax.imaging import visual


def _distance_from_best(metric: str, value: float, truth: Mapping[str, float]) -> float:
    goal = GOALS[metric]
    if goal == MAX:
        return -value
    if goal == MIN:
        return value
    return abs(value - (truth[metric] if goal == MATCH_TRUTH else goal))


def best_methods(results: dict, metric: str) -> set[str]:
    """The methods whose mean ``metric`` is best (see ``GOALS``); ties are all best."""
    truth = results[GROUND_TRUTH]
    distances = {
        method: _distance_from_best(metric, values[metric], truth)
        for method, values in results["mean"].items()
        if not math.isnan(values[metric])
    }
    best = min(distances.values(), default=None)
    return {method for method, distance in distances.items() if distance == best}


def goal_label(goal: str | float) -> str:
    if isinstance(goal, float):
        return f"≈{goal:g}"
    return {MAX: "↑", MIN: "↓", MATCH_TRUTH: "≈gt"}[goal]


def _cell(value: float, bold: bool = False) -> str:
    text = f"{round(value, 3) + 0.0:.3f}" if math.isfinite(value) else str(value)
    return f"**{text}**" if bold else text


def markdown_table(results: dict) -> str:
    """Mean metrics, one row per method plus the ground truth, best per column in bold."""
    header = ["method", *(f"{metric} {goal_label(GOALS[metric])}" for metric in METRICS)]
    best = {metric: best_methods(results, metric) for metric in METRICS}
    rows = [
        [method, *(_cell(values[m], method in best[m]) for m in METRICS)]
        for method, values in results["mean"].items()
    ]
    truth = results[GROUND_TRUTH]
    rows.append(["ground truth", *(_cell(truth[m]) if m in truth else "" for m in METRICS)])
    lines = [header, ["---", *("---:" for _ in METRICS)], *rows]
    table = "\n".join("| " + " | ".join(line) + " |" for line in lines)
    return (
        f"{table}\n\nMeans over {len(results['images'])} images; best per column in bold "
        "(↑ highest, ↓ lowest, ≈ closest to the ground truth's value or to the number)."
    )


def grid_from_outputs(
    outputs: Mapping[str, Sequence[np.ndarray]],
    images: Images,
    count: int = 6,
    height: int = GRID_HEIGHT,
) -> np.ndarray:
    """uint8 RGB grid of the first ``count`` images: a column per method (``colorize_all``
    order, gray first), then the ground truth; every cell resized to ``height`` pixels."""
    rows = [
        [visual.resize_to_height(outs[index], height) for outs in outputs.values()]
        + [visual.resize_to_height(rgb, height)]
        for index, (_, rgb) in enumerate(images[:count])
    ]
    return visual.image_grid(rows, column_titles=[*outputs, "ground truth"])


def comparison_grid(
    methods: Mapping[str, inference.Colorizer],
    images: Images,
    count: int = 6,
    height: int = GRID_HEIGHT,
    render_size: int | None = None,
) -> np.ndarray:
    """Colorize the first ``count`` images and lay them out gray | each method | ground truth
    (``grid_from_outputs`` reuses outputs already made)."""
    shown = images[:count]
    outputs = colorize_all(methods, shown, render_size=render_size)
    return grid_from_outputs(outputs, shown, count, height)


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as the strings "inf", "-inf", "nan" (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def write_results(results: dict, out: Path, grid: np.ndarray | None = None) -> dict[str, Path]:
    """Write ``out`` (the results as JSON), the markdown table beside it (``out`` with suffix
    .md) and the grid (``<stem>_grid.png``); returns the paths by kind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_ready(results), indent=2, allow_nan=False) + "\n")
    markdown = out.with_suffix(".md")
    markdown.write_text(markdown_table(results) + "\n")
    paths = {"json": out, "markdown": markdown}
    if grid is not None:
        paths["grid"] = visual.save_png(grid, out.with_name(f"{out.stem}_grid.png"))
    return paths
