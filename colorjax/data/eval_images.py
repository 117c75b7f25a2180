"""Held-out images at full resolution or as validation crops, for validation and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from colorjax.data.pipeline import Catalog, load_catalogs, split_mask
from colorjax.data.scan import EVAL
from colorjax.data.sources import parse_mix, parse_source, sample_dir
from colorjax.data.streams import taking_turns
from colorjax.data.transforms import crop_region, resize_center_crop
from colorjax.imaging import decoding


def _file_root(source: str) -> Path | None:
    """The folder a file source's image names are relative to; None for TFDS."""
    scheme, argument = parse_source(source)
    if scheme == "sample":
        return sample_dir()
    return Path(argument).expanduser() if scheme == "folder" else None


def _decode_positions(catalog: Catalog, positions: Sequence[int]) -> list[np.ndarray]:
    """The decoded images of the catalog items at ``positions`` (ascending)."""
    if catalog.records is None:
        return [decoding.load_image(catalog.items[p].key) for p in positions]
    wanted = set(positions)
    records = catalog.records.take(max(positions, default=-1) + 1).as_numpy_iterator()
    return [
        decoding.decode_image(data, catalog.items[p].key)
        for p, data in enumerate(records)
        if p in wanted
    ]


def _eval_view(image: np.ndarray, region: tuple[float, ...], size: int | None) -> np.ndarray:
    """``region`` of a decoded image at native size, or its validation view at ``size``."""
    view = crop_region(tf.constant(image), tf.constant(region, tf.float32))
    if size is not None:
        view = tf.round(tf.clip_by_value(resize_center_crop(view, size), 0.0, 255.0))
    return np.ascontiguousarray(tf.cast(view, tf.uint8).numpy())


def _source_eval_images(
    source: str, catalog: Catalog, size: int | None, limit: int | None, skip_gray: bool
) -> list[tuple[str, np.ndarray]]:
    keep, _ = split_mask(source, catalog, EVAL, skip_gray=skip_gray)
    positions = np.flatnonzero(keep)[:limit].tolist()
    root = _file_root(source)
    named = []
    for position, image in zip(positions, _decode_positions(catalog, positions), strict=True):
        item = catalog.items[position]
        name = Path(item.key).relative_to(root).as_posix() if root else item.key
        named.append((name, _eval_view(image, item.region, size)))
    return named


def eval_split_images(
    source: str,
    *,
    eval_fraction: float = 0.1,
    data_dir: str | None = None,
    size: int | None = None,
    limit: int | None = None,
    whole_plain_folders: bool = False,
    skip_gray: bool = False,
) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB [H, W, 3]) of the usable images of ``source``'s eval split.

    The split is the one ``build_pipeline(train=False)`` reads, gray images included unless
    ``skip_gray``; skipped files are counted in the logged scan summary. Each image is the whole
    decoded photo (``sample``: its held-out region) at native size or, with ``size``, the view
    validation uses: shorter side resized to ``size``, central square. ``limit`` keeps the first
    images in catalog order (of each source). Names: paths relative to the folder (``sample``:
    file names), or the TFDS keys ``NAME:SPLIT#i``; in a mix prefixed with the source's name
    (``CBSD432/101085.jpg``), the sources taking turns. ``whole_plain_folders``: a folder
    without train/ and eval/ sub-folders gives all its images (a test set, not a split).
    """
    sources = parse_mix(source)
    catalogs = load_catalogs(
        sources,
        train=False,
        eval_fraction=eval_fraction,
        data_dir=data_dir,
        whole_plain_folders=whole_plain_folders,
    )
    named = [
        _source_eval_images(s.spec, catalog, size, limit, skip_gray)
        for s, catalog in zip(sources, catalogs, strict=True)
    ]
    if len(sources) == 1:
        return named[0]
    prefixed = [
        [(f"{s.name}/{name}", image) for name, image in images]
        for s, images in zip(sources, named, strict=True)
    ]
    return taking_turns(prefixed)
