"""The recorded results of a grid, arranged for reports: per eval set, a row per grid
combination and variant with the scores of its finished seeds."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from colorjax.ablation.grid import Cell
from colorjax.ablation.status import find_record, is_finished, read_status
from colorjax.ablation.types import EvalPlan, EvalSet, Variant


@dataclasses.dataclass
class CellResult:
    """A cell with its recorded status."""

    cell: Cell
    status: dict[str, Any]

    def record(self, eval_set: EvalSet, variant: Variant) -> dict[str, Any] | None:
        """The current record of ``eval_set`` at ``variant``, if any."""
        return find_record(self.status, eval_set, variant)

    def finished(self, plan: EvalPlan) -> bool:
        """Trained and scored on all of ``plan``."""
        return is_finished(self.cell, self.status, plan.pairs(self.cell))


def load_results(cells: Sequence[Cell]) -> list[CellResult]:
    """Each cell's result, grouped by grid combination (in grid order), then by seed."""
    combos = list(dict.fromkeys(cell.combo for cell in cells))
    ordered = sorted(cells, key=lambda cell: (combos.index(cell.combo), cell.seed))
    return [CellResult(cell, read_status(cell.workdir)) for cell in ordered]


def floats(part: Mapping[str, Any]) -> dict[str, float]:
    """A record's metrics as floats (JSON keeps non-finite values as text)."""
    return {key: float(value) for key, value in part.items()}


def number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else str(value)


@dataclasses.dataclass
class Row:
    """One grid combination at one variant on one eval set: the means of its finished seeds."""

    combo: str
    values: dict[str, str]
    variant: Variant
    seeds: int  # cells of the combination, scored or not
    runs: list[dict[str, float]]  # mean metrics of each scored seed

    @property
    def key(self) -> str:
        """Identifies the row among those of a set."""
        return f"{self.combo} | {self.variant.key}"

    def mean(self, metric: str) -> float:
        return float(np.mean([run[metric] for run in self.runs]))

    def std(self, metric: str) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        values = [run[metric] for run in self.runs]
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def text(self, metric: str) -> str:
        """``mean ± std`` (just the mean for one seed, a dash for none)."""
        if not self.runs:
            return "—"
        spread = f" ± {number(self.std(metric))}" if len(self.runs) > 1 else ""
        return number(self.mean(metric)) + spread


def set_rows(results: Sequence[CellResult], eval_set: EvalSet, plan: EvalPlan) -> list[Row]:
    """A row per grid combination (in grid order) and each of its variants, on ``eval_set``."""
    combos: dict[str, list[CellResult]] = {}
    for result in results:
        combos.setdefault(result.cell.combo, []).append(result)
    rows = []
    for combo, members in combos.items():
        for variant in plan.variants_for(members[0].cell):
            records = [r.record(eval_set, variant) for r in members]
            runs = [floats(record["mean"]) for record in records if record is not None]
            rows.append(Row(combo, members[0].cell.values, variant, len(members), runs))
    return rows


def first_record(
    results: Sequence[CellResult], eval_set: EvalSet, plan: EvalPlan
) -> dict[str, Any] | None:
    """Any current record of ``eval_set`` (they share its gray baseline and ground truth)."""
    for result in results:
        for variant in plan.variants_for(result.cell):
            record = result.record(eval_set, variant)
            if record is not None:
                return record
    return None


def best_rows(rows: Sequence[Row], truth: Mapping[str, float], metric: str) -> set[str]:
    """Keys of the rows whose mean ``metric`` is best by ``evaluation.GOALS`` (none when all
    tie, as a single row does)."""
    from colorjax.evaluation import GROUND_TRUTH, best_methods

    means = {row.key: {metric: row.mean(metric)} for row in rows if row.runs}
    best = best_methods({"mean": means, GROUND_TRUTH: truth}, metric)
    return best if len(best) < len(means) else set()
