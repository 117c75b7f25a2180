"""Run logs after a resume: each step once in metrics.jsonl and in the TensorBoard events."""

import json
import os
from pathlib import Path

from conftest import tensorboard_scalars

from colorjax.ablation import read_losses
from colorjax.training.progress import Reporter, drop_rows_after


def _reporter(workdir: Path, start: int) -> Reporter:
    return Reporter(workdir, total_steps=10, start_step=start, batch_size=1)


def _log(reporter: Reporter, steps: range, scale: float = 1.0) -> None:
    for step in steps:
        reporter.scalars(step, {"g_l1": scale * step})
        if step % 4 == 0:
            reporter.scalars(step, {"psnr": 20.0 + step}, prefix="val")


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_run_logs_each_step_once_in_jsonl_and_tensorboard(tmp_path):
    dead = _reporter(tmp_path, 0)
    _log(dead, range(1, 8), scale=-1.0)  # the run dies at step 7 ...
    dead.close()
    with (tmp_path / "metrics.jsonl").open("a") as jsonl:
        jsonl.write('{"step": 8, "split": "tr')  # ... in the middle of a line,
    [event_file] = (tmp_path / "tensorboard").iterdir()
    os.truncate(event_file, 200)  # ... before its buffered events reached the disk,
    resumed = _reporter(tmp_path, 4)  # ... and its last checkpoint was step 4.
    resumed.scalars(4, {"psnr": 0.0}, prefix="val")  # already logged at step 4: not again
    resumed.scalars(4, {"psnr": 20.0}, prefix="gray_baseline")
    _log(resumed, range(5, 11))
    resumed.close()

    rows = _rows(tmp_path)
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys))
    train = {r["step"]: r["g_l1"] for r in rows if r["split"] == "train"}
    assert train == {s: (-s if s <= 4 else s) for s in range(1, 11)}
    assert [r["psnr"] for r in rows if r["split"] == "val"] == [24.0, 28.0]
    events = tensorboard_scalars(tmp_path)
    assert set(events.values()) == {1}
    assert {(s, v) for tag, s, v in events if tag == "train/g_l1"} == set(train.items())
    assert {(s, v) for tag, s, v in events if tag == "val/psnr"} == {(4, 24.0), (8, 28.0)}
    steps, values = read_losses(tmp_path)["g_l1"]
    assert list(steps) == sorted(steps) and list(values[:4]) == [-1, -2, -3, -4]


def test_without_metrics_jsonl_the_events_are_left_alone(tmp_path):
    first = _reporter(tmp_path, 0)
    _log(first, range(1, 4))
    first.close()
    (tmp_path / "metrics.jsonl").unlink()
    _reporter(tmp_path, 2).close()
    assert {s for tag, s, _ in tensorboard_scalars(tmp_path) if tag == "train/g_l1"} == {1, 2, 3}


def test_rows_are_kept_up_to_the_step_and_the_file_is_untouched_without_need(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "split": "train"}) + "\n" for s in (1, 2, 3)))
    before = path.stat().st_mtime_ns
    kept, dropped = drop_rows_after(path, 3)
    assert ([r["step"] for r in kept], dropped) == ([1, 2, 3], 0)
    assert path.stat().st_mtime_ns == before
    kept, dropped = drop_rows_after(path, 1)
    assert ([r["step"] for r in kept], dropped) == ([1], 2)
    assert [r["step"] for r in _rows(tmp_path)] == [1]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
