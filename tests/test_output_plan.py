"""Output paths are planned up front: one per input; existing files and inputs are kept."""

import os
from pathlib import Path

import numpy as np
import pytest

from colorjax.imaging.output_plan import Source, find_inputs, output_names, plan_outputs


def _touch(root: Path, *names: str) -> list[Path]:
    paths = [root / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return paths


def _names(root: Path, patterns: list[str], suffix: str = ".png") -> list[str]:
    sources = find_inputs([str(root / p) for p in patterns])
    return [name.as_posix() for name in output_names(sources, suffix)]


def test_same_names_keep_their_folders_then_their_extension(tmp_path):
    _touch(tmp_path, "a/x.jpg", "b/x.jpg", "b/x.png", "b/y.jpg")
    patterns = ["a/x.jpg", "b/x.jpg", "b/x.png", "b/y.jpg"]
    assert _names(tmp_path, patterns) == ["a/x.png", "b/x_jpg.png", "b/x_png.png", "y.png"]


def test_one_folder_with_x_jpg_and_x_png(tmp_path):
    _touch(tmp_path, "scans/x.jpg", "scans/x.png", "scans/1920/x.jpg", "scans/1920/x.tif")
    expected = ["1920/x_jpg.png", "1920/x_tif.png", "x_jpg.png", "x_png.png"]
    assert _names(tmp_path, ["scans"]) == expected


def test_names_are_distinct_in_any_mix_of_inputs(tmp_path):
    rng = np.random.default_rng(0)
    folders, stems, suffixes = (
        ["", "a", "b", "a/b", "B"],
        ["x", "X", "x_jpg", "y"],
        [".jpg", ".png"],
    )
    relative = {
        os.path.join(rng.choice(folders), rng.choice(stems) + rng.choice(suffixes))
        for _ in range(60)
    }
    paths = _touch(tmp_path, *sorted(relative))
    for patterns in (
        [str(tmp_path)],
        [str(p) for p in paths],
        [str(tmp_path / "a"), *map(str, paths)],
    ):
        names = output_names(find_inputs(patterns), ".png")
        assert len({str(n).casefold() for n in names}) == len(names)
        assert all(n.suffix == ".png" for n in names)


def test_inputs_are_found_once_and_a_missing_one_is_an_error(tmp_path):
    _touch(tmp_path, "a/x.jpg", "a/notes.txt", "a/y.png")
    sources = find_inputs(
        [str(tmp_path / "a"), str(tmp_path / "a/x.jpg"), str(tmp_path / "a/*.png")]
    )
    assert [s.path.name for s in sources] == ["x.jpg", "y.png"]
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        find_inputs([str(tmp_path / "nothing_here")])


def test_plan_keeps_existing_files_and_inputs(tmp_path):
    photo, other = _touch(tmp_path, "in/x.jpg", "in/y.jpg")
    _touch(tmp_path, "out/y.png")
    sources = [Source(photo, Path("x.jpg")), Source(other, Path("y.jpg"))]
    plan = plan_outputs(sources, tmp_path / "out", ".png", overwrite=False)
    assert [job.target.name for job in plan.jobs] == ["x.png"]
    assert plan.skipped[0].path == other and "--overwrite" in plan.skipped[0].reason
    assert len(plan_outputs(sources, tmp_path / "out", ".png", overwrite=True).jobs) == 2
    plan = plan_outputs(sources, tmp_path / "in", ".jpg", overwrite=True)
    assert not plan.jobs and all("overwrite an input" in s.reason for s in plan.skipped)
    with pytest.raises(NotADirectoryError, match=r"x\.jpg"):
        plan_outputs(sources, photo, ".png", overwrite=False)
