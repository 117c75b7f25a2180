"""A grid's figures: loss_curves.png (every cell's GAN losses), metrics.png (per eval set, a
bar per grid combination and variant) and samples.png (the same photos of every set across
the cells)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colorjax.ablation.results import CellResult, first_record, floats, set_rows
from colorjax.ablation.scoring import samples_path
from colorjax.ablation.status import FAILED
from colorjax.ablation.types import EvalPlan

SMOOTHING = 0.9  # exponential moving average of the loss curves (TensorBoard style)
FEW_POINTS = 30  # loss curves with fewer logged steps show markers
LOSS_PANELS = (
    ("g_adv", "G adversarial"),
    ("g_l1", "L1"),
    ("d_real", "D real"),
    ("d_fake", "D fake"),
)
PLOT_METRICS = ("psnr", "colorfulness", "tint", "blob")  # the summary table's, per set
LINESTYLES = ("-", "--", ":", "-.")


def read_losses(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{loss: (steps, values)} of the train records of ``metrics.jsonl``; a step logged twice
    (a resumed run repeats the steps after its last checkpoint) keeps its latest value."""
    path = workdir / "metrics.jsonl"
    by_step: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if record.get("split") == "train":
                    by_step[record["step"]] = record
    curves = {}
    for key, _ in LOSS_PANELS:
        points = sorted((step, r[key]) for step, r in by_step.items() if key in r)
        if points:
            steps, values = zip(*points, strict=True)
            curves[key] = (np.asarray(steps), np.asarray(values, np.float64))
    return curves


def smooth(values: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    out, average, norm = np.empty_like(values), 0.0, 0.0
    for index, value in enumerate(values):
        average = weight * average + (1.0 - weight) * value
        norm = weight * norm + (1.0 - weight)
        out[index] = average / norm
    return out


def _styles(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """Line style per cell: a colour per grid combination, a dash pattern per seed."""
    from matplotlib import colormaps

    combos = list(dict.fromkeys(r.cell.combo for r in results))
    seeds = sorted({r.cell.seed for r in results})
    palette = colormaps["tab10" if len(combos) <= 10 else "tab20"]
    return [
        {
            "color": palette(combos.index(r.cell.combo) % palette.N),
            "linestyle": LINESTYLES[seeds.index(r.cell.seed) % len(LINESTYLES)],
        }
        for r in results
    ]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_loss_curves(results: Sequence[CellResult], path: Path) -> bool:
    """loss_curves.png: the four GAN losses of every cell overlaid, smoothed; False if no cell
    has logged losses."""
    from matplotlib.lines import Line2D

    curves = [read_losses(r.cell.workdir) for r in results]
    if not any(curves):
        return False
    figure = _figure(12, 8)
    axes = figure.subplots(2, 2).ravel()
    styles = _styles(results)
    for losses, style in zip(curves, styles, strict=True):
        for ax, (key, _) in zip(axes, LOSS_PANELS, strict=True):
            if key in losses:
                steps, values = losses[key]
                marker = "o" if len(steps) < FEW_POINTS else None
                ax.plot(steps, smooth(values), marker=marker, markersize=3, **style)
    for ax, (_, title) in zip(axes, LOSS_PANELS, strict=True):
        ax.set_title(f"{title} (EMA {SMOOTHING})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    labels = [
        f"{r.cell.combo}, seed {r.cell.seed}"
        + (" (failed)" if r.status["status"] == FAILED else "")
        for r in results
    ]
    handles = [Line2D([], [], **style) for style in styles]
    figure.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    keys = " / ".join(results[0].cell.values) or "preset"
    figure.suptitle(f"Training losses per cell ({keys}): colour = combination, dashes = seed")
    figure.savefig(path, dpi=100)
    return True


def _bar_label(row, plan: EvalPlan) -> str:
    return row.combo + (f"\n{row.variant.label}" if len(plan.variants) > 1 else "")


def plot_metrics(results: Sequence[CellResult], plan: EvalPlan, path: Path) -> bool:
    """metrics.png: a row of panels per scored eval set, one per ``PLOT_METRICS``, a bar per
    grid combination and variant (mean over seeds, each seed a dot, the std as error bar),
    the set's gray baseline (and ground truth) as lines; False if no cell is scored."""
    from colorjax.evaluation import GOALS, goal_label

    scored = [
        (s, [row for row in set_rows(results, s, plan) if row.runs], record)
        for s in plan.sets
        if (record := first_record(results, s, plan)) is not None
    ]
    if not scored:
        return False
    bars = max(len(rows) for _, rows, _ in scored)
    panel_width = max(2.8, 0.45 * bars + 1.2)
    figure = _figure(panel_width * len(PLOT_METRICS), 3.6 * len(scored))
    axes = figure.subplots(len(scored), len(PLOT_METRICS), squeeze=False)
    for row_axes, (eval_set, rows, record) in zip(axes, scored, strict=True):
        gray, truth = floats(record["gray"]), floats(record["ground_truth"])
        positions = np.arange(len(rows))
        for ax, metric in zip(row_axes, PLOT_METRICS, strict=True):
            means = [row.mean(metric) for row in rows]
            ax.bar(
                positions,
                means,
                yerr=[row.std(metric) for row in rows],
                capsize=4,
                color="#9ecae1",
                edgecolor="#3182bd",
            )
            for x, row in zip(positions, rows, strict=True):
                ax.plot([x] * len(row.runs), [run[metric] for run in row.runs], "k.", markersize=6)
            ax.axhline(gray[metric], color="0.4", linestyle="--", label="gray baseline")
            if metric in truth:
                ax.axhline(truth[metric], color="tab:green", linestyle=":", label="ground truth")
            ax.set_title(f"{eval_set.name}: {metric} {goal_label(GOALS[metric])}", fontsize=9)
            labels = [_bar_label(row, plan) for row in rows]
            ax.set_xticks(positions, labels, rotation=20, ha="right", fontsize=7)
            values = [*means, gray[metric], *(run[metric] for row in rows for run in row.runs)]
            values += [truth[metric]] if metric in truth else []
            spread = (max(values) - min(values)) or 1.0
            ax.set_ylim(min(values) - 0.3 * spread, max(values) + 0.3 * spread)
            ax.legend(fontsize=7)
            ax.grid(axis="y", alpha=0.3)
    keys = " / ".join(results[0].cell.values) or "preset"
    figure.suptitle(f"{keys}: mean over seeds (dots: seeds, bars: ±std), a row per eval set")
    figure.savefig(path, dpi=100)
    return True


def _cell_samples(result: CellResult, plan: EvalPlan) -> dict[str, dict[str, np.ndarray]]:
    """{set name: thumbnails} of the cell's current records at its first variant."""
    variant = plan.variants_for(result.cell)[0]
    found = {}
    for eval_set in plan.sets:
        file = samples_path(result.cell.workdir, eval_set, variant)
        if result.record(eval_set, variant) is not None and file.is_file():
            with np.load(file) as saved:
                found[eval_set.name] = dict(saved)
    return found


def plot_samples(results: Sequence[CellResult], plan: EvalPlan, path: Path) -> bool:
    """samples.png: a row per scored cell (at its first variant) on the same photos, a group of
    columns per eval set, gray first and the ground truth last; False if no cell saved
    samples."""
    shown = [(r, samples) for r in results if (samples := _cell_samples(r, plan))]
    if not shown:
        return False
    references = {}
    for _, samples in shown:
        for name, thumbs in samples.items():
            references.setdefault(name, thumbs)
    columns = [
        (name, index)
        for name in (s.name for s in plan.sets)
        if name in references
        for index in range(len(references[name]["truth"]))
    ]
    several = len(plan.variants) > 1
    rows = [
        ("gray", {name: ref["gray"] for name, ref in references.items()}),
        *(
            (
                f"{r.cell.combo}\nseed {r.cell.seed}"
                + (f"\n{plan.variants_for(r.cell)[0].label}" if several else ""),
                {name: thumbs["prediction"] for name, thumbs in samples.items()},
            )
            for r, samples in shown
        ),
        ("ground truth", {name: ref["truth"] for name, ref in references.items()}),
    ]
    figure = _figure(2.0 + 1.6 * len(columns), 1.6 * len(rows))
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for row_axes, (label, images) in zip(axes, rows, strict=True):
        for ax, (name, index) in zip(row_axes, columns, strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            if name in images:
                ax.imshow(images[name][index])
            else:
                ax.set_axis_off()
        row_axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for ax, (name, index) in zip(axes[0], columns, strict=True):
        ax.set_title(f"{name}\n{Path(str(references[name]['names'][index])).name[:20]}", fontsize=8)
    figure.savefig(path, dpi=100)
    return True
