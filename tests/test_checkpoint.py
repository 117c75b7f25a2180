"""Checkpoints on real files: damaged steps set aside, the best one across restarts, failed
writes, leftovers of interrupted saves."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import fail_last_checkpoint_write, truncate_largest_file

from colorjax.config import Config, apply_overrides
from colorjax.training.checkpoint import (
    DAMAGED_DIR,
    PARTIAL_SUFFIX,
    Checkpoints,
    CheckpointWriteError,
    DamagedCheckpointError,
    NoRestorableCheckpointError,
)

CONFIG = apply_overrides(Config(), ["ckpt.keep=5"])


def _state(step: int) -> dict[str, np.ndarray]:
    """A state with enough (incompressible) data that its array fills a file of its own."""
    weights = np.random.default_rng(step).standard_normal((64, 64)).astype(np.float32)
    return {"w": weights, "step": np.int32(step)}


def _saved(directory: Path, steps=(1, 2, 3), metrics=None, config=CONFIG) -> Checkpoints:
    checkpoints = Checkpoints(directory, config.ckpt, writer=True)
    for step in steps:
        checkpoints.save(step, _state(step), config, (metrics or {}).get(step))
    return checkpoints


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*")}


@pytest.mark.parametrize("damage", ["truncate", "delete_metadata", "garble_metadata"])
def test_a_damaged_latest_is_moved_aside_and_the_previous_one_restores(tmp_path, damage):
    checkpoints = _saved(tmp_path)
    latest = tmp_path / "3"
    if damage == "truncate":
        truncate_largest_file(latest)
    elif damage == "delete_metadata":
        (latest / "state" / "_METADATA").unlink()
    else:
        (latest / "state" / "_METADATA").write_text('{"tree_metadata": {')
    files_before = _files(latest)

    restored = checkpoints.restore_newest()

    assert restored.step == 2
    np.testing.assert_array_equal(restored.state["w"], _state(2)["w"])
    [damage_record] = restored.damaged
    assert damage_record.step == 3 and damage_record.reason
    assert damage_record.moved_to == tmp_path / DAMAGED_DIR / "3"
    assert _files(damage_record.moved_to) == files_before  # moved whole, nothing deleted
    assert checkpoints.all_steps() == [1, 2]  # the manager re-read the folder
    assert Checkpoints(tmp_path, CONFIG.ckpt).all_steps() == [1, 2]
    note = restored.fallback_note("resumed from")
    assert note.count("\n") == 0
    assert "checkpoint 3 is damaged" in note and note.endswith("resumed from step 2")


def test_a_step_damaged_again_gets_a_fresh_name_and_is_never_moved_twice(tmp_path):
    checkpoints = _saved(tmp_path, steps=(1, 2))
    truncate_largest_file(tmp_path / "2")
    first = checkpoints.restore_newest().damaged[0].moved_to
    checkpoints.save(2, _state(2), CONFIG)  # the resumed run reaches step 2 again
    truncate_largest_file(tmp_path / "2")
    second = checkpoints.restore_newest().damaged[0].moved_to
    assert (first.name, second.name) == ("2", "2.1")
    assert first.is_dir() and second.is_dir()
    assert checkpoints.restore_newest().damaged == []  # damaged/ is never looked at again


def test_when_none_restores_the_error_names_them_and_nothing_moves(tmp_path):
    checkpoints = _saved(tmp_path, steps=(1, 2))
    for step in (1, 2):
        (tmp_path / str(step) / "state" / "_METADATA").unlink()
    before = _files(tmp_path)
    with pytest.raises(NoRestorableCheckpointError, match=r"step 2: .*; step 1: .*Nothing"):
        checkpoints.restore_newest()
    assert _files(tmp_path) == before


def test_a_reader_falls_back_without_moving_and_a_requested_damaged_step_is_an_error(tmp_path):
    _saved(tmp_path).close()
    truncate_largest_file(tmp_path / "3")
    before = _files(tmp_path)
    reader = Checkpoints(tmp_path, CONFIG.ckpt)
    restored = reader.restore_newest()
    assert restored.step == 2 and restored.damaged[0].moved_to is None
    with pytest.raises(DamagedCheckpointError, match=r"checkpoint 3 .* does not restore"):
        reader.restore(step=3)
    assert _files(tmp_path) == before


def test_the_best_checkpoint_survives_a_restart_and_falls_back_to_the_next_best(tmp_path):
    config = apply_overrides(Config(), ["ckpt.keep=1"])
    metrics = {1: {"psnr": 30.0}, 2: {"psnr": 20.0}, 3: {"psnr": 25.0}}
    _saved(tmp_path, metrics=metrics, config=config).close()
    reader = Checkpoints(tmp_path, config.ckpt)
    assert reader.all_steps() == [1, 3]  # keep=1 latest plus the best
    assert reader.best_step() == 1
    resumed = Checkpoints(tmp_path, config.ckpt, writer=True)
    resumed.save(4, _state(4), config, {"psnr": 22.0})  # after a restart, not the best
    assert resumed.all_steps() == [1, 4] and resumed.best_step() == 1
    reader.manager.reload()
    truncate_largest_file(tmp_path / "1")
    restored = reader.restore_newest(best=True)
    assert restored.step == 4 and [d.step for d in restored.damaged] == [1]


def test_an_unreadable_metrics_file_only_costs_the_best_ranking(tmp_path):
    _saved(tmp_path, metrics={1: {"psnr": 30.0}, 2: {"psnr": 20.0}}, steps=(1, 2)).close()
    (tmp_path / "1" / "metrics" / "metrics").write_text('{"psn')
    with pytest.warns(UserWarning, match="unreadable metrics"):
        reader = Checkpoints(tmp_path, CONFIG.ckpt)
    assert reader.best_step() == 2
    np.testing.assert_array_equal(reader.restore(step=1)["w"], _state(1)["w"])


def test_a_full_disk_during_a_save_stops_clearly_and_keeps_earlier_checkpoints(
    tmp_path, monkeypatch
):
    checkpoints = _saved(tmp_path, steps=(1, 2))
    written: list[Path] = []
    fail_last_checkpoint_write(monkeypatch, tmp_path, written)

    with pytest.raises(CheckpointWriteError) as caught:
        checkpoints.save(3, _state(3), CONFIG)

    message = str(caught.value)
    assert "checkpoint 3" in message and str(tmp_path) in message
    assert "No space left on device" in message and " free on the disk" in message
    assert "resumes from step 2" in message
    partial = tmp_path / f"3{PARTIAL_SUFFIX}"
    assert any(partial in p.parents and p.parent.name == "d" for p in written)  # array data
    monkeypatch.undo()
    checkpoints.close()
    reader = Checkpoints(tmp_path, CONFIG.ckpt)
    assert reader.all_steps() == [1, 2]  # the half-written step is not one
    np.testing.assert_array_equal(reader.restore()["w"], _state(2)["w"])
    Checkpoints(tmp_path, CONFIG.ckpt, writer=True).close()
    assert not partial.exists()  # the next writer removed it


def test_a_save_interrupted_by_a_kill_is_never_listed_and_the_next_writer_clears_it(tmp_path):
    _saved(tmp_path, steps=(1, 2)).close()
    leftover = tmp_path / f"3{PARTIAL_SUFFIX}"
    shutil.copytree(tmp_path / "2", leftover)  # what a kill -9 during rename-less save leaves
    assert Checkpoints(tmp_path, CONFIG.ckpt).all_steps() == [1, 2]
    assert leftover.exists()  # readers change nothing
    writer = Checkpoints(tmp_path, CONFIG.ckpt, writer=True)
    writer.close()
    assert not leftover.exists() and writer.all_steps() == [1, 2]
