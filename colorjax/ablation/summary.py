"""A grid's report: results.csv (a row per cell, eval set and variant), results.md (a table
per eval set with its gray baseline and ground truth, and a side-by-side summary when there are
several sets) and the plots (``plots``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from colorjax.ablation import plots
from colorjax.ablation.grid import Cell
from colorjax.ablation.results import (
    CellResult,
    Row,
    best_rows,
    first_record,
    floats,
    load_results,
    number,
    set_rows,
)
from colorjax.ablation.status import FAILED, status_text
from colorjax.ablation.types import EvalPlan, EvalSet

TABLE_METRICS = (
    "psnr",
    "ssim",
    "ciede2000",
    "ab_hist_intersection",
    "colorfulness",
    "chroma_ratio",
    "tint",
    "blob",
)
# The summary's columns per set: (header, metric its ranking follows).
SUMMARY_COLUMNS = (
    ("Δpsnr ↑", "psnr"),
    ("colorfulness/gt ≈1", "colorfulness"),
    ("tint ↓", "tint"),
    ("blob ↓", "blob"),
)


def write_csv(results: Sequence[CellResult], plan: EvalPlan, path: Path) -> None:
    """A row per cell, eval set and variant: grid values, seed, set, variant, status, reason,
    step, image count and every metric (blank when not scored)."""
    from colorjax.evaluation import METRICS

    keys = list(results[0].cell.values) if results else []
    columns = ["cell", *keys, "seed", "set", "render_size", "temperature", "status", "reason"]
    columns += ["step", "images", *METRICS, "workdir"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for result in results:
            for eval_set, variant in plan.pairs(result.cell):
                record = result.record(eval_set, variant) or {}
                means = floats(record.get("mean", {}))
                writer.writerow(
                    {
                        "cell": result.cell.name,
                        **result.cell.values,
                        "seed": result.cell.seed,
                        "set": eval_set.name,
                        "render_size": variant.render_size or "",
                        "temperature": "" if variant.temperature is None else variant.temperature,
                        "status": result.status["status"],
                        "reason": result.status.get("reason", ""),
                        "step": result.status.get("step", ""),
                        "images": record.get("images", ""),
                        **{m: means.get(m, "") for m in METRICS},
                        "workdir": str(result.cell.workdir),
                    }
                )


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _label_headers(results: Sequence[CellResult], plan: EvalPlan) -> list[str]:
    """The columns naming a row: the grid keys, then the variant's settings that vary."""
    keys = list(results[0].cell.values) or ["configuration"]
    return keys + ["render"] * plan.shows_render_size + ["T"] * plan.shows_temperature


def _labels(row: Row, plan: EvalPlan) -> list[str]:
    labels = list(row.values.values()) or ["preset"]
    if plan.shows_render_size:
        labels.append(str(row.variant.render_size))
    if plan.shows_temperature:
        temperature = row.variant.temperature
        labels.append("n/a" if temperature is None else f"{temperature:g}")
    return labels


def set_table(results: Sequence[CellResult], eval_set: EvalSet, plan: EvalPlan) -> str:
    """Markdown for one eval set: a row per grid combination and variant (mean ± std over
    seeds, best in bold), then the set's gray baseline and ground truth."""
    from colorjax.evaluation import GOALS, goal_label

    reference = first_record(results, eval_set, plan)
    heading = f"## {eval_set.name}: {eval_set.describe()}"
    if reference is None:
        return f"{heading}\n\nNo cell is scored on this set yet."
    gray, truth = floats(reference["gray"]), floats(reference["ground_truth"])
    rows = set_rows(results, eval_set, plan)
    best = {m: best_rows(rows, truth, m) for m in TABLE_METRICS}
    headers = _label_headers(results, plan)
    lines = [
        _table_row([*headers, "seeds", *(f"{m} {goal_label(GOALS[m])}" for m in TABLE_METRICS)]),
        _table_row(["---"] * (len(headers) + 1) + ["---:"] * len(TABLE_METRICS)),
    ]
    for row in rows:
        stats = [_bold(row.text(m), row.key in best[m]) for m in TABLE_METRICS]
        lines.append(_table_row([*_labels(row, plan), f"{len(row.runs)}/{row.seeds}", *stats]))
    for label, means in (("gray baseline", gray), ("ground truth", truth)):
        values = [number(means[m]) if m in means else "" for m in TABLE_METRICS]
        lines.append(_table_row([label, *[""] * len(headers), *values]))
    return f"{heading} ({reference['images']} images)\n\n" + "\n".join(lines)


def _summary_values(row: Row, reference: dict | None, best: dict[str, set[str]]) -> list[str]:
    """Δpsnr, colorfulness over the truth's, tint and blob of ``row`` on one set."""
    if reference is None or not row.runs:
        return ["—"] * len(SUMMARY_COLUMNS)
    gray, truth = floats(reference["gray"]), floats(reference["ground_truth"])
    texts = [
        f"{row.mean('psnr') - gray['psnr']:+.3f}",
        number(row.mean("colorfulness") / truth["colorfulness"]),
        number(row.mean("tint")),
        number(row.mean("blob")),
    ]
    return [
        _bold(text, row.key in best[metric])
        for text, (_, metric) in zip(texts, SUMMARY_COLUMNS, strict=True)
    ]


def summary_table(results: Sequence[CellResult], plan: EvalPlan) -> str:
    """Markdown: a row per grid combination and variant, for each set its PSNR over the gray
    baseline's, colorfulness over the ground truth's, tint and blob (means over the scored
    seeds, best per set in bold)."""
    per_set = []
    for eval_set in plan.sets:
        reference = first_record(results, eval_set, plan)
        rows = set_rows(results, eval_set, plan)
        truth = floats(reference["ground_truth"]) if reference else {}
        best = {metric: best_rows(rows, truth, metric) for _, metric in SUMMARY_COLUMNS}
        per_set.append((rows, reference, best))
    headers = _label_headers(results, plan)
    columns = [f"{s.name} {title}" for s in plan.sets for title, _ in SUMMARY_COLUMNS]
    lines = [
        _table_row([*headers, *columns]),
        _table_row(["---"] * len(headers) + ["---:"] * len(columns)),
    ]
    for index, row in enumerate(per_set[0][0]):
        values = [
            text
            for rows, reference, best in per_set
            for text in _summary_values(rows[index], reference, best)
        ]
        lines.append(_table_row([*_labels(row, plan), *values]))
    return "\n".join(lines)


def _legend(plan: EvalPlan) -> str:
    lines = [
        "Each set is scored at each run's latest checkpoint at full resolution, photos whose "
        "ground truth is gray left out.",
        "Values: mean ± sample standard deviation over the scored seeds (seeds column: "
        "scored/total). Best row per column in **bold** (the gray baseline and the ground truth "
        "are references, not ranked): ↑ higher is better (psnr, ssim, ab_hist_intersection), "
        "↓ lower is better (ciede2000, tint, blob), ≈gt closest to the ground truth's value is "
        "better (colorfulness), ≈1 closest to 1 is better (chroma_ratio: predicted over true "
        "chroma). results.csv has every cell, set and variant and also colorfulness_diff "
        "(output minus ground truth), mean_a and mean_b.",
    ]
    if plan.shows_render_size:
        lines.append("render: the longest side ab is predicted at (then upsampled to the photo).")
    if plan.shows_temperature:
        lines.append(
            "T: annealed-mean temperature of the classification head; n/a: a regression head "
            "has none, so its cells are scored once per render size."
        )
    return "\n".join(lines)


def _cell_list(title: str, results: Sequence[CellResult], plan: EvalPlan) -> list[str]:
    if not results:
        return []
    lines = [f"## {title}", ""]
    for r in results:
        lines.append(f"- `{r.cell.name}`: {status_text(r.cell, r.status, plan.pairs(r.cell))}")
    return [*lines, ""]


def markdown_report(results: Sequence[CellResult], plan: EvalPlan, title: str) -> str:
    """results.md: the summary over the sets (several sets), a table per set with the legend,
    then failed and unfinished cells."""
    finished = [r for r in results if r.finished(plan)]
    failed = [r for r in results if r.status["status"] == FAILED]
    unfinished = [r for r in results if r not in finished and r not in failed]
    counts = f"{len(results)} cells: {len(finished)} finished, {len(failed)} failed, "
    counts += f"{len(unfinished)} not finished."
    lines = [f"# {title}", "", counts, ""]
    scored = [s for s in plan.sets if first_record(results, s, plan) is not None]
    if scored:
        if len(plan.sets) > 1:
            summary_note = (
                "Means over the scored seeds; Δpsnr: PSNR minus the set's gray baseline's, "
                "colorfulness/gt: over the set's ground truth's. Best per column in **bold**."
            )
            lines += ["## Summary", "", summary_table(results, plan), "", summary_note, ""]
        lines += [part for s in plan.sets for part in (set_table(results, s, plan), "")]
        lines += [_legend(plan), ""]
    lines += _cell_list("Failed cells", failed, plan)
    lines += _cell_list("Not finished", unfinished, plan)
    return "\n".join(lines)


def write_summary(
    cells: Sequence[Cell], out: Path, plan: EvalPlan, title: str = "Ablation"
) -> dict[str, Path]:
    """Write results.csv, results.md and the plots (those with data) to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(cells)
    paths = {"csv": out / "results.csv", "markdown": out / "results.md"}
    write_csv(results, plan, paths["csv"])
    paths["markdown"].write_text(markdown_report(results, plan, title))
    figures = {
        "loss_curves": lambda path: plots.plot_loss_curves(results, path),
        "metrics": lambda path: plots.plot_metrics(results, plan, path),
        "samples": lambda path: plots.plot_samples(results, plan, path),
    }
    for kind, plot in figures.items():
        if plot(out / f"{kind}.png"):
            paths[kind] = out / f"{kind}.png"
    return paths
