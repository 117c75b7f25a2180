"""Running a grid: the trainers (in this process or one subprocess per cell) and the loop that
trains each cell that needs it and evaluates what it is missing, recording both in its
``cell.json`` (``status``)."""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from colorjax.ablation.grid import Cell
from colorjax.ablation.status import (
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    is_finished,
    is_trained,
    missing_evaluations,
    read_status,
    say,
    store_record,
    update_status,
)
from colorjax.ablation.types import EvalSet, Variant

TRAIN_LOG = "train.log"
ERROR_LOG = "error.log"
INTERRUPTED_EXIT = 130  # experiments.train's exit status after SIGINT/SIGTERM


class TrainOutcome(NamedTuple):
    step: int
    interrupted: bool


Trainer = Callable[[Cell], TrainOutcome]


class CellFailed(RuntimeError):
    """A cell's training subprocess failed; the message is its error line."""


def train_in_process(cell: Cell) -> TrainOutcome:
    """``train_and_evaluate`` in this process (resumes from the workdir's latest checkpoint)."""
    from colorjax.training.loop import train_and_evaluate

    summary = train_and_evaluate(cell.config, cell.workdir)
    return TrainOutcome(summary["step"], summary["interrupted"])


@contextlib.contextmanager
def _forward_stop_signals(process: subprocess.Popen) -> Iterator[None]:
    """Pass SIGINT/SIGTERM on to ``process`` (which saves and exits) instead of dying."""

    def forward(signum, _frame):
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_logged(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Run ``command``, echoing its output to stderr and appending it to ``log``; its exit code."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log, "ab") as sink,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        ) as process,
        _forward_stop_signals(process),
    ):
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            sink.write(chunk)
            sys.stderr.write(decoder.decode(chunk))
            sys.stderr.flush()
    return process.returncode


def failure_reason(log: Path) -> str:
    """The last ``error:`` line of a training log, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


@dataclasses.dataclass
class SubprocessTrainer:
    """Train each cell in a fresh process, e.g. ``python -m experiments.train ... --workdir``;
    its output goes to the console and to ``<workdir>/train.log``."""

    command: Callable[[Cell], list[str]]
    env: Mapping[str, str] | None = None

    def __call__(self, cell: Cell) -> TrainOutcome:
        from colorjax.training.checkpoint import Checkpoints

        log = cell.workdir / TRAIN_LOG
        code = run_logged(self.command(cell), log, self.env)
        if code not in (0, INTERRUPTED_EXIT):
            raise CellFailed(failure_reason(log) or f"exit status {code}")
        checkpoints = Checkpoints(cell.workdir / "checkpoints", cell.config.ckpt)
        try:
            step = checkpoints.latest_step() or 0
        finally:
            checkpoints.close()
        return TrainOutcome(step, code == INTERRUPTED_EXIT)


class Evaluator(Protocol):
    """Scores a trained cell: ``pairs(cell)`` are all its (set, variant) evaluations, and
    calling it with some of them yields (set, variant, scores) as each is done
    (``scoring.CellEvaluator``)."""

    def pairs(self, cell: Cell) -> list[tuple[EvalSet, Variant]]: ...

    def __call__(
        self, cell: Cell, todo: Sequence[tuple[EvalSet, Variant]]
    ) -> Iterable[tuple[EvalSet, Variant, Mapping[str, Any]]]: ...


def _record_failure(cell: Cell, stage: str, err: Exception) -> None:
    kind = "" if isinstance(err, CellFailed) else f"{type(err).__name__}: "
    reason = f"{stage}: {kind}{err}".splitlines()[0]
    (cell.workdir / ERROR_LOG).write_text("".join(traceback.format_exception(err)))
    update_status(cell, FAILED, reason)
    say(f"cell {cell.name} failed: {reason}")


def run_cell(cell: Cell, trainer: Trainer, evaluator: Evaluator) -> bool:
    """Train ``cell`` to ``train.steps`` (unless it is there) and evaluate what it is missing,
    each result saved as it comes; failures are recorded in its status. False when the
    training was interrupted by a signal."""
    status = read_status(cell.workdir)
    if not is_trained(cell, status):
        update_status(cell, RUNNING)
        try:
            outcome = trainer(cell)
        except Exception as err:
            _record_failure(cell, "training", err)
            return True
        if outcome.interrupted:
            update_status(cell, PENDING, f"interrupted at step {outcome.step}", step=outcome.step)
            return False
        status = update_status(cell, RUNNING, step=outcome.step, evals={})
    todo = missing_evaluations(status, evaluator.pairs(cell))
    try:
        for eval_set, variant, scores in evaluator(cell, todo):
            store_record(cell, eval_set, variant, scores)
    except Exception as err:
        _record_failure(cell, "evaluation", err)
        return True
    update_status(cell, FINISHED)
    return True


def cells_to_run(
    cells: Sequence[Cell], evaluator: Evaluator, retry_failed: bool = False
) -> list[Cell]:
    """The cells that are not trained or miss an evaluation of ``evaluator`` (failed cells
    only with ``retry_failed``)."""
    todo = []
    for cell in cells:
        status = read_status(cell.workdir)
        skip_failed = status["status"] == FAILED and not retry_failed
        if not (is_finished(cell, status, evaluator.pairs(cell)) or skip_failed):
            todo.append(cell)
    return todo


def run_grid(
    cells: Sequence[Cell],
    trainer: Trainer,
    evaluator: Evaluator,
    *,
    retry_failed: bool = False,
    on_cell_done: Callable[[], None] | None = None,
) -> bool:
    """Run the ``cells_to_run`` in order, calling ``on_cell_done`` after each; a failing cell
    does not stop the others. False when a signal interrupted the grid."""
    todo = cells_to_run(cells, evaluator, retry_failed)
    for index, cell in enumerate(todo, 1):
        say(f"[{index}/{len(todo)}] {cell.name}")
        try:
            if not run_cell(cell, trainer, evaluator):
                return False
        except KeyboardInterrupt:
            update_status(cell, PENDING, "interrupted")
            return False
        if on_cell_done is not None:
            on_cell_done()
    return True
