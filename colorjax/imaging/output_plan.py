"""Where each colorized photo goes, decided for all inputs before anything is written.

    plan = plan_outputs(find_inputs(["old/", "a/x.jpg", "scans/*.tif"]), Path("out"), ".png")
    plan.jobs     # [Job(source, target)], every target distinct
    plan.skipped  # [Skipped(path, reason)]: targets that exist (without overwrite), inputs

A file inside a folder input keeps its path below that folder; any other file keeps its name;
the suffix becomes the output format's. Inputs whose outputs would still coincide (names
compared without case) keep their folders, up to the deepest folder they share, and where
that is not enough their extension in the name, then a number:
``a/x.jpg b/x.jpg b/x.png`` -> ``a/x.png b/x_jpg.png b/x_png.png``.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Sequence
from pathlib import Path

from colorjax.imaging.decoding import IMAGE_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Source:
    """An input file and its output name below the output folder (before the new suffix)."""

    path: Path
    name: Path


@dataclasses.dataclass(frozen=True)
class Job:
    """One photo to colorize: read ``source``, write ``target``."""

    source: Path
    target: Path


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input that produced no output, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclasses.dataclass
class Plan:
    """Outputs to write, and the inputs left out before any work."""

    jobs: list[Job]
    skipped: list[Skipped]


def find_inputs(patterns: Sequence[str]) -> list[Source]:
    """Every image file named by ``patterns`` (files, folders searched recursively, globs),
    once each, in order; a pattern that names nothing is an error."""
    found: list[Source] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            found += [Source(p, p.relative_to(path)) for p in files if p.is_file()]
        elif path.is_file():
            found.append(Source(path, Path(path.name)))
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no such file, folder or matching glob: {pattern}")
            found += [Source(p, Path(p.name)) for p in matches if p.is_file()]
    seen: set[Path] = set()
    unique = []
    for source in found:
        if source.path.resolve() not in seen:
            seen.add(source.path.resolve())
            unique.append(source)
    return unique


@dataclasses.dataclass
class _Naming:
    """How much of its own path an output name uses: the last ``parts`` components, the
    input's extension in the stem, a counter."""

    path: Path
    parts: int
    extension: bool = False
    counter: int = 0

    def name(self, suffix: str) -> Path:
        tail = Path(*self.path.parts[-self.parts :])
        stem = tail.stem + (f"_{self.path.suffix[1:]}" if self.extension else "")
        stem += f"_{self.counter}" if self.counter else ""
        return tail.with_name(stem + suffix)


def _separate(group: list[_Naming]) -> None:
    """Lengthen the names of a group of colliding outputs: first by folders, up to the
    deepest one the inputs share, then by their extension, then by a counter."""
    shared = Path(os.path.commonpath([n.path.parent for n in group]))
    folders = [len(n.path.relative_to(shared).parts) for n in group]
    if any(n.parts < wanted for n, wanted in zip(group, folders, strict=True)):
        for naming, wanted in zip(group, folders, strict=True):
            naming.parts = max(naming.parts, wanted)
    elif not all(n.extension for n in group):
        for naming in group:
            naming.extension = True
    else:
        for number, naming in enumerate(group[1:], start=2):
            naming.counter = max(naming.counter + 1, number)


def output_names(sources: Sequence[Source], suffix: str) -> list[Path]:
    """A distinct output name (relative to the output folder) for every source."""
    namings = [_Naming(Path(os.path.abspath(s.path)), len(s.name.parts)) for s in sources]
    while True:
        groups: dict[str, list[_Naming]] = {}
        for naming in namings:
            groups.setdefault(str(naming.name(suffix)).casefold(), []).append(naming)
        colliding = [group for group in groups.values() if len(group) > 1]
        if not colliding:
            return [naming.name(suffix) for naming in namings]
        for group in colliding:
            _separate(group)


def plan_outputs(sources: Sequence[Source], out: Path, suffix: str, overwrite: bool) -> Plan:
    """A distinct target below ``out`` for every source; targets that exist are kept (the
    source is skipped) unless ``overwrite``, and an input is never a target."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} is a file")
    inputs = {source.path.resolve() for source in sources}
    jobs, skipped = [], []
    for source, name in zip(sources, output_names(sources, suffix), strict=True):
        target = out / name
        if target.resolve() in inputs:
            skipped.append(Skipped(source.path, f"{target} would overwrite an input"))
        elif target.exists() and not overwrite:
            skipped.append(Skipped(source.path, f"{target} exists (use --overwrite to replace)"))
        else:
            jobs.append(Job(source.path, target))
    return Plan(jobs, skipped)
