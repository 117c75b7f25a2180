"""Training runs that survive what Colab and shared disks do to them, on real files: a damaged
latest checkpoint, a full disk, a second trainer on the same workdir, a kill -9 mid-way."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY, fail_last_checkpoint_write, tensorboard_scalars, truncate_largest_file

from colorjax import inference
from colorjax.config import Config, apply_overrides
from colorjax.training.checkpoint import DAMAGED_DIR, Checkpoints, DamagedCheckpointError
from colorjax.training.lock import WorkdirLock
from colorjax.training.loop import train_and_evaluate
from experiments import export
from experiments import train as train_cli
from experiments.cli import run_cli
from experiments.presets import get_preset

pytestmark = pytest.mark.usefixtures("fast_compilation", "compilation_cache")
ROOT = Path(__file__).parents[1]
END = 24  # where the compared runs stop
EVERY = 4  # checkpoint interval
OVERRIDES = [
    *TINY,
    "train.steps=100000",  # the killed run must not finish; the schedule is the same for all
    "train.pretrain_steps=100000",  # one step function to compile (test_train resumes GANs)
    "log.every=1",
    f"ckpt.every={EVERY}",
    "log.eval_every=100000",
    "log.sample_every=100000",
]


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """One XLA compilation for the module's runs, in this process and in subprocesses (the
    runs differ only in where they start)."""
    from jax.experimental.compilation_cache import compilation_cache as cache

    directory = str(tmp_path_factory.mktemp("jax_cache"))
    settings = {
        "jax_compilation_cache_dir": directory,
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    previous = {key: getattr(jax.config, key) for key in settings}
    for key, value in settings.items():
        jax.config.update(key, value)
    cache.reset_cache()
    yield {key.upper(): str(value) for key, value in settings.items()}
    for key, value in previous.items():
        jax.config.update(key, value)
    cache.reset_cache()


@pytest.fixture(scope="module")
def env(compilation_cache) -> dict[str, str]:
    """The environment of a subprocess trainer: CPU, fast compilation, the shared cache."""
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
        **compilation_cache,
    }


@pytest.fixture(scope="module")
def config() -> Config:
    """``experiments.train``'s default preset with OVERRIDES, as the subprocesses run it."""
    return apply_overrides(get_preset("demo"), OVERRIDES)


@pytest.fixture(scope="module")
def straight(config, tmp_path_factory) -> Path:
    """A run trained without interruption to END."""
    workdir = tmp_path_factory.mktemp("straight")
    train_and_evaluate(config, workdir, stop_at=END)
    return workdir


def _train_command(workdir: Path) -> list[str]:
    command = [sys.executable, "-m", "experiments.train", "--workdir", str(workdir)]
    for item in OVERRIDES:
        command += ["--set", item]
    return command


def _params(workdir: Path, config: Config) -> list[np.ndarray]:
    """The arrays of the latest checkpoint of ``workdir``."""
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    state = checkpoints.restore()
    checkpoints.close()
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _assert_same_params(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # exact: a resumed run is the same computation


def _train_losses(workdir: Path) -> dict[int, float]:
    """{step: g_l1} of metrics.jsonl, asserting that no step is logged twice."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)), "a step is logged twice"
    return {r["step"]: r["g_l1"] for r in rows if r["split"] == "train"}


def test_a_truncated_latest_checkpoint_is_set_aside_and_the_run_resumes_exactly(
    config, straight, tmp_path, capsys
):
    workdir = tmp_path / "run"
    shutil.copytree(straight, workdir)
    truncate_largest_file(workdir / "checkpoints" / str(END))

    assert train_and_evaluate(config, workdir, stop_at=END)["step"] == END

    lines = [line for line in capsys.readouterr().out.splitlines() if "is damaged" in line]
    assert len(lines) == 1
    assert f"checkpoint {END} is damaged" in lines[0]
    assert lines[0].endswith(f"resumed from step {END - EVERY}")
    assert (workdir / "checkpoints" / DAMAGED_DIR / str(END)).is_dir()
    _assert_same_params(_params(workdir, config), _params(straight, config))
    assert _train_losses(workdir) == _train_losses(straight)


def test_export_and_colorize_fall_back_from_a_damaged_latest_and_refuse_it_by_step(
    config, straight, tmp_path, capsys
):
    workdir = tmp_path / "run"
    shutil.copytree(straight, workdir)
    (workdir / "checkpoints" / str(END) / "state" / "_METADATA").unlink()
    listing = sorted(str(p) for p in workdir.rglob("*"))

    with pytest.warns(UserWarning, match=f"checkpoint {END} is damaged.*using step {END - EVERY}"):
        colorizer = inference.load_workdir(workdir, "latest")
    with pytest.warns(UserWarning, match=f"checkpoint {END} is damaged"):
        inference.load_workdir(workdir, "best")
    expected = Checkpoints(straight / "checkpoints", config.ckpt).restore(step=END - EVERY)
    _assert_same_params(jax.tree.leaves(colorizer.params), jax.tree.leaves(expected["g_params"]))
    with pytest.raises(DamagedCheckpointError, match=f"checkpoint {END} .* does not restore"):
        inference.load_workdir(workdir, str(END))
    with pytest.raises(SystemExit) as exit_status:
        run_cli(
            export.main,
            ["--workdir", str(workdir), "--out", str(tmp_path / "out"), "--step", str(END)],
            errors=(FileNotFoundError, ValueError),
        )
    assert exit_status.value.code == 2
    assert f"error: checkpoint {END}" in capsys.readouterr().err
    assert sorted(str(p) for p in workdir.rglob("*")) == listing  # readers move nothing


def test_a_full_disk_stops_the_run_clearly_and_the_rerun_resumes_from_the_last_checkpoint(
    config, straight, tmp_path, monkeypatch, capsys
):
    workdir = tmp_path / "run"
    shutil.copytree(straight, workdir)
    fail_last_checkpoint_write(monkeypatch, workdir / "checkpoints", [])
    argv = ["--workdir", str(workdir)] + [f"--set={item}" for item in OVERRIDES]

    with pytest.raises(SystemExit) as exit_status:  # at the first save: nothing else stops it
        train_cli.main(argv)

    assert exit_status.value.code == 1
    error = capsys.readouterr().err
    assert f"could not write checkpoint {END + EVERY} to {workdir / 'checkpoints'}" in error
    assert "No space left on device" in error and " free on the disk" in error
    monkeypatch.undo()
    assert Checkpoints(workdir / "checkpoints", config.ckpt).all_steps() == [END - EVERY, END]
    assert train_and_evaluate(config, workdir, stop_at=END + EVERY)["step"] == END + EVERY
    assert sorted(_train_losses(workdir)) == list(range(1, END + EVERY + 1))


def test_a_second_trainer_on_a_locked_workdir_stops_at_once_naming_the_holder(tmp_path, env):
    with WorkdirLock(tmp_path):
        second = subprocess.run(
            _train_command(tmp_path), env=env, cwd=ROOT, capture_output=True, text=True
        )
    assert second.returncode == 1
    assert f"PID {os.getpid()} on {socket.gethostname()}" in second.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.json").exists()


def _kill_after_a_checkpoint(process: subprocess.Popen, workdir: Path) -> int:
    """SIGKILL ``process`` once it has logged steps past a completed checkpoint (paused with
    SIGSTOP to look); return the last step it logged."""
    metrics = workdir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        process.send_signal(signal.SIGSTOP)
        logged = _logged_train_steps(metrics)
        saved = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
        if saved and logged and max(logged) > max(saved):
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            return max(logged)
        process.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    process.kill()
    pytest.fail(f"the run did not get past a checkpoint (exit status {process.poll()})")


def _logged_train_steps(metrics: Path) -> list[int]:
    steps = []
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            record = json.loads(line)
            if record["split"] == "train":
                steps.append(record["step"])
    return steps


def test_a_run_killed_mid_way_resumes_like_a_straight_run_with_each_step_logged_once(
    config, straight, tmp_path, env
):
    workdir = tmp_path / "killed"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(
            _train_command(workdir), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
        )
        killed_at = _kill_after_a_checkpoint(process, workdir)
    assert killed_at < END, "the killed run outpaced the test"

    train_and_evaluate(config, workdir, stop_at=END)

    _assert_same_params(_params(workdir, config), _params(straight, config))
    losses = _train_losses(workdir)
    assert sorted(losses) == list(range(1, END + 1))
    assert losses == _train_losses(straight)
    events = tensorboard_scalars(workdir)
    assert set(events.values()) == {1}
    assert sorted(step for tag, step, _ in events if tag == "train/g_l1") == sorted(losses)
