"""Ablations: a grid of config values times seeds, each cell a training run in its own workdir.

    grid = [parse_grid("model.norm=batch,group"), parse_grid("disc.norm=batch,spectral")]
    cells = expand_grid(config, grid, seeds=[0, 1], out=Path("runs/ablate"))
    run_grid(cells, train_in_process, CellEvaluator(EvalSpec.from_config(config)))
    write_report(cells, Path("runs/ablate"))

Every cell keeps its state in ``<workdir>/cell.json``: ``status`` (pending, running, finished,
failed), ``reason``, the trained ``step`` and, once finished, its ``eval`` results. A cell is
finished when it reached ``train.steps`` and was evaluated on the current eval images, so
re-running a grid skips finished cells, resumes interrupted ones and runs only new ones.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps

from colorjax.config import Config, ConfigError, differing_keys, load_json, set_key

STATUS_FILE = "cell.json"
SAMPLES_FILE = "eval_samples.npz"
TRAIN_LOG = "train.log"
ERROR_LOG = "error.log"
PENDING, RUNNING, FINISHED, FAILED = "pending", "running", "finished", "failed"
INTERRUPTED_EXIT = 130  # experiments.train's exit status after SIGINT/SIGTERM
# Settings a cell may change between invocations without invalidating the ablation.
RESUMABLE_KEYS = ("train.steps", "log.", "ckpt.", "parallel.", "data.data_dir", "model.conv_impl")
MAX_NAME = 200  # characters of a cell's directory name
SAMPLE_IMAGES = 4  # eval images shown per cell in samples.png
THUMBNAIL = 128  # pixels, square
SMOOTHING = 0.9  # exponential moving average of the loss curves (TensorBoard style)
FEW_POINTS = 30  # loss curves with fewer logged steps show markers
LOSS_PANELS = (
    ("g_adv", "G adversarial"),
    ("g_l1", "L1"),
    ("d_real", "D real"),
    ("d_fake", "D fake"),
)
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
PLOT_METRICS = ("psnr", "ssim", "colorfulness", "ciede2000")
LINESTYLES = ("-", "--", ":", "-.")


# ----------------------------------------------------------------------------- the grid


@dataclasses.dataclass
class Cell:
    """One training run of the grid: its grid values, seed, full config and workdir."""

    values: dict[str, str]  # grid key -> canonical value text, in grid order
    seed: int
    config: Config
    workdir: Path

    @property
    def name(self) -> str:
        return self.workdir.name

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` strings that turn the base config into this cell's."""
        return [*(f"{k}={v}" for k, v in self.values.items()), f"train.seed={self.seed}"]

    @property
    def combo(self) -> str:
        """The grid values without the seed, e.g. ``group / spectral``."""
        return " / ".join(self.values.values()) or "preset"


def parse_grid(spec: str) -> tuple[str, list[str]]:
    """``key=v1,v2`` -> (key, [v1, v2]); with a ``|`` in the list, values split on ``|``
    instead, so a value may hold commas (``train.diffaug=|translation,cutout``)."""
    key, sep, text = spec.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"grid {spec!r} is not of the form key=value1,value2")
    separator = "|" if "|" in text else ","
    return key.strip(), [value.strip() for value in text.split(separator)]


def format_value(value: Any) -> str:
    """Canonical text of a parsed config value (``1e-4`` and ``0.0001`` give the same)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def safe_component(text: str) -> str:
    """``text`` as a file-name part: other characters than ``A-Za-z0-9._=+-`` become ``-``,
    and a changed text gets a short hash of the original, so distinct values stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "-", text)
    return safe if safe == text else f"{safe}-{_digest(text)}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def cell_name(values: Mapping[str, str], seed: int) -> str:
    """Readable, stable directory name, e.g. ``model.norm=group__disc.norm=spectral__seed=1``
    (longer than ``MAX_NAME``: shortened, with a hash of the whole)."""
    parts = [*(f"{k}={v}" for k, v in values.items()), f"seed={seed}"]
    name = "__".join(safe_component(part) for part in parts)
    return name if len(name) <= MAX_NAME else f"{name[: MAX_NAME - 9]}-{_digest(name)}"


def _value(config: Config, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), config)


def _parsed_values(base: Config, key: str, texts: Sequence[str]) -> list[str]:
    """Canonical values of one grid axis; unknown keys, bad values and repeats are errors."""
    if key == "train.seed":
        raise ConfigError("train.seed is set per cell by --seeds; do not put it in a grid")
    values = [format_value(_value(set_key(base, key, text), key)) for text in texts]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"grid {key} repeats the value(s) {', '.join(repeated)}")
    return values


def expand_grid(
    base: Config, grid: Sequence[tuple[str, Sequence[str]]], seeds: Sequence[int], out: Path
) -> list[Cell]:
    """The Cartesian product of ``grid`` for each seed (seed-major: a whole comparison per
    seed), each cell ``base`` with its values and ``train.seed``, its workdir under ``out``."""
    keys = [key for key, _ in grid]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"grid key(s) given more than once: {', '.join(repeated)}")
    axes = [[(key, v) for v in _parsed_values(base, key, texts)] for key, texts in grid]
    cells = []
    for seed in seeds:
        for combo in itertools.product(*axes):
            values = dict(combo)
            config = set_key(base, "train.seed", seed)
            for key, text in values.items():
                config = set_key(config, key, text)
            cells.append(Cell(values, seed, config, Path(out) / cell_name(values, seed)))
    return cells


def validate_cells(cells: Sequence[Cell]) -> None:
    """Build each grid combination's networks abstractly, so a bad value (``model.norm=grop``)
    is a ConfigError now rather than a failure hours into the grid."""
    import jax

    from colorjax import steps

    for cell in {cell.combo: cell for cell in cells}.values():
        try:
            gan = steps.build_gan(cell.config)
            size = cell.config.data.image_size
            jax.eval_shape(
                lambda key, gan=gan, size=size: steps.init_state(gan, key, size),
                jax.random.PRNGKey(0),
            )
        except ValueError as err:
            raise ConfigError(f"{', '.join(cell.overrides[:-1])}: {err}") from None


def check_trained_settings(cells: Sequence[Cell]) -> None:
    """Refuse cells whose workdir was trained with other settings than the grid now gives
    (beyond ``RESUMABLE_KEYS``): an ablation directory holds one base configuration."""
    for cell in cells:
        path = cell.workdir / "config.json"
        if not path.is_file():
            continue
        changed = [
            k
            for k in differing_keys(load_json(path), cell.config)
            if not k.startswith(RESUMABLE_KEYS)
        ]
        if changed:
            raise ConfigError(
                f"{cell.workdir} was trained with other settings ({', '.join(changed)}); "
                "use another --out or the original --set values"
            )


# ----------------------------------------------------------------------------- cell state


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
    cell.workdir.mkdir(parents=True, exist_ok=True)
    temporary = cell.workdir / f"{STATUS_FILE}.tmp"
    temporary.write_text(json.dumps(json_ready(record), indent=2, allow_nan=False) + "\n")
    temporary.replace(cell.workdir / STATUS_FILE)
    return record


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """The images every cell is scored on: the training source's own held-out split, or all
    test images of another source (``evaluation.eval_images``)."""

    source: str
    held_out: bool  # True: the training source's eval split (data.eval_fraction)
    eval_fraction: float
    data_dir: str | None = None
    limit: int | None = None

    @classmethod
    def from_config(cls, config: Config, source: str | None = None, limit: int | None = None):
        """The run's held-out split, or ``source`` (e.g. ``folder:CBSD68``) when given."""
        return cls(
            source or config.data.source,
            held_out=source is None,
            eval_fraction=config.data.eval_fraction,
            data_dir=config.data.data_dir or None,
            limit=limit,
        )

    def load(self) -> list[tuple[str, np.ndarray]]:
        """(name, uint8 RGB) of the eval images."""
        from colorjax import data, evaluation

        load = data.eval_split_images if self.held_out else evaluation.eval_images
        images = load(
            self.source, eval_fraction=self.eval_fraction, data_dir=self.data_dir, limit=self.limit
        )
        if not images:
            raise ValueError(f"{self.describe()} has no images")
        return images

    def describe(self) -> str:
        split = "held-out split of" if self.held_out else "test images of"
        limit = f", first {self.limit}" if self.limit else ""
        return f"{split} `{self.source}`{limit}"


def is_finished(cell: Cell, status: Mapping[str, Any], spec: EvalSpec) -> bool:
    """Trained to ``train.steps`` and evaluated on ``spec``'s images."""
    return (
        status.get("status") == FINISHED
        and status.get("step", 0) >= cell.config.train.steps
        and status.get("eval", {}).get("spec") == dataclasses.asdict(spec)
    )


# ----------------------------------------------------------------------------- running


class TrainOutcome(NamedTuple):
    step: int
    interrupted: bool


Trainer = Callable[[Cell], TrainOutcome]


class CellFailed(RuntimeError):
    """A cell's training subprocess failed; the message is its error line."""


def train_in_process(cell: Cell) -> TrainOutcome:
    """``train_and_evaluate`` in this process (resumes from the workdir's latest checkpoint)."""
    from colorjax.train import train_and_evaluate

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
        from colorjax.checkpoint import Checkpoints

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


def thumbnails(images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [N, THUMBNAIL, THUMBNAIL, 3]: the central square of each image, resized."""
    size = (THUMBNAIL, THUMBNAIL)
    return np.stack(
        [
            np.asarray(ImageOps.fit(Image.fromarray(im), size, Image.Resampling.LANCZOS))
            for im in images
        ]
    )


class CellEvaluator:
    """Scores a trained cell (latest checkpoint) on ``spec``'s images with ``evaluation``;
    the images are loaded once, when the first cell needs them."""

    def __init__(self, spec: EvalSpec):
        self.spec = spec

    @functools.cached_property
    def images(self) -> list[tuple[str, np.ndarray]]:
        return self.spec.load()

    def __call__(self, cell: Cell) -> dict[str, Any]:
        """The eval record of ``cell``; also saves its sample thumbnails."""
        from colorjax import evaluation, inference

        colorizer = inference.load_workdir(cell.workdir)
        outputs = evaluation.colorize_all({cell.name: colorizer}, self.images)
        results = evaluation.score(outputs, self.images)
        shown = slice(0, SAMPLE_IMAGES)
        np.savez_compressed(
            cell.workdir / SAMPLES_FILE,
            names=np.array([name for name, _ in self.images[shown]]),
            gray=thumbnails(outputs[evaluation.GRAY][shown]),
            prediction=thumbnails(outputs[cell.name][shown]),
            truth=thumbnails([rgb for _, rgb in self.images[shown]]),
        )
        return {
            "spec": dataclasses.asdict(self.spec),
            "images": len(self.images),
            "mean": results["mean"][cell.name],
            "gray": results["mean"][evaluation.GRAY],
            "ground_truth": results[evaluation.GROUND_TRUTH],
        }


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _record_failure(cell: Cell, stage: str, err: Exception) -> None:
    kind = "" if isinstance(err, CellFailed) else f"{type(err).__name__}: "
    reason = f"{stage}: {kind}{err}".splitlines()[0]
    (cell.workdir / ERROR_LOG).write_text("".join(traceback.format_exception(err)))
    update_status(cell, FAILED, reason)
    _say(f"cell {cell.name} failed: {reason}")


def run_cell(cell: Cell, trainer: Trainer, evaluator: CellEvaluator) -> bool:
    """Train ``cell`` to ``train.steps`` (unless it is there) and evaluate it; failures are
    recorded in its status. False when the training was interrupted by a signal."""
    if read_status(cell.workdir).get("step", 0) < cell.config.train.steps:
        update_status(cell, RUNNING)
        try:
            outcome = trainer(cell)
        except Exception as err:
            _record_failure(cell, "training", err)
            return True
        if outcome.interrupted:
            update_status(cell, PENDING, f"interrupted at step {outcome.step}", step=outcome.step)
            return False
        update_status(cell, RUNNING, step=outcome.step)
    try:
        evaluation = evaluator(cell)
    except Exception as err:
        _record_failure(cell, "evaluation", err)
        return True
    update_status(cell, FINISHED, eval=evaluation)
    return True


def cells_to_run(cells: Sequence[Cell], spec: EvalSpec, retry_failed: bool = False) -> list[Cell]:
    """The cells that are not finished on ``spec`` (nor failed, unless ``retry_failed``)."""
    todo = []
    for cell in cells:
        status = read_status(cell.workdir)
        skip_failed = status["status"] == FAILED and not retry_failed
        if not (is_finished(cell, status, spec) or skip_failed):
            todo.append(cell)
    return todo


def run_grid(
    cells: Sequence[Cell],
    trainer: Trainer,
    evaluator: CellEvaluator,
    *,
    retry_failed: bool = False,
    on_cell_done: Callable[[], None] | None = None,
) -> bool:
    """Run the ``cells_to_run`` in order, calling ``on_cell_done`` after each; a failing cell
    does not stop the others. False when a signal interrupted the grid."""
    todo = cells_to_run(cells, evaluator.spec, retry_failed)
    for index, cell in enumerate(todo, 1):
        _say(f"[{index}/{len(todo)}] {cell.name}")
        try:
            if not run_cell(cell, trainer, evaluator):
                return False
        except KeyboardInterrupt:
            update_status(cell, PENDING, "interrupted")
            return False
        if on_cell_done is not None:
            on_cell_done()
    return True


def describe_cells(cells: Sequence[Cell]) -> str:
    """One line per cell: its workdir and status (with step and reason when known)."""
    lines = []
    for cell in cells:
        status = read_status(cell.workdir)
        state = status["status"]
        if "step" in status:
            state += f" at step {status['step']}/{cell.config.train.steps}"
        if status.get("reason"):
            state += f" ({status['reason']})"
        lines.append(f"{cell.workdir}  [{state}]")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass
class CellResult:
    """A cell with its recorded status and, when finished, its mean metrics."""

    cell: Cell
    status: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status["status"] == FINISHED and "eval" in self.status

    def metrics(self, part: str = "mean") -> dict[str, float]:
        """Floats of the eval record's ``part`` (mean, gray or ground_truth)."""
        return {k: float(v) for k, v in self.status["eval"][part].items()}


def load_results(cells: Sequence[Cell]) -> list[CellResult]:
    """Each cell's result, grouped by grid combination (in grid order), then by seed."""
    combos = list(dict.fromkeys(cell.combo for cell in cells))
    ordered = sorted(cells, key=lambda cell: (combos.index(cell.combo), cell.seed))
    return [CellResult(cell, read_status(cell.workdir)) for cell in ordered]


def write_csv(results: Sequence[CellResult], path: Path) -> None:
    """One row per cell: grid values, seed, status, reason, step and every metric."""
    from colorjax.evaluation import METRICS

    keys = list(results[0].cell.values) if results else []
    columns = ["cell", *keys, "seed", "status", "reason", "step", *METRICS, "workdir"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for result in results:
            means = result.metrics() if result.finished else {}
            writer.writerow(
                {
                    "cell": result.cell.name,
                    **result.cell.values,
                    "seed": result.cell.seed,
                    "status": result.status["status"],
                    "reason": result.status.get("reason", ""),
                    "step": result.status.get("step", ""),
                    **{m: means.get(m, "") for m in METRICS},
                    "workdir": str(result.cell.workdir),
                }
            )


@dataclasses.dataclass
class ComboSummary:
    """The finished seeds of one grid combination."""

    combo: str
    values: dict[str, str]
    seeds: int  # cells of the combination, finished or not
    runs: list[dict[str, float]]  # mean metrics of each finished seed

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
        spread = f" ± {_number(self.std(metric))}" if len(self.runs) > 1 else ""
        return _number(self.mean(metric)) + spread


def summarize(results: Sequence[CellResult]) -> list[ComboSummary]:
    """Group cells by grid combination, in grid order."""
    combos: dict[str, ComboSummary] = {}
    for result in results:
        cell = result.cell
        summary = combos.setdefault(cell.combo, ComboSummary(cell.combo, cell.values, 0, []))
        summary.seeds += 1
        if result.finished:
            summary.runs.append(result.metrics())
    return list(combos.values())


def best_combos(summaries: Sequence[ComboSummary], truth: dict[str, float], metric: str) -> set:
    """Combinations whose mean ``metric`` is best by ``evaluation.GOALS`` (none when all tie,
    as a single combination does)."""
    from colorjax.evaluation import GROUND_TRUTH, best_methods

    means = {s.combo: {metric: s.mean(metric)} for s in summaries if s.runs}
    best = best_methods({"mean": means, GROUND_TRUTH: truth}, metric)
    return best if len(best) < len(means) else set()


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else str(value)


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def results_table(results: Sequence[CellResult]) -> str:
    """Markdown: one row per grid combination (mean ± std over seeds, best in bold), then the
    gray baseline and the ground truth."""
    from colorjax.evaluation import GOALS, goal_label

    finished = [r for r in results if r.finished]
    summaries = summarize(results)
    gray, truth = finished[0].metrics("gray"), finished[0].metrics("ground_truth")
    keys = list(results[0].cell.values) or ["configuration"]
    best = {m: best_combos(summaries, truth, m) for m in TABLE_METRICS}
    lines = [
        _table_row([*keys, "seeds", *(f"{m} {goal_label(GOALS[m])}" for m in TABLE_METRICS)]),
        _table_row(["---"] * (len(keys) + 1) + ["---:"] * len(TABLE_METRICS)),
    ]
    for s in summaries:
        stats = [_bold(s.text(m), s.combo in best[m]) for m in TABLE_METRICS]
        labels = list(s.values.values()) or ["preset"]
        lines.append(_table_row([*labels, f"{len(s.runs)}/{s.seeds}", *stats]))
    for label, means in (("gray baseline", gray), ("ground truth", truth)):
        values = [_number(means[m]) if m in means else "" for m in TABLE_METRICS]
        lines.append(_table_row([label, *[""] * len(keys), *values]))
    return "\n".join(lines)


def _legend(finished: Sequence[CellResult]) -> str:
    spec = finished[0].status["eval"]
    specs = {json.dumps(r.status["eval"]["spec"], sort_keys=True) for r in finished}
    mixed = "" if len(specs) == 1 else " **Warning: the cells were evaluated on different images.**"
    return (
        f"Evaluated at each run's latest checkpoint on {spec['images']} images "
        f"({EvalSpec(**spec['spec']).describe()}) at full resolution.{mixed}\n"
        "Values: mean ± sample standard deviation over the finished seeds (seeds column: "
        "finished/total). Best grid combination per column in **bold** (the gray baseline and "
        "the ground truth are references, not ranked): ↑ higher is better (psnr, ssim, "
        "ab_hist_intersection), ↓ lower is better (ciede2000, tint, blob), ≈gt closest to the "
        "ground truth's value is better (colorfulness), ≈1 closest to 1 is better (chroma_ratio: "
        "predicted over true chroma). results.csv has every cell and also colorfulness_diff "
        "(output minus ground truth), mean_a and mean_b."
    )


def _cell_list(title: str, results: Sequence[CellResult]) -> list[str]:
    if not results:
        return []
    lines = [f"## {title}", ""]
    for r in results:
        reason = r.status.get("reason")
        lines.append(
            f"- `{r.cell.name}`: {r.status['status']}" + (f" — {reason}" if reason else "")
        )
    return [*lines, ""]


def markdown_report(results: Sequence[CellResult], title: str) -> str:
    """results.md: the table with its legend, then failed and unfinished cells."""
    finished = [r for r in results if r.finished]
    failed = [r for r in results if r.status["status"] == FAILED]
    unfinished = [r for r in results if not r.finished and r not in failed]
    counts = f"{len(results)} cells: {len(finished)} finished, {len(failed)} failed, "
    counts += f"{len(unfinished)} not finished."
    lines = [f"# {title}", "", counts, ""]
    if finished:
        lines += [results_table(results), "", _legend(finished), ""]
    lines += _cell_list("Failed cells", failed) + _cell_list("Not finished", unfinished)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


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


def plot_metrics(results: Sequence[CellResult], path: Path) -> bool:
    """metrics.png: a bar per grid combination (mean over seeds, each seed a dot, the std as
    error bar) for ``PLOT_METRICS``, the gray baseline (and ground truth) as lines; False if
    no cell is finished."""
    from colorjax.evaluation import GOALS, goal_label

    finished = [r for r in results if r.finished]
    if not finished:
        return False
    summaries = [s for s in summarize(results) if s.runs]
    gray, truth = finished[0].metrics("gray"), finished[0].metrics("ground_truth")
    figure = _figure(max(8, 1.6 * len(summaries) + 4), 7)
    positions = np.arange(len(summaries))
    for ax, metric in zip(figure.subplots(2, 2).ravel(), PLOT_METRICS, strict=True):
        means = [s.mean(metric) for s in summaries]
        ax.bar(
            positions,
            means,
            yerr=[s.std(metric) for s in summaries],
            capsize=4,
            color="#9ecae1",
            edgecolor="#3182bd",
        )
        for x, s in zip(positions, summaries, strict=True):
            ax.plot([x] * len(s.runs), [run[metric] for run in s.runs], "k.", markersize=6)
        ax.axhline(gray[metric], color="0.4", linestyle="--", label="gray baseline")
        if metric in truth:
            ax.axhline(truth[metric], color="tab:green", linestyle=":", label="ground truth")
        ax.set_title(f"{metric} {goal_label(GOALS[metric])}")
        ax.set_xticks(positions, [s.combo for s in summaries], rotation=20, ha="right", fontsize=8)
        values = [*means, gray[metric], *(run[metric] for s in summaries for run in s.runs)]
        values += [truth[metric]] if metric in truth else []
        spread = (max(values) - min(values)) or 1.0
        ax.set_ylim(min(values) - 0.3 * spread, max(values) + 0.3 * spread)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    keys = " / ".join(finished[0].cell.values) or "preset"
    figure.suptitle(f"{keys}: mean over seeds (dots: seeds, bars: ±std)")
    figure.savefig(path, dpi=100)
    return True


def plot_samples(results: Sequence[CellResult], path: Path) -> bool:
    """samples.png: a row per finished cell on the same eval images, gray first and the
    ground truth last; False if no cell saved samples."""
    with_samples = [r for r in results if r.finished and (r.cell.workdir / SAMPLES_FILE).is_file()]
    if not with_samples:
        return False
    samples = [np.load(r.cell.workdir / SAMPLES_FILE) for r in with_samples]
    rows = [
        ("gray", samples[0]["gray"]),
        *(
            (f"{r.cell.combo}\nseed {r.cell.seed}", s["prediction"])
            for r, s in zip(with_samples, samples, strict=True)
        ),
        ("ground truth", samples[0]["truth"]),
    ]
    columns = len(samples[0]["truth"])
    figure = _figure(2.0 + 1.6 * columns, 1.6 * len(rows))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for row_axes, (label, images) in zip(axes, rows, strict=True):
        for ax, image in zip(row_axes, images, strict=False):
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        row_axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for ax, name in zip(axes[0], samples[0]["names"], strict=False):
        ax.set_title(Path(str(name)).name[:20], fontsize=8)
    figure.savefig(path, dpi=100)
    return True


def write_report(cells: Sequence[Cell], out: Path, title: str = "Ablation") -> dict[str, Path]:
    """Write results.csv, results.md and the plots (those with data) to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(cells)
    paths = {"csv": out / "results.csv", "markdown": out / "results.md"}
    write_csv(results, paths["csv"])
    paths["markdown"].write_text(markdown_report(results, title))
    plots = {"loss_curves": plot_loss_curves, "metrics": plot_metrics, "samples": plot_samples}
    for kind, plot in plots.items():
        if plot(results, out / f"{kind}.png"):
            paths[kind] = out / f"{kind}.png"
    return paths
