"""Each cell's bookkeeping in ``<workdir>/cell.json``.

``status`` (pending, running, finished, failed), ``reason``, the trained ``step`` and ``evals``:
one record per eval set and variant, ``evals[set name][variant key]``, holding the set's
description and the step it was scored at beside the scores. A record counts only for the set
it describes and the cell's current step, so a changed set (another ``--eval-limit``) or a
longer training is evaluated again. ``eval``, the single record of earlier versions, is not
read; it is dropped the next time the file is written.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from colorjax.ablation.grid import Cell
from colorjax.ablation.types import EvalSet, Variant

STATUS_FILE = "cell.json"
PENDING, RUNNING, FINISHED, FAILED = "pending", "running", "finished", "failed"
LEGACY_EVAL = "eval"  # one eval record per cell, as written before several sets and variants


def read_status(workdir: Path) -> dict[str, Any]:
    """The cell's ``cell.json``, or a pending status when it has none."""
    path = Path(workdir) / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {"status": PENDING}


def update_status(cell: Cell, status: str, reason: str = "", **fields: Any) -> dict[str, Any]:
    """Merge ``status``, ``reason`` and ``fields`` into the cell's ``cell.json`` (atomically)."""
    from colorjax.evaluation import json_ready

    record = {
        **read_status(cell.workdir),
        "name": cell.name,
        "values": cell.values,
        "seed": cell.seed,
        "steps": cell.config.train.steps,
        **fields,
        "status": status,
        "reason": reason,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    record.pop(LEGACY_EVAL, None)
    cell.workdir.mkdir(parents=True, exist_ok=True)
    temporary = cell.workdir / f"{STATUS_FILE}.tmp"
    temporary.write_text(json.dumps(json_ready(record), indent=2, allow_nan=False) + "\n")
    temporary.replace(cell.workdir / STATUS_FILE)
    return record


def is_trained(cell: Cell, status: Mapping[str, Any]) -> bool:
    """Training reached ``train.steps`` (whatever happened to its evaluations)."""
    return status.get("step", 0) >= cell.config.train.steps


def find_record(
    status: Mapping[str, Any], eval_set: EvalSet, variant: Variant
) -> dict[str, Any] | None:
    """The cell's record for ``eval_set`` at ``variant``, if it is of these images and of the
    cell's current step."""
    record = status.get("evals", {}).get(eval_set.name, {}).get(variant.key)
    if record is None or record["set"] != eval_set.as_dict():
        return None
    return record if record["step"] == status.get("step") else None


def missing_evaluations(
    status: Mapping[str, Any], pairs: Sequence[tuple[EvalSet, Variant]]
) -> list[tuple[EvalSet, Variant]]:
    """The (set, variant) ``pairs`` the cell has no current record of."""
    return [(s, v) for s, v in pairs if find_record(status, s, v) is None]


def is_finished(
    cell: Cell, status: Mapping[str, Any], pairs: Sequence[tuple[EvalSet, Variant]]
) -> bool:
    """Trained to ``train.steps`` and evaluated on every (set, variant) of ``pairs``."""
    return is_trained(cell, status) and not missing_evaluations(status, pairs)


def store_record(
    cell: Cell, eval_set: EvalSet, variant: Variant, scores: Mapping[str, Any]
) -> dict[str, Any]:
    """Add the ``scores`` of ``eval_set`` at ``variant`` to ``cell.json`` (the cell stays
    running until all its evaluations are done)."""
    status = read_status(cell.workdir)
    evals = status.get("evals", {})
    record = {"set": eval_set.as_dict(), "variant": variant.as_dict(), "step": status["step"]}
    evals.setdefault(eval_set.name, {})[variant.key] = {**record, **scores}
    return update_status(cell, RUNNING, evals=evals)


def status_text(
    cell: Cell, status: Mapping[str, Any], pairs: Sequence[tuple[EvalSet, Variant]]
) -> str:
    """The cell's state in words: status, step, evaluations still missing of ``pairs`` once
    trained, reason (e.g. ``finished at step 2000/2000, 2 of 4 evaluations to do``)."""
    text = status["status"]
    if "step" in status:
        text += f" at step {status['step']}/{cell.config.train.steps}"
    missing = len(missing_evaluations(status, pairs))
    if is_trained(cell, status) and missing:
        text += f", {missing} of {len(pairs)} evaluations to do"
    if status.get("reason"):
        text += f" ({status['reason']})"
    return text


def describe_cells(
    cells: Sequence[Cell], pairs_of: Callable[[Cell], Sequence[tuple[EvalSet, Variant]]]
) -> str:
    """One line per cell: its workdir and ``status_text`` (evaluations of ``pairs_of``)."""
    return "\n".join(
        f"{cell.workdir}  [{status_text(cell, read_status(cell.workdir), pairs_of(cell))}]"
        for cell in cells
    )


def say(text: str) -> None:
    """A progress line on stderr."""
    print(text, file=sys.stderr, flush=True)
