"""Ablation grids: expansion and naming, skip/resume/failure bookkeeping, tables and plots."""

import csv
import dataclasses
import json
import re
import sys

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from colorjax import ablation
from colorjax.config import ConfigError
from colorjax.evaluation import METRICS
from experiments import ablate

pytestmark = pytest.mark.usefixtures("fast_compilation")

SPEC = ablation.EvalSpec("sample", held_out=True, eval_fraction=0.1, limit=2)
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
    assert "model.norm=grop: unknown norm 'grop'; valid norms" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


class _FakeEvaluator(ablation.CellEvaluator):
    """Evaluation without images or a model: a fixed record."""

    def __call__(self, cell):
        return {"spec": dataclasses.asdict(self.spec), "images": 0, "mean": {}}


def test_interruption_stops_the_grid_failures_do_not_and_retries_are_opt_in(tiny_config, tmp_path):
    cells = ablation.expand_grid(tiny_config, [("model.norm", ["batch", "group"])], [0], tmp_path)
    calls = []

    def interrupted(cell):
        calls.append(cell.name)
        return ablation.TrainOutcome(3, interrupted=True)

    assert not ablation.run_grid(cells, interrupted, _FakeEvaluator(SPEC))
    assert calls == [cells[0].name]
    status = ablation.read_status(cells[0].workdir)
    assert (status["status"], status["reason"]) == ("pending", "interrupted at step 3")

    def completes(cell):
        calls.append(cell.name)
        return ablation.TrainOutcome(cell.config.train.steps, interrupted=False)

    def first_fails(cell):
        if cell is cells[0]:
            raise RuntimeError("boom")
        return completes(cell)

    assert ablation.run_grid(cells, first_fails, _FakeEvaluator(SPEC))
    assert calls == [cells[0].name, cells[1].name]
    assert ablation.read_status(cells[0].workdir)["reason"] == "training: RuntimeError: boom"
    assert "RuntimeError: boom" in (cells[0].workdir / ablation.ERROR_LOG).read_text()
    assert ablation.run_grid(cells, completes, _FakeEvaluator(SPEC))
    assert len(calls) == 2
    assert ablation.run_grid(cells, completes, _FakeEvaluator(SPEC), retry_failed=True)
    assert calls == [cells[0].name, cells[1].name, cells[0].name]
    assert ablation.read_status(cells[0].workdir)["status"] == "finished"
    other_eval = dataclasses.replace(SPEC, limit=5)
    assert not ablation.is_finished(cells[0], ablation.read_status(cells[0].workdir), other_eval)


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


def test_rerun_skips_finished_cells_and_failures_do_not_stop_the_grid(
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
    assert (status["status"], status["step"], status["eval"]["images"]) == ("finished", 2, 1)
    assert set(status["eval"]["mean"]) == set(METRICS)
    ablate.main(_cli_args(out, "data.min_crop_scale=0.3,0.6", extra=["--dry-run"]))
    listing = capsys.readouterr().out
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
    assert [(r["data.min_crop_scale"], r["status"]) for r in rows] == [
        ("0.3", "failed"),
        ("0.6", "finished"),
        ("0.9", "finished"),
    ]
    assert "gray baseline" in (out / "results.md").read_text()
    for plot in ("loss_curves", "metrics", "samples"):
        assert Image.open(out / f"{plot}.png").size[0] > 200


def _fake_cell(cell, psnr: float, ciede: float) -> None:
    """A finished cell without training: cell.json with eval results, losses, samples."""
    means = {metric: 0.5 for metric in METRICS} | {"psnr": psnr, "ciede2000": ciede}
    gray = {metric: 0.1 for metric in METRICS} | {"psnr": 20.0, "colorfulness": 0.0}
    record = {
        "spec": dataclasses.asdict(SPEC),
        "images": 3,
        "mean": means,
        "gray": gray,
        "ground_truth": {"colorfulness": 30.0, "mean_a": 1.0, "mean_b": 2.0},
    }
    ablation.update_status(cell, ablation.FINISHED, step=cell.config.train.steps, eval=record)
    lines = [
        {"step": s, "split": "train", "g_l1": 1 / s, "g_adv": 0.7, "d_real": 0.6, "d_fake": 0.6}
        for s in range(1, 41)
    ]
    lines.append({"step": 20, "split": "val", "psnr": 21.0})
    (cell.workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    thumbs = np.zeros((2, 8, 8, 3), np.uint8)
    np.savez_compressed(
        cell.workdir / ablation.SAMPLES_FILE,
        names=np.array(["a.png", "b.png"]),
        gray=thumbs,
        prediction=thumbs + 100,
        truth=thumbs + 200,
    )


def test_report_tables_and_plots_from_fake_cells(tiny_config, tmp_path):
    grid = [("model.norm", ["batch", "group"]), ("disc.norm", ["spectral"])]
    cells = ablation.expand_grid(tiny_config, grid, [0, 1], tmp_path)
    batch0, group0, batch1, group1 = cells
    _fake_cell(batch0, psnr=22.0, ciede=10.0)
    _fake_cell(batch1, psnr=22.5, ciede=11.0)
    _fake_cell(group0, psnr=23.0, ciede=12.0)
    ablation.update_status(group1, ablation.FAILED, "training: NonFiniteLossError: nan at step 3")

    paths = ablation.write_report(cells, tmp_path, "Norms")
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
    table = {line.split(" | ")[0]: line for line in markdown.splitlines() if line.startswith("|")}
    assert table["| batch"].startswith("| batch | spectral | 2/2 | 22.250 ± 0.354 |")
    assert "| **10.500 ± 0.707** |" in table["| batch"]  # ciede2000: lower is better
    assert table["| group"].startswith("| group | spectral | 1/2 | **23.000** |")
    assert table["| gray baseline"].startswith("| gray baseline |  |  | 20.000 |")
    assert "↓ lower is better (ciede2000, tint, blob)" in markdown
    assert (
        "- `model.norm=group__disc.norm=spectral__seed=1`: failed — training: NonFiniteLossError"
        in (markdown)
    )
    for kind in ("loss_curves", "metrics", "samples"):
        assert Image.open(paths[kind]).size[0] > 200


def test_report_of_unstarted_cells_has_no_plots(tiny_config, tmp_path):
    cells = ablation.expand_grid(tiny_config, [("model.norm", ["batch"])], [0], tmp_path)
    paths = ablation.write_report(cells, tmp_path)
    assert set(paths) == {"csv", "markdown"}
    assert "1 cells: 0 finished, 0 failed, 1 not finished." in paths["markdown"].read_text()
