"""Evaluate colorizers on whole photos: per-image metrics, their means, a table and a grid.

    images = eval_images("folder:/data/CBSD68")  # or eval_images("folder:/data/x", split="eval")
    outputs = colorize_all({"demo": inference.load_workdir("runs/demo")}, images)
    results = score(outputs, images)  # evaluate(methods, images) does both steps
    print(markdown_table(results))
    write_results(results, Path("eval/results.json"), grid_from_outputs(outputs, images))

Every report includes the zero-chroma baseline ``gray``: the ground truth's own L with
a = b = 0, made the way a colorizer's output is. Colorizers keep the input's L, so their output
is compared with the ground truth directly (metrics.py, on RGB in [0, 1]); besides those metrics,
``colorfulness_diff`` is the output's colorfulness minus the ground truth's. ``tint`` and
``blob`` (metrics.py) are lower-is-better; the ground truth's own tint (the chroma left in its
neutral areas) is reported beside, as a reference rather than a target.

Results::

    {"mean": {method: {metric: value}},
     "ground_truth": {"colorfulness": .., "mean_a": .., "mean_b": .., "tint": ..},
     "images": [{"name": .., "ground_truth": {..}, method: {metric: value}, ...}]}

In memory the values are floats: an output identical to the ground truth has PSNR ``inf``, and
the chroma ratio against a gray ground truth and the tint of a photo without neutral areas are
``nan``; means leave such values out. In JSON
they are written as the strings "inf", "-inf" and "nan" (``float()`` reads them back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colorjax import data, inference, metrics

GRAY = "gray"
GROUND_TRUTH = "ground_truth"
RESERVED_NAMES = (GRAY, GROUND_TRUTH, "name")
METRICS = (
    "psnr",
    "ssim",
    "colorfulness",
    "colorfulness_diff",
    "chroma_ratio",
    "ab_hist_intersection",
    "ciede2000",
    "mean_a",
    "mean_b",
    "tint",
    "blob",
)
GROUND_TRUTH_METRICS = ("colorfulness", "mean_a", "mean_b", "tint")
MAX, MIN, MATCH_TRUTH = "max", "min", "ground truth"
# What "best" means per metric: highest, lowest, closest to the ground truth's or to a number.
GOALS: dict[str, str | float] = {
    "psnr": MAX,
    "ssim": MAX,
    "colorfulness": MATCH_TRUTH,
    "colorfulness_diff": 0.0,
    "chroma_ratio": 1.0,
    "ab_hist_intersection": MAX,
    "ciede2000": MIN,
    "mean_a": MATCH_TRUTH,
    "mean_b": MATCH_TRUTH,
    "tint": MIN,  # the truth's own tint is noise below metrics.NEUTRAL_CHROMA, not a target
    "blob": MIN,
}
GRID_HEIGHT = 160
ALL, EVAL = "all", "eval"
SPLITS = (ALL, EVAL)

Images = Sequence[tuple[str, np.ndarray]]  # (name, uint8 RGB [H, W, 3])


def eval_images(
    source: str,
    *,
    split: str = ALL,
    data_dir: str | None = None,
    eval_fraction: float = 0.1,
    size: int | None = None,
    limit: int | None = None,
    skip_gray: bool = True,
) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) of the test images of ``source``, at native size by default.

    A folder with train/ and eval/ (or val/) sub-folders gives its eval images. Any other
    folder is, with ``split="all"``, all test, every image evaluated; with ``split="eval"``
    only the eval split training holds out of it (the hash rule with ``eval_fraction``, the
    run's ``data.eval_fraction``). ``sample`` gives each photo's held-out region, TFDS its eval
    split (``eval_fraction``: the share carved out of a train-only dataset, as in training),
    whatever ``split``. A mix (``data.source`` form) gives the images of all its sources, named
    ``<source>/<image>``, the sources taking turns; ``limit`` keeps the first images of each
    source. ``size``: the validation view, shorter side resized to ``size`` and the central
    square cut. Undecodable files, and with ``skip_gray`` photos whose ground truth is
    grayscale (no colours to score against; the gray baseline would be exact on them), are
    skipped and counted in one logged warning.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    return data.eval_split_images(
        source,
        eval_fraction=eval_fraction,
        data_dir=data_dir,
        size=size,
        limit=limit,
        whole_plain_folders=split == ALL,
        skip_gray=skip_gray,
    )


def method_names(paths: Sequence[str | Path]) -> list[str]:
    """Methods named by their folder's name; repeats and reserved names get "-2", "-3"..."""
    names: list[str] = []
    taken = set(RESERVED_NAMES)
    for path in paths:
        base = Path(path).resolve().name
        name, count = base, 1
        while name in taken:
            count += 1
            name = f"{base}-{count}"
        taken.add(name)
        names.append(name)
    return names


# ----------------------------------------------------------------------------- scoring


def gray_baseline(rgb: np.ndarray) -> np.ndarray:
    """The zero-chroma image of a uint8 RGB photo: its L with a = b = 0, as uint8 RGB."""
    lightness = inference.full_resolution_l(rgb)
    return inference.recombine(lightness, np.zeros((*lightness.shape, 2), np.float32))


def colorize_all(
    methods: Mapping[str, inference.Colorizer], images: Images, *, render_size: int | None = None
) -> dict[str, list[np.ndarray]]:
    """uint8 RGB outputs of ``gray`` (first) and of every method, in the order of ``images``."""
    clashing = sorted(set(methods) & set(RESERVED_NAMES))
    if clashing:
        raise ValueError(f"method names {clashing} are reserved ({', '.join(RESERVED_NAMES)})")
    photos = [rgb for _, rgb in images]
    outputs = {GRAY: [gray_baseline(rgb) for rgb in photos]}
    for name, colorizer in methods.items():
        outputs[name] = colorizer.colorize_many(photos, render_size=render_size)
    return outputs


def ground_truth_metrics(target: np.ndarray) -> dict[str, float]:
    """Colorfulness, mean a*, b* and the own tint of a ground-truth image in [0, 1]."""
    mean_a, mean_b = metrics.mean_ab(target)
    return {
        "colorfulness": metrics.colorfulness(target),
        "mean_a": mean_a,
        "mean_b": mean_b,
        "tint": metrics.tint(target, target),
    }


def method_metrics(
    prediction: np.ndarray, target: np.ndarray, truth: Mapping[str, float]
) -> dict[str, float]:
    """``METRICS`` of one output against its ground truth (images in [0, 1]); ``truth`` is
    the ground truth's ``ground_truth_metrics``."""
    values = metrics.image_metrics(prediction, target)
    values["colorfulness_diff"] = values["colorfulness"] - truth["colorfulness"]
    return {key: values[key] for key in METRICS}


def method_scores(
    outputs: Sequence[np.ndarray], images: Images, truths: Sequence[Mapping[str, float]]
) -> list[dict[str, float]]:
    """``method_metrics`` of one method's uint8 ``outputs`` against ``images``, whose
    ``ground_truth_metrics`` are ``truths`` (computed once for every method scored on them)."""
    return [
        method_metrics(output / 255.0, rgb / 255.0, truth)
        for output, (_, rgb), truth in zip(outputs, images, truths, strict=True)
    ]


def score(outputs: Mapping[str, Sequence[np.ndarray]], images: Images) -> dict:
    """The results structure (module docstring) of outputs from ``colorize_all``."""
    truths = [ground_truth_metrics(rgb / 255.0) for _, rgb in images]
    scores = {method: method_scores(outs, images, truths) for method, outs in outputs.items()}
    per_image: list[dict[str, Any]] = [
        {"name": name, GROUND_TRUTH: truth, **{m: scores[m][i] for m in outputs}}
        for i, ((name, _), truth) in enumerate(zip(images, truths, strict=True))
    ]
    return {
        "mean": {m: metrics.mean_metrics([entry[m] for entry in per_image]) for m in outputs},
        GROUND_TRUTH: metrics.mean_metrics([e[GROUND_TRUTH] for e in per_image]),
        "images": per_image,
    }


def evaluate(
    methods: Mapping[str, inference.Colorizer], images: Images, *, render_size: int | None = None
) -> dict:
    """Colorize ``images`` with every method and the gray baseline, and score the outputs."""
    return score(colorize_all(methods, images, render_size=render_size), images)
