"""The types every part of an ablation shares: the eval sets cells are scored on, the
evaluation-time variants, and the plan that pairs them."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from colorjax.ablation.grid import Cell

ALL, EVAL = "all", "eval"  # evaluation.SPLITS: every test image, or the held-out split
CLASSIFICATION = "classification"


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Images the cells are scored on (``evaluation.eval_images``): with split ``all`` every
    test image of ``source``, with ``eval`` only the split training holds out of it."""

    name: str  # short and unique in a plan; names the set's table and sample files
    source: str
    split: str
    eval_fraction: float
    data_dir: str | None = None
    limit: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load(self) -> list[tuple[str, np.ndarray]]:
        """(name, uint8 RGB) of the set's images, photos with a gray ground truth left out."""
        from colorjax import evaluation

        images = evaluation.eval_images(
            self.source,
            split=self.split,
            eval_fraction=self.eval_fraction,
            data_dir=self.data_dir,
            limit=self.limit,
        )
        if not images:
            raise ValueError("no images")
        return images

    def describe(self) -> str:
        split = "held-out split of" if self.split == EVAL else "test images of"
        limit = f", first {self.limit}" if self.limit else ""
        return f"{split} `{self.source}`{limit}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """Evaluation-time settings of the colorizer; None: the model's own."""

    render_size: int | None = None
    temperature: float | None = None  # classification head only

    @property
    def key(self) -> str:
        """Stable text naming the variant in ``cell.json`` and in file names."""
        render = "default" if self.render_size is None else self.render_size
        temperature = "default" if self.temperature is None else repr(self.temperature)
        return f"render={render}__T={temperature}"

    @property
    def label(self) -> str:
        parts = [f"render {self.render_size}"] if self.render_size is not None else []
        parts += [f"T {self.temperature:g}"] if self.temperature is not None else []
        return ", ".join(parts) or "model defaults"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def variants(
    render_sizes: Sequence[int] = (), temperatures: Sequence[float] = ()
) -> tuple[Variant, ...]:
    """Every render size with every temperature (an empty list: the model's own)."""
    temperatures = [float(t) for t in temperatures] or [None]
    return tuple(
        Variant(render, temperature)
        for render, temperature in itertools.product(render_sizes or [None], temperatures)
    )


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    """The eval sets and variants every cell is scored on."""

    sets: tuple[EvalSet, ...]
    variants: tuple[Variant, ...] = (Variant(),)

    def __post_init__(self):
        if not self.sets:
            raise ValueError("an evaluation plan needs at least one eval set")
        names = [s.name for s in self.sets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"two eval sets are named {', '.join(repeated)}; name them NAME=SOURCE"
            )
        if len(set(self.variants)) < len(self.variants):
            raise ValueError("an evaluation variant is given twice")

    @property
    def shows_render_size(self) -> bool:
        return any(v.render_size is not None for v in self.variants)

    @property
    def shows_temperature(self) -> bool:
        return any(v.temperature is not None for v in self.variants)

    def variants_for(self, cell: Cell) -> list[Variant]:
        """The variants that apply to ``cell``: without temperatures for a regression head."""
        if cell.config.model.head == CLASSIFICATION:
            return list(self.variants)
        plain = (dataclasses.replace(v, temperature=None) for v in self.variants)
        return list(dict.fromkeys(plain))

    def pairs(self, cell: Cell) -> list[tuple[EvalSet, Variant]]:
        """Every (set, variant) ``cell`` is scored on, set by set."""
        return [(s, v) for s in self.sets for v in self.variants_for(cell)]

    def describe(self) -> str:
        lines = [f"eval set {s.name}: {s.describe()}" for s in self.sets]
        return "\n".join([*lines, f"variants: {'; '.join(v.label for v in self.variants)}"])
