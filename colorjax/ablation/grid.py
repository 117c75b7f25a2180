"""The grid: cells (config values x seeds), their names and workdirs, and the checks that a grid
is valid and matches what its workdirs were trained with."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from colorjax.config import Config, ConfigError, differing_keys, load_json, set_key
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state

# Settings a cell may change between invocations without invalidating the ablation.
RESUMABLE_KEYS = ("train.steps", "log.", "ckpt.", "parallel.", "data.data_dir", "model.conv_impl")
MAX_NAME = 200  # characters of a cell's directory name


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

    for cell in {cell.combo: cell for cell in cells}.values():
        try:
            gan = build_gan(cell.config)
            size = cell.config.data.image_size
            jax.eval_shape(
                lambda key, gan=gan, size=size: init_state(gan, key, size),
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
