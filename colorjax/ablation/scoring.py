"""What the cells are scored on, and the scoring.

An ``EvalPlan`` is a list of eval sets (``EvalSet``: all test images of a source, or the split
training holds out of it) and of evaluation-time variants (``Variant``: render size,
annealed-mean temperature), none of which needs retraining. Every cell is scored on each set at
each variant that applies to it: the temperature only to classification-head cells, so a
regression cell is scored once per render size. ``CellEvaluator`` loads each set's images (and
scores their gray baseline) once for the whole grid, each cell's model once, and colorizes a
set once per variant.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from colorjax.ablation.grid import Cell
from colorjax.ablation.status import say
from colorjax.ablation.types import EVAL, EvalPlan, EvalSet, Variant
from colorjax.config import Config

SAMPLES_DIR = "eval_samples"  # <workdir>/eval_samples/<set>__<variant>.npz
SAMPLE_IMAGES = 4  # eval images shown per cell and set in samples.png
THUMBNAIL = 128  # pixels, square
NAME_PATTERN = r"[A-Za-z0-9._+-]+"


def eval_set(text: str, split: str, config: Config, limit: int | None = None) -> EvalSet:
    """The set ``[NAME=]SOURCE`` (``data.source`` form) of ``split``, held out by ``config``'s
    ``data.eval_fraction``; named by the source's folder or dataset (a mix: the names joined
    by ``+``) unless NAME is given. A bad source or a missing folder is a ValueError."""
    from colorjax import data

    name, sep, source = text.partition("=")
    if not (sep and re.fullmatch(NAME_PATTERN, name)):
        name, source = "", text
    source = source.strip()
    sources = data.parse_mix(source)
    for item in sources:
        scheme, argument = data.parse_source(item.spec)
        if scheme == "folder" and not Path(argument).expanduser().is_dir():
            raise ValueError(f"{argument} is not a folder")
    return EvalSet(
        name or "+".join(s.name for s in sources),
        source,
        split,
        eval_fraction=config.data.eval_fraction,
        data_dir=config.data.data_dir or None,
        limit=limit,
    )


def training_eval_set(config: Config, limit: int | None = None) -> EvalSet:
    """The split training holds out of its own source (the default eval set)."""
    return eval_set(config.data.source, EVAL, config, limit)


def check_held_out_sets(plan: EvalPlan, cells: Sequence[Cell]) -> None:
    """A held-out set is one split for the whole grid: refuse it when the cells hold out
    different shares (a grid over ``data.eval_fraction``)."""
    fractions = {cell.config.data.eval_fraction for cell in cells}
    held_out = [s.name for s in plan.sets if s.split == EVAL]
    if held_out and len(fractions) > 1:
        raise ValueError(
            f"eval set(s) {', '.join(held_out)} are held-out splits, but the cells hold out "
            f"different shares (data.eval_fraction {', '.join(map(str, sorted(fractions)))})"
        )


def samples_path(workdir: Path, eval_set: EvalSet, variant: Variant) -> Path:
    """Where a cell keeps its sample thumbnails of ``eval_set`` at ``variant``."""
    return Path(workdir) / SAMPLES_DIR / f"{eval_set.name}__{variant.key}.npz"


def thumbnails(images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [N, THUMBNAIL, THUMBNAIL, 3]: the central square of each image, resized."""
    size = (THUMBNAIL, THUMBNAIL)
    return np.stack(
        [
            np.asarray(ImageOps.fit(Image.fromarray(im), size, Image.Resampling.LANCZOS))
            for im in images
        ]
    )


@dataclasses.dataclass
class SetReference:
    """An eval set's images with what does not depend on the model: the per-image ground-truth
    metrics, the mean gray baseline and ground truth, the sample thumbnails."""

    images: list[tuple[str, np.ndarray]]
    truths: list[dict[str, float]]
    gray: dict[str, float]
    ground_truth: dict[str, float]
    samples: dict[str, np.ndarray]  # names, gray, truth

    @classmethod
    def of(cls, eval_set: EvalSet) -> SetReference:
        from colorjax import evaluation

        images = eval_set.load()
        gray = [evaluation.gray_baseline(rgb) for _, rgb in images]
        scored = evaluation.score({evaluation.GRAY: gray}, images)
        shown = slice(0, SAMPLE_IMAGES)
        return cls(
            images,
            [entry[evaluation.GROUND_TRUTH] for entry in scored["images"]],
            scored["mean"][evaluation.GRAY],
            scored[evaluation.GROUND_TRUTH],
            {
                "names": np.array([name for name, _ in images[shown]]),
                "gray": thumbnails(gray[shown]),
                "truth": thumbnails([rgb for _, rgb in images[shown]]),
            },
        )


class CellEvaluator:
    """Scores trained cells (latest checkpoint) on ``plan``'s sets and variants with
    ``evaluation``'s per-image metrics; ``say`` gets a progress line per set and variant."""

    def __init__(self, plan: EvalPlan, say: Callable[[str], None] = say):
        self.plan = plan
        self.say = say
        self._references: dict[str, SetReference] = {}

    def reference(self, eval_set: EvalSet) -> SetReference:
        """``eval_set``'s images and gray baseline, prepared when first needed; a set that
        cannot be read is a ValueError naming it."""
        if eval_set.name not in self._references:
            try:
                self._references[eval_set.name] = SetReference.of(eval_set)
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"eval set {eval_set.name} ({eval_set.describe()}): {err}"
                ) from err
        return self._references[eval_set.name]

    def pairs(self, cell: Cell) -> list[tuple[EvalSet, Variant]]:
        return self.plan.pairs(cell)

    def prepare(self) -> None:
        """Load every set now, so an unreadable one is reported before any training."""
        for eval_set in self.plan.sets:
            self.reference(eval_set)

    def __call__(
        self, cell: Cell, todo: Sequence[tuple[EvalSet, Variant]]
    ) -> Iterator[tuple[EvalSet, Variant, dict[str, Any]]]:
        """(set, variant, scores) of each of ``todo``, as each is done; also saves the
        sample thumbnails. The cell's model is loaded once."""
        from colorjax import inference

        if not todo:
            return
        colorizer = inference.load_workdir(cell.workdir)
        for eval_set, variant in todo:
            reference = self.reference(eval_set)
            decoder = colorizer.with_temperature(variant.temperature)
            scores, outputs = self.score(decoder, reference, variant)
            np.savez_compressed(
                _make_parent(samples_path(cell.workdir, eval_set, variant)),
                prediction=thumbnails(outputs[:SAMPLE_IMAGES]),
                **reference.samples,
            )
            count, seconds = scores["images"], scores["seconds"]
            self.say(
                f"  {cell.name}: {eval_set.name}, {variant.label}: {count} images in "
                f"{seconds:.1f} s ({count / seconds:.2f} images/s)"
            )
            yield eval_set, variant, scores

    def score(
        self, colorizer, reference: SetReference, variant: Variant
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """The scores of the set colorized once at ``variant``, and the outputs."""
        from colorjax import evaluation, metrics

        start = time.perf_counter()
        photos = [rgb for _, rgb in reference.images]
        outputs = colorizer.colorize_many(photos, render_size=variant.render_size)
        per_image = evaluation.method_scores(outputs, reference.images, reference.truths)
        scores = {
            "images": len(photos),
            "mean": metrics.mean_metrics(per_image),
            "gray": reference.gray,
            "ground_truth": reference.ground_truth,
            "render_size": variant.render_size or colorizer.render_size,
            "temperature": colorizer.model.temperature if colorizer.head.classification else None,
            "seconds": time.perf_counter() - start,
        }
        return scores, outputs


def _make_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
