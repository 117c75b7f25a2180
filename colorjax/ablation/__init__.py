"""Ablations: a grid of config values times seeds, each cell a training run in its own workdir,
scored on several eval sets at evaluation-time variants without retraining.

    grid = [parse_grid("model.norm=batch,group"), parse_grid("disc.norm=batch,spectral")]
    cells = expand_grid(config, grid, seeds=[0, 1], out=Path("runs/ablate"))
    sets = [eval_set("folder:/data/CBSD68", ALL, config), eval_set("folder:/data/x", EVAL, config)]
    plan = EvalPlan(tuple(sets), variants(render_sizes=[128, 256]))
    run_grid(cells, train_in_process, CellEvaluator(plan))
    write_summary(cells, Path("runs/ablate"), plan)

One module per job: ``grid`` (cells, names, checks), ``status`` (each cell's ``cell.json``,
progress lines),
``running`` (trainers, the grid loop), ``scoring`` (eval sets, variants, the evaluator),
``results`` (records arranged per set), ``summary`` (CSV, markdown) and ``plots``; ``types``
holds what they share (eval sets, variants, the plan). Re-running a
grid trains only cells that have not reached ``train.steps`` and scores only the (set, variant)
pairs a cell has no current record of.
"""

from colorjax.ablation.grid import (
    RESUMABLE_KEYS,
    Cell,
    cell_name,
    check_trained_settings,
    expand_grid,
    format_value,
    parse_grid,
    safe_component,
    validate_cells,
)
from colorjax.ablation.plots import read_losses, smooth
from colorjax.ablation.results import CellResult, load_results
from colorjax.ablation.running import (
    ERROR_LOG,
    INTERRUPTED_EXIT,
    TRAIN_LOG,
    CellFailed,
    SubprocessTrainer,
    TrainOutcome,
    cells_to_run,
    run_cell,
    run_grid,
    train_in_process,
)
from colorjax.ablation.scoring import (
    CellEvaluator,
    check_held_out_sets,
    eval_set,
    samples_path,
    training_eval_set,
)
from colorjax.ablation.status import (
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    STATUS_FILE,
    describe_cells,
    find_record,
    is_finished,
    is_trained,
    read_status,
    update_status,
)
from colorjax.ablation.summary import markdown_report, write_csv, write_summary
from colorjax.ablation.types import ALL, EVAL, EvalPlan, EvalSet, Variant, variants

__all__ = [
    "ALL",
    "ERROR_LOG",
    "EVAL",
    "FAILED",
    "FINISHED",
    "INTERRUPTED_EXIT",
    "PENDING",
    "RESUMABLE_KEYS",
    "RUNNING",
    "STATUS_FILE",
    "TRAIN_LOG",
    "Cell",
    "CellEvaluator",
    "CellFailed",
    "CellResult",
    "EvalPlan",
    "EvalSet",
    "SubprocessTrainer",
    "TrainOutcome",
    "Variant",
    "cell_name",
    "cells_to_run",
    "check_held_out_sets",
    "check_trained_settings",
    "describe_cells",
    "eval_set",
    "expand_grid",
    "find_record",
    "format_value",
    "is_finished",
    "is_trained",
    "load_results",
    "markdown_report",
    "parse_grid",
    "read_losses",
    "read_status",
    "run_cell",
    "run_grid",
    "safe_component",
    "samples_path",
    "smooth",
    "train_in_process",
    "training_eval_set",
    "update_status",
    "validate_cells",
    "variants",
    "write_csv",
    "write_summary",
]
