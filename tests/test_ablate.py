"""Ablation grids: expansion and naming, skip/resume/failure bookkeeping, eval sets and
variants, incremental evaluation, tables and plots."""

import collections
import csv
import dataclasses
import inspect
import json
import re
import sys

import jax
import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from colorjax import ablation, inference
from colorjax.ablation import grid, plots, results, running, scoring, status, summary, types
from colorjax.config import ConfigError, ModelConfig, set_key
from colorjax.evaluation import METRICS
from colorjax.heads import generator_from_config
from experiments import ablate

pytestmark = pytest.mark.usefixtures("fast_compilation")

HELD_OUT = ablation.EvalSet("sample", "sample", ablation.EVAL, eval_fraction=0.1, limit=2)
PLAN = ablation.EvalPlan((HELD_OUT,))
TINY_RUN = [*TINY, "train.steps=2", "train.pretrain_steps=1"]


def _cli_args(out, *grid: str, extra=()) -> list[str]:
    args = ["--preset", "demo", "--out", str(out), "--eval-limit", "1", "--compile-cache="]
    args += [item for override in TINY_RUN for item in ("--set", override)]
    args += [item for axis in grid for item in ("--grid", axis)]
    return [*args, *extra]


def test_grid_is_the_product_times_seeds_in_a_stable_order(tiny_config, tmp_path):
    grid = [ablation.parse_grid("model.norm=batch,group"), ("disc.norm", ["batch", "spectral"])]
    cells = ablation.expand_grid(tiny_config, grid, [0, 1], tmp_path)
    names = [cell.name for cell in cells]
    assert names[:4] == [
        "model.norm=batch__disc.norm=batch__seed=0",
        "model.norm=batch__disc.norm=spectral__seed=0",
        "model.norm=group__disc.norm=batch__seed=0",
        "model.norm=group__disc.norm=spectral__seed=0",
    ]
    assert names[4:] == [name.replace("seed=0", "seed=1") for name in names[:4]]
    last = cells[-1]
    assert (last.config.model.norm, last.config.disc.norm, last.config.train.seed) == (
        "group",
        "spectral",
        1,
    )
    assert last.workdir == tmp_path / last.name
    assert last.overrides == ["model.norm=group", "disc.norm=spectral", "train.seed=1"]
    again = ablation.expand_grid(tiny_config, grid, [0, 1], tmp_path)
    assert [cell.name for cell in again] == names


def test_values_are_canonical_and_names_filesystem_safe(tiny_config, tmp_path):
    assert ablation.parse_grid("train.diffaug=|translation,cutout") == (
        "train.diffaug",
        ["", "translation,cutout"],
    )
    grid = [
        ("train.lr_g", ["1e-4"]),
        ("data.source", ["folder:/x/y", "folder:/x-y"]),
        ("train.diffaug", ["", "translation,cutout"]),
    ]
    cells = ablation.expand_grid(tiny_config, grid, [0], tmp_path)
    names = [cell.name for cell in cells]
    assert len(set(names)) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9._=+-]+", name) for name in names)
    assert names[0].startswith("train.lr_g=0.0001__data.source=folder--x-y-")
    assert cells[0].config.train.lr_g == 1e-4
    assert cells[3].config.train.diffaug == "translation,cutout"


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (("model.nrom", ["batch"]), r"unknown config key 'model.nrom'; valid keys in model: .*"),
        (("train.steps", ["10", "x"]), "train.steps: expected int"),
        (("model.norm", ["batch", "batch"]), "repeats the value"),
        (("train.seed", ["1"]), "--seeds"),
    ],
)
def test_invalid_grid_keys_and_values_are_rejected(tiny_config, tmp_path, grid, message):
    with pytest.raises(ConfigError, match=message):
        ablation.expand_grid(tiny_config, [grid], [0], tmp_path)


def test_invalid_choice_is_rejected_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablate.run_cli(ablate.main, _cli_args(tmp_path, "model.norm=batch,grop"))
    assert exit_info.value.code == 2
    assert "model.norm: unknown value 'grop'; valid: batch" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


class _FakeEvaluator(ablation.CellEvaluator):
    """Evaluation without images or a model: the same scores everywhere; ``calls`` counts each
    (cell, set, variant) scored."""

    def __init__(self, plan):
        super().__init__(plan)
        self.calls = collections.Counter()

    def __call__(self, cell, todo):
        for eval_set, variant in todo:
            self.calls[cell.name, eval_set.name, variant.key] += 1
            means = {metric: 0.5 for metric in METRICS}
            yield (
                eval_set,
                variant,
                {"images": 2, "mean": means, "gray": GRAY, "ground_truth": TRUTH},
            )


def _completes(cell):
    return ablation.TrainOutcome(cell.config.train.steps, interrupted=False)


def test_the_package_has_a_module_per_job_and_defines_each_function_once():
    modules = (grid, types, status, running, scoring, results, summary, plots)
    defined = collections.Counter(
        name
        for module in modules
        for name, value in vars(module).items()
        if (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    )
    assert [name for name, count in defined.items() if count > 1] == []
    for name in ablation.__all__:
        value = getattr(ablation, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert value.__module__.startswith("colorjax.ablation.")
    assert ablation.run_grid is running.run_grid and ablation.EvalSet is types.EvalSet
    assert ablation.write_summary is summary.write_summary


def test_interruption_stops_the_grid_failures_do_not_and_retries_are_opt_in(tiny_config, tmp_path):
    cells = ablation.expand_grid(tiny_config, [("model.norm", ["batch", "group"])], [0], tmp_path)
    calls = []

    def interrupted(cell):
        calls.append(cell.name)
        return ablation.TrainOutcome(3, interrupted=True)

    assert not ablation.run_grid(cells, interrupted, _FakeEvaluator(PLAN))
    assert calls == [cells[0].name]
    status = ablation.read_status(cells[0].workdir)
    assert (status["status"], status["reason"]) == ("pending", "interrupted at step 3")

    def completes(cell):
        calls.append(cell.name)
        return _completes(cell)

    def first_fails(cell):
        if cell is cells[0]:
            raise RuntimeError("boom")
        return completes(cell)

    assert ablation.run_grid(cells, first_fails, _FakeEvaluator(PLAN))
    assert calls == [cells[0].name, cells[1].name]
    assert ablation.read_status(cells[0].workdir)["reason"] == "training: RuntimeError: boom"
    assert "RuntimeError: boom" in (cells[0].workdir / ablation.ERROR_LOG).read_text()
    assert ablation.run_grid(cells, completes, _FakeEvaluator(PLAN))
    assert len(calls) == 2
    assert ablation.run_grid(cells, completes, _FakeEvaluator(PLAN), retry_failed=True)
    assert calls == [cells[0].name, cells[1].name, cells[0].name]
    assert ablation.read_status(cells[0].workdir)["status"] == "finished"
    other_images = ablation.EvalPlan((dataclasses.replace(HELD_OUT, limit=5),))
    finished = ablation.read_status(cells[0].workdir)
    assert ablation.is_finished(cells[0], finished, PLAN.pairs(cells[0]))
    assert not ablation.is_finished(cells[0], finished, other_images.pairs(cells[0]))


def test_subprocess_trainer_reports_the_error_line_and_interruptions(tiny_config, tmp_path):
    (cell,) = ablation.expand_grid(tiny_config, [], [0], tmp_path)
    script = "import sys; print('error: non-finite loss at step 3', file=sys.stderr); sys.exit(1)"
    failing = ablation.SubprocessTrainer(lambda cell: [sys.executable, "-c", script])
    with pytest.raises(ablation.CellFailed, match=r"^non-finite loss at step 3$"):
        failing(cell)
    assert "non-finite loss" in (cell.workdir / ablation.TRAIN_LOG).read_text()
    stopped = ablation.SubprocessTrainer(
        lambda cell: [sys.executable, "-c", "raise SystemExit(130)"]
    )
    assert stopped(cell) == ablation.TrainOutcome(0, interrupted=True)


@pytest.fixture
def restore_compilation_cache():
    """Put JAX's compilation cache setting back after a test that enables it."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    previous = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", previous)
    compilation_cache.reset_cache()


def _mtimes(folder):
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


def _counting(monkeypatch, owner, name: str, calls: list, note=lambda *args, **kwargs: None):
    """Replace ``owner.name`` by a wrapper that appends ``note(...)`` to ``calls``."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(note(*args, **kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


DEFAULT = ablation.Variant().key


def test_rerun_skips_finished_cells_and_scores_only_what_is_missing(
    tmp_path, monkeypatch, capsys, restore_compilation_cache
):
    out, trained, failing = tmp_path / "ablation", [], {"0.3"}

    def spy(cell):
        scale = cell.values["data.min_crop_scale"]
        trained.append(scale)
        if scale in failing:
            raise RuntimeError("boom")
        return train_in_process(cell)

    train_in_process = ablation.train_in_process
    monkeypatch.setattr(ablation, "train_in_process", spy)
    cache = ["--compile-cache", str(tmp_path / "jax_cache")]
    ablate.main(_cli_args(out, "data.min_crop_scale=0.3,0.6", extra=cache))
    assert trained == ["0.3", "0.6"]
    failed, done = out / "data.min_crop_scale=0.3__seed=0", out / "data.min_crop_scale=0.6__seed=0"
    assert ablation.read_status(failed)["reason"] == "training: RuntimeError: boom"
    status = ablation.read_status(done)
    record = status["evals"]["sample"][DEFAULT]
    assert (status["status"], status["step"], record["images"]) == ("finished", 2, 1)
    assert record["set"]["split"] == "eval" and set(record["mean"]) == set(METRICS)
    ablate.main(_cli_args(out, "data.min_crop_scale=0.3,0.6", extra=["--dry-run"]))
    listing = capsys.readouterr().out
    assert "eval set sample: held-out split of `sample`, first 1" in listing
    assert f"{failed}  [failed (training: RuntimeError: boom)]" in listing
    assert f"{done}  [finished at step 2/2]" in listing

    failing.clear()
    before, status_text = _mtimes(done / "checkpoints"), (done / "cell.json").read_text()
    ablate.main(_cli_args(out, "data.min_crop_scale=0.3,0.6,0.9", extra=cache))
    assert trained == ["0.3", "0.6", "0.9"]
    assert _mtimes(done / "checkpoints") == before
    assert (done / "cell.json").read_text() == status_text
    assert ablation.read_status(failed)["status"] == "failed"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["data.min_crop_scale"], r["set"], r["status"]) for r in rows] == [
        ("0.3", "sample", "failed"),
        ("0.6", "sample", "finished"),
        ("0.9", "sample", "finished"),
    ]
    assert "gray baseline" in (out / "results.md").read_text()
    for plot in ("loss_curves", "metrics", "samples"):
        assert Image.open(out / f"{plot}.png").size[0] > 200

    loads, colorized = [], []
    _counting(monkeypatch, inference, "load_workdir", loads, lambda workdir, *a: workdir)
    _counting(monkeypatch, inference.Colorizer, "colorize_many", colorized)
    two_sets = ["--eval-heldout", "sample", "--eval-data", "whole=sample"]
    ablate.main(_cli_args(out, "data.min_crop_scale=0.3,0.6,0.9", extra=[*cache, *two_sets]))
    assert trained == ["0.3", "0.6", "0.9"]  # nothing trained again
    assert (len(loads), len(colorized)) == (2, 2)  # the new set only, in the 2 finished cells
    status = ablation.read_status(done)
    assert status["evals"]["sample"][DEFAULT] == record
    assert status["evals"]["whole"][DEFAULT]["set"]["split"] == "all"

    variants = ["--eval-render-size", "24"]
    ablate.main(_cli_args(out, "data.min_crop_scale=0.3,0.6,0.9", extra=[*two_sets, *variants]))
    assert (len(loads), len(colorized)) == (4, 2 + 2 * 2)  # a model load per cell
    record = ablation.read_status(done)["evals"]["whole"]["render=24__T=default"]
    assert record["render_size"] == 24 and record["temperature"] is None
    markdown = (out / "results.md").read_text()
    assert "## Summary" in markdown and "| sample Δpsnr ↑ |" in markdown
    assert "## whole: test images of `sample`, first 1 (1 images)" in markdown
    assert "| data.min_crop_scale | render | seeds |" in markdown
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["set"], r["render_size"]) for r in rows if r["psnr"]] == [
        ("sample", "24"),
        ("whole", "24"),
    ] * 2


def test_cli_errors_name_the_option_and_names_make_sets_distinct(tmp_path, capsys):
    def fails(*extra):
        with pytest.raises(SystemExit) as exit_info:
            ablate.run_cli(ablate.main, _cli_args(tmp_path, extra=[*extra, "--dry-run"]))
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    assert "argument --eval-render-size: expected positive integers" in fails(
        "--eval-render-size", "0"
    )
    assert "argument --eval-render-size: '64,64' repeats a value" in fails(
        "--eval-render-size", "64,64"
    )
    assert "argument --eval-temperature: expected positive numbers" in fails(
        "--eval-temperature", "0.3,warm"
    )
    assert "error: --eval-data nope:x: unknown data source 'nope:x'" in fails(
        "--eval-data", "nope:x"
    )
    missing = tmp_path / "nowhere"
    assert f"--eval-heldout folder:{missing}: {missing} is not a folder" in fails(
        "--eval-heldout", f"folder:{missing}"
    )
    assert "two eval sets are named sample; name them NAME=SOURCE" in fails(
        "--eval-data", "sample", "--eval-heldout", "sample"
    )
    with pytest.raises(SystemExit):
        ablate.run_cli(
            ablate.main, _cli_args(tmp_path, "data.eval_fraction=0.1,0.2", extra=["--dry-run"])
        )
    assert "eval set(s) sample are held-out splits, but the cells hold out different shares" in (
        capsys.readouterr().err
    )
    ablate.main(
        _cli_args(
            tmp_path,
            extra=[
                *("--eval-data", "sample", "--eval-heldout", "held=sample"),
                *("--eval-temperature", "0.2,1", "--dry-run"),
            ],
        )
    )
    listing = capsys.readouterr().out
    assert "eval set sample: test images of `sample`, first 1" in listing
    assert "eval set held: held-out split of `sample`, first 1" in listing
    assert "variants: T 0.2; T 1" in listing


def test_an_unreadable_eval_set_stops_the_grid_before_training(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "grid"
    with pytest.raises(SystemExit) as exit_info:
        ablate.run_cli(
            ablate.main, _cli_args(out, extra=["--eval-data", f"folder:{tmp_path}/empty"])
        )
    assert exit_info.value.code == 2
    assert f"error: eval set empty (test images of `folder:{tmp_path}/empty`" in (
        capsys.readouterr().err
    )
    assert not out.exists()


GRAY = {metric: 0.1 for metric in METRICS} | {"psnr": 20.0, "colorfulness": 0.0}
TRUTH = {"colorfulness": 30.0, "mean_a": 1.0, "mean_b": 2.0, "tint": 1.5}


def _fake_cell(cell, psnr: float, ciede: float, sets=(HELD_OUT,)) -> None:
    """A finished cell without training: scores on ``sets`` (each set a little different:
    set ``i`` adds ``i`` to psnr and colorfulness and ``2 i`` to its gray psnr), losses, samples."""
    ablation.update_status(cell, ablation.RUNNING, step=cell.config.train.steps)
    for offset, eval_set in enumerate(sets):
        means = {metric: 0.5 for metric in METRICS}
        means |= {"psnr": psnr + offset, "ciede2000": ciede, "colorfulness": 15.0 + offset}
        scores = {
            "images": 3 + offset,
            "mean": means,
            "gray": GRAY | {"psnr": 20.0 + 2 * offset},
            "ground_truth": TRUTH,
        }
        status.store_record(cell, eval_set, ablation.Variant(), scores)
        thumbs = np.zeros((2, 8, 8, 3), np.uint8)
        path = ablation.samples_path(cell.workdir, eval_set, ablation.Variant())
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            names=np.array(["a.png", "b.png"]),
            gray=thumbs,
            prediction=thumbs + 100,
            truth=thumbs + 200,
        )
    ablation.update_status(cell, ablation.FINISHED)
    lines = [
        {"step": s, "split": "train", "g_l1": 1 / s, "g_adv": 0.7, "d_real": 0.6, "d_fake": 0.6}
        for s in range(1, 41)
    ]
    lines.append({"step": 20, "split": "val", "psnr": 21.0})
    (cell.workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _table(markdown: str, heading: str) -> dict[str, str]:
    """The rows of the table under ``heading``, by their first column."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return {line.split(" | ")[0]: line for line in rows}


def _norm_cells(tiny_config, tmp_path, sets=(HELD_OUT,)):
    grid = [("model.norm", ["batch", "group"]), ("disc.norm", ["spectral"])]
    cells = ablation.expand_grid(tiny_config, grid, [0, 1], tmp_path)
    batch0, group0, batch1, group1 = cells
    _fake_cell(batch0, psnr=22.0, ciede=10.0, sets=sets)
    _fake_cell(batch1, psnr=22.5, ciede=11.0, sets=sets)
    _fake_cell(group0, psnr=23.0, ciede=12.0, sets=sets)
    ablation.update_status(group1, ablation.FAILED, "training: NonFiniteLossError: nan at step 3")
    return cells


def test_report_tables_and_plots_from_fake_cells(tiny_config, tmp_path):
    cells = _norm_cells(tiny_config, tmp_path)
    paths = ablation.write_summary(cells, tmp_path, PLAN, "Norms")
    assert set(paths) == {"csv", "markdown", "loss_curves", "metrics", "samples"}
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model.norm"], r["seed"], r["status"]) for r in rows] == [
        ("batch", "0", "finished"),
        ("batch", "1", "finished"),
        ("group", "0", "finished"),
        ("group", "1", "failed"),
    ]
    assert (float(rows[0]["psnr"]), rows[3]["psnr"]) == (22.0, "")

    markdown = paths["markdown"].read_text()
    assert "## Summary" not in markdown
    table = _table(markdown, "## sample: held-out split of `sample`, first 2 (3 images)")
    assert table["| batch"].startswith("| batch | spectral | 2/2 | 22.250 ± 0.354 |")
    assert "| **10.500 ± 0.707** |" in table["| batch"]  # ciede2000: lower is better
    assert table["| group"].startswith("| group | spectral | 1/2 | **23.000** |")
    assert table["| gray baseline"].startswith("| gray baseline |  |  | 20.000 |")
    assert "↓ lower is better (ciede2000, tint, blob)" in markdown
    assert (
        "- `model.norm=group__disc.norm=spectral__seed=1`: failed (training: NonFiniteLossError"
        in (markdown)
    )
    for kind in ("loss_curves", "metrics", "samples"):
        assert Image.open(paths[kind]).size[0] > 200


def test_two_sets_get_a_table_each_with_their_own_baseline_and_a_summary(tiny_config, tmp_path):
    sets = (
        ablation.EvalSet("CBSD68", "folder:/d/CBSD68", ablation.ALL, eval_fraction=0.1),
        ablation.EvalSet("imagenet900", "folder:/d/imagenet900", ablation.EVAL, eval_fraction=0.1),
    )
    cells = _norm_cells(tiny_config, tmp_path / "cells", sets)
    both = ablation.write_summary(cells, tmp_path / "both", ablation.EvalPlan(sets))
    one = ablation.write_summary(cells, tmp_path / "one", ablation.EvalPlan(sets[:1]))
    markdown = both["markdown"].read_text()

    first = _table(markdown, "## CBSD68: test images of `folder:/d/CBSD68` (3 images)")
    second = _table(
        markdown, "## imagenet900: held-out split of `folder:/d/imagenet900` (4 images)"
    )
    assert first["| batch"].startswith("| batch | spectral | 2/2 | 22.250 ± 0.354 |")
    assert second["| batch"].startswith("| batch | spectral | 2/2 | 23.250 ± 0.354 |")
    assert first["| gray baseline"].startswith("| gray baseline |  |  | 20.000 |")
    assert second["| gray baseline"].startswith("| gray baseline |  |  | 22.000 |")
    assert "| tint ↓ | blob ↓ |" in markdown.split("## CBSD68")[1]

    summary = _table(markdown, "## Summary")
    header = next(line for line in summary.values() if "Δpsnr" in line)
    assert header.startswith("| model.norm | disc.norm | CBSD68 Δpsnr ↑ | CBSD68 colorfulness/gt")
    assert "| imagenet900 tint ↓ | imagenet900 blob ↓ |" in header
    # batch: CBSD68 22.25 - 20 and 15 / 30; imagenet900 23.25 - 22 and 16 / 30
    assert summary["| batch"].startswith("| batch | spectral | +2.250 | 0.500 | 0.500 | 0.500 |")
    assert "| +1.250 | 0.533 |" in summary["| batch"]
    assert summary["| group"].startswith("| group | spectral | **+3.000** |")

    with open(both["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["seed"], r["set"]) for r in rows if r["model.norm"] == "batch"] == [
        ("0", "CBSD68"),
        ("0", "imagenet900"),
        ("1", "CBSD68"),
        ("1", "imagenet900"),
    ]
    assert [float(r["psnr"]) for r in rows[:2]] == [22.0, 23.0]
    width, height = Image.open(one["metrics"]).size
    assert Image.open(both["metrics"]).size == (width, 2 * height)  # a row of panels per set
    assert Image.open(both["samples"]).size[0] > Image.open(one["samples"]).size[0]


def test_temperatures_apply_to_classification_cells_only(tiny_config, tmp_path):
    cells = ablation.expand_grid(
        tiny_config, [("model.head", ["regression", "classification"])], [0], tmp_path
    )
    regression, classification = cells
    plan = ablation.EvalPlan((HELD_OUT,), ablation.variants([32, 64], [0.2, 0.5]))
    assert [v.key for v in plan.variants_for(regression)] == [
        "render=32__T=default",
        "render=64__T=default",
    ]
    assert len(plan.pairs(classification)) == 4
    evaluator = _FakeEvaluator(plan)
    assert ablation.run_grid(cells, _completes, evaluator)
    assert sum(evaluator.calls.values()) == 6 and max(evaluator.calls.values()) == 1

    markdown = ablation.write_summary(cells, tmp_path, plan)["markdown"].read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model.head | render | T | seeds | psnr ↑ |")
    labels = [" | ".join(row.split(" | ")[:3]) for row in rows[2:8]]
    assert labels == [
        "| regression | 32 | n/a",
        "| regression | 64 | n/a",
        "| classification | 32 | 0.2",
        "| classification | 32 | 0.5",
        "| classification | 64 | 0.2",
        "| classification | 64 | 0.5",
    ]
    assert "n/a: a regression head has none" in markdown
    assert "2 cells: 2 finished" in markdown


def test_adding_a_set_scores_only_it_and_longer_training_scores_again(tiny_config, tmp_path):
    cells = ablation.expand_grid(tiny_config, [("model.norm", ["batch", "group"])], [0], tmp_path)
    other = dataclasses.replace(HELD_OUT, name="other", split=ablation.ALL)
    first = _FakeEvaluator(PLAN)
    assert ablation.run_grid(cells, _completes, first)
    assert sorted(first.calls) == sorted((c.name, "sample", DEFAULT) for c in cells)
    before = ablation.read_status(cells[0].workdir)["evals"]["sample"]

    def must_not_train(cell):
        raise AssertionError(f"{cell.name} trained again")

    added = _FakeEvaluator(ablation.EvalPlan((HELD_OUT, other)))
    assert ablation.run_grid(cells, must_not_train, added)
    assert sorted(added.calls) == sorted((c.name, "other", DEFAULT) for c in cells)
    after = ablation.read_status(cells[0].workdir)
    assert after["evals"]["sample"] == before and after["status"] == "finished"
    assert ablation.cells_to_run(cells, added) == []
    more_images = _FakeEvaluator(ablation.EvalPlan((dataclasses.replace(HELD_OUT, limit=5),)))
    assert ablation.run_grid(cells, must_not_train, more_images)
    assert sorted(more_images.calls) == sorted(first.calls)

    longer_config = set_key(tiny_config, "train.steps", 9)
    longer = ablation.expand_grid(
        longer_config, [("model.norm", ["batch", "group"])], [0], tmp_path
    )
    again = _FakeEvaluator(PLAN)
    assert ablation.run_grid(longer, _completes, again)
    assert sorted(again.calls) == sorted(first.calls)
    assert ablation.read_status(longer[0].workdir)["evals"]["sample"][DEFAULT]["step"] == 9


def test_cells_written_by_the_single_record_layout_count_as_trained(tiny_config, tmp_path):
    cells = ablation.expand_grid(tiny_config, [("model.norm", ["batch", "group"])], [0], tmp_path)
    finished, running_cell = cells
    steps = tiny_config.train.steps
    old_eval = {
        "spec": {
            "source": "sample",
            "held_out": True,
            "eval_fraction": 0.1,
            "data_dir": None,
            "limit": None,
        },
        "images": 121,
        "mean": {"psnr": 22.6, "ssim": 0.92, "colorfulness": 17.1},
        "gray": {"psnr": 22.1, "ssim": 0.92, "colorfulness": 0.08},
        "ground_truth": {"colorfulness": 40.7, "mean_a": -0.6, "mean_b": 9.7},
    }
    for cell, fields in (
        (finished, {"status": "finished", "step": steps, "eval": old_eval}),
        (running_cell, {"status": "running"}),
    ):
        cell.workdir.mkdir(parents=True)
        header = {"name": cell.name, "values": cell.values, "seed": 0, "steps": steps}
        record = {**header, "reason": "", "updated": "2026-12-01T22:09:27", **fields}
        (cell.workdir / ablation.STATUS_FILE).write_text(json.dumps(record, indent=2))

    listing = ablation.describe_cells(cells, PLAN.pairs)
    assert f"[finished at step {steps}/{steps}, 1 of 1 evaluations to do]" in listing
    markdown = ablation.write_summary(cells, tmp_path / "report", PLAN)["markdown"].read_text()
    assert "2 cells: 0 finished, 0 failed, 2 not finished." in markdown

    trained = []

    def trainer(cell):
        trained.append(cell.name)
        return _completes(cell)

    evaluator = _FakeEvaluator(PLAN)
    assert ablation.run_grid(cells, trainer, evaluator)
    assert trained == [running_cell.name]
    assert sorted(evaluator.calls) == sorted((c.name, "sample", DEFAULT) for c in cells)
    status = ablation.read_status(finished.workdir)
    assert (status["status"], status["step"]) == ("finished", steps)
    assert "eval" not in status and status["evals"]["sample"][DEFAULT]["step"] == steps


def _same_size_photos(folder, count: int, seed: int):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index in range(count):
        blobs = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
        blobs.resize((40, 30), Image.Resampling.BILINEAR).save(folder / f"p{index}.png")


@pytest.fixture(scope="module")
def classifier() -> inference.Colorizer:
    model = ModelConfig(depth=3, features=4, norm="group", num_groups=2, head="classification")
    model = dataclasses.replace(model, temperature=0.5)  # the variants' (compiled once)
    variables = dict(
        generator_from_config(model).init(
            jax.random.PRNGKey(0), np.zeros((1, 16, 16, 1), np.float32), train=False
        )
    )
    params = variables.pop("params")
    return inference.Colorizer(model, params, variables, render_size=32)


def test_evaluator_loads_sets_and_models_once_and_colorizes_once_per_variant(
    tiny_config, tmp_path, monkeypatch, classifier
):
    _same_size_photos(tmp_path / "three", 3, seed=1)
    _same_size_photos(tmp_path / "two", 2, seed=2)
    sets = tuple(
        ablation.eval_set(f"folder:{tmp_path / name}", ablation.ALL, tiny_config)
        for name in ("three", "two")
    )
    assert [s.name for s in sets] == ["three", "two"]
    plan = ablation.EvalPlan(sets, ablation.variants([16, 24], [0.5]))
    cells = ablation.expand_grid(
        tiny_config, [("model.head", ["classification"])], [0, 1], tmp_path
    )
    for cell in cells:
        ablation.update_status(cell, ablation.PENDING, step=cell.config.train.steps)

    loads, loaded_sets, colorized, temperatures = [], [], [], []
    monkeypatch.setattr(
        inference, "load_workdir", lambda workdir: loads.append(workdir) or classifier
    )
    _counting(monkeypatch, ablation.EvalSet, "load", loaded_sets, lambda eval_set: eval_set.name)
    _counting(
        monkeypatch,
        inference.Colorizer,
        "colorize_many",
        colorized,
        lambda self, images, render_size=None: (len(images), self.model.temperature, render_size),
    )
    _counting(monkeypatch, inference.Colorizer, "with_temperature", temperatures, lambda _, t: t)
    lines = []
    evaluator = ablation.CellEvaluator(plan, say=lines.append)
    for cell in cells:
        assert ablation.run_cell(cell, _completes, evaluator)

    assert loads == [cell.workdir for cell in cells] and loaded_sets == ["three", "two"]
    expected = [(n, 0.5, r) for n in (3, 2) for r in (16, 24)]
    assert colorized == expected * 2  # per cell: each set once per variant
    assert temperatures == [0.5] * 8
    assert len(lines) == 8 and all("images/s" in line for line in lines)
    assert f"{cells[1].name}: two, render 16, T 0.5: 2 images in" in lines[-2]
    status = ablation.read_status(cells[0].workdir)
    assert status["status"] == "finished"
    records = status["evals"]["three"]
    assert set(records) == {v.key for v in plan.variants}
    record = records["render=16__T=0.5"]
    assert (record["images"], record["render_size"], record["temperature"]) == (3, 16, 0.5)
    assert set(record["mean"]) == set(METRICS)
    assert record["gray"] == records["render=24__T=0.5"]["gray"]
    assert record["mean"] != records["render=24__T=0.5"]["mean"]
    for eval_set in sets:
        for variant in plan.variants:
            assert ablation.samples_path(cells[0].workdir, eval_set, variant).is_file()


def test_report_of_unstarted_cells_has_no_plots(tiny_config, tmp_path):
    cells = ablation.expand_grid(tiny_config, [("model.norm", ["batch"])], [0], tmp_path)
    paths = ablation.write_summary(cells, tmp_path, PLAN)
    assert set(paths) == {"csv", "markdown"}
    assert "1 cells: 0 finished, 0 failed, 1 not finished." in paths["markdown"].read_text()
