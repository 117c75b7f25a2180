"""Data sources and mixes: parsing ``sample``, ``folder:PATH``, ``tfds:NAME[:SPLIT]`` and
weighted comma lists, and each source's catalogue of train and eval items."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from colorjax.data.scan import EVAL, TRAIN, Item, Probe, probe_file, threaded_map
from colorjax.imaging import decoding

SOURCE_FORMS = ("sample", "folder:PATH", "tfds:NAME[:SPLIT]")


MIX_FORM = "a comma list of them, each with an optional *WEIGHT"


MIX_SEPARATOR, WEIGHT_MARK = ",", "*"


SAMPLE_FILES = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
)


SAMPLE_EVAL_FRACTION = 0.25  # sample source: the end of each photo's longer side is held out


EVAL_FOLDERS = ("eval", "val")


TFDS_EVAL_SPLITS = ("validation", "test")


def parse_source(source: str) -> tuple[str, str]:
    """``"folder:/x"`` -> ("folder", "/x"); an unknown scheme is a ValueError listing the forms."""
    scheme, _, argument = source.partition(":")
    if scheme == "sample" and not argument:
        return scheme, ""
    if scheme in ("folder", "tfds") and argument:
        return scheme, argument
    raise ValueError(
        f"unknown data source {source!r}; valid forms: {', '.join(SOURCE_FORMS)}, or {MIX_FORM}"
    )


@dataclasses.dataclass(frozen=True)
class Source:
    """One source of ``data.source``: as written (without its weight), its weight, its name."""

    spec: str  # e.g. "folder:/data/CBSD432"
    weight: float  # draws relative to an unweighted mix (module docstring)
    name: str  # unique within the mix: the folder's or dataset's name, "-2", "-3"... on repeats


def _mix_error(message: str, source: str) -> ValueError:
    """``message`` about one item, saying which mix it is in when there are several."""
    within = f" (in data.source {source!r})" if MIX_SEPARATOR in source else ""
    return ValueError(f"{message}{within}")


def _split_weight(item: str, source: str) -> tuple[str, float]:
    """``"folder:B*2"`` -> ("folder:B", 2.0); no ``*`` means weight 1."""
    if WEIGHT_MARK not in item:
        return item, 1.0
    spec, _, text = item.rpartition(WEIGHT_MARK)
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise _mix_error(
            f"data source {item!r}: weight {text!r} is not a positive number "
            f"(form SOURCE*WEIGHT, e.g. {spec.strip() or 'folder:PATH'}*2)",
            source,
        )
    return spec.strip(), weight


def _base_name(spec: str) -> str:
    """A short name for a source: the folder's name, the TFDS dataset's name, "sample"."""
    scheme, argument = parse_source(spec)
    if scheme == "folder":
        base = Path(argument).expanduser().resolve().name
    elif scheme == "tfds":
        base = argument.partition(":")[0]
    else:
        base = scheme
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_") or scheme


def _unique_names(bases: Sequence[str]) -> list[str]:
    names: list[str] = []
    for base in bases:
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names


def parse_mix(source: str) -> list[Source]:
    """The sources of ``data.source``: one, or a comma list ``folder:A,folder:B*2``.

    An empty item, an unknown scheme, a bad weight or a source given twice is a ValueError
    naming the item.
    """
    specs, weights = [], []
    for item in (part.strip() for part in source.split(MIX_SEPARATOR)):
        if not item:
            raise ValueError(
                f"data.source {source!r} has an empty item (sources are separated by commas)"
            )
        spec, weight = _split_weight(item, source)
        try:
            parse_source(spec)
        except ValueError as err:
            raise _mix_error(str(err), source) from None
        if spec in specs:
            raise ValueError(
                f"data source {spec!r} appears twice in data.source {source!r}; "
                "give it one weight instead (SOURCE*WEIGHT)"
            )
        specs.append(spec)
        weights.append(weight)
    names = _unique_names([_base_name(spec) for spec in specs])
    return [Source(*fields) for fields in zip(specs, weights, names, strict=True)]


def draws_per_epoch(weight: float, images: int) -> int:
    """Draws of a source with ``images`` usable training images in one mix epoch."""
    return max(1, math.floor(weight * images + 0.5))


def sample_dir() -> Path:
    """The folder of images that ships inside scikit-image's wheel."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def _sample_regions(info: Probe) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(train, eval) regions of one photo: eval is the far end of its longer side."""
    cut = 1.0 - SAMPLE_EVAL_FRACTION
    landscape = not isinstance(info, decoding.ImageInfo) or info.width >= info.height
    if landscape:
        return (0.0, 0.0, 1.0, cut), (0.0, cut, 1.0, 1.0)
    return (0.0, 0.0, cut, 1.0), (cut, 0.0, 1.0, 1.0)


def sample_items() -> tuple[list[Item], dict[str, Probe]]:
    paths = [str(sample_dir() / name) for name in SAMPLE_FILES if (sample_dir() / name).exists()]
    if not paths:
        raise ValueError(f"source 'sample': none of {', '.join(SAMPLE_FILES)} is in {sample_dir()}")
    probes = dict(zip(paths, threaded_map(probe_file, paths), strict=True))
    items = []
    for path in paths:
        train_region, eval_region = _sample_regions(probes[path])
        items += [Item(path, TRAIN, train_region), Item(path, EVAL, eval_region)]
    return items, probes


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in decoding.IMAGE_EXTENSIONS and p.is_file()
    )


def _hash_fraction(text: str) -> float:
    """A stable number in [0, 1) for ``text``."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


def _folder_items(root: Path, eval_fraction: float) -> list[Item]:
    """Files under ``root``: train/ and eval/ (or val/) sub-folders, else a hash split."""
    eval_dir = next((root / n for n in EVAL_FOLDERS if (root / n).is_dir()), None)
    if (root / TRAIN).is_dir() and eval_dir is not None:
        return [Item(str(p), TRAIN) for p in _image_files(root / TRAIN)] + [
            Item(str(p), EVAL) for p in _image_files(eval_dir)
        ]
    return [
        Item(
            str(p),
            EVAL if _hash_fraction(p.relative_to(root).as_posix()) < eval_fraction else TRAIN,
        )
        for p in _image_files(root)
    ]


def folder_catalog(argument: str, eval_fraction: float) -> tuple[list[Item], dict[str, Probe]]:
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise ValueError(f"source 'folder:{argument}': {root} is not an existing folder")
    items = _folder_items(root, eval_fraction)
    if not items:
        extensions = " ".join(decoding.IMAGE_EXTENSIONS)
        raise ValueError(f"source 'folder:{argument}': no image files ({extensions}) under {root}")
    keys = [it.key for it in items]
    return items, dict(zip(keys, threaded_map(probe_file, keys), strict=True))


@dataclasses.dataclass(frozen=True)
class _TfdsRead:
    """Which TFDS split a pipeline streams and which of its records belong to which split."""

    name: str
    split: str  # TFDS split expression
    carve: bool  # eval = the first eval_fraction of the records, train = the rest


def tfds_read(name: str, split: str, train: bool, available: Sequence[str]) -> _TfdsRead:
    if split:
        return _TfdsRead(name, split, carve=False)
    if available and TRAIN not in available:
        raise ValueError(
            f"source 'tfds:{name}' has no train split ({', '.join(available)}); "
            f"name one: tfds:{name}:SPLIT"
        )
    eval_split = next((s for s in TFDS_EVAL_SPLITS if s in available), None)
    if eval_split is None:
        return _TfdsRead(name, TRAIN, carve=True)
    return _TfdsRead(name, TRAIN if train else eval_split, carve=False)


def tfds_builder(name: str, data_dir: str | None) -> Any:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir or None)
    if "image" not in builder.info.features:
        raise ValueError(
            f"source 'tfds:{name}' has no 'image' feature "
            f"(features: {', '.join(builder.info.features)})"
        )
    builder.download_and_prepare()
    return builder


def tfds_encoded(builder: Any, split: str) -> tf.data.Dataset:
    """The records' encoded image bytes, in the split's fixed order."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return ds.map(lambda example: example["image"])


def tfds_items(read: _TfdsRead, count: int, eval_fraction: float, split: str) -> list[Item]:
    keys = [f"{read.name}:{read.split}#{i}" for i in range(count)]
    if not read.carve:
        return [Item(key, split) for key in keys]
    head = max(1, round(count * eval_fraction)) if count > 1 and eval_fraction > 0 else 0
    return [Item(key, EVAL if i < head else TRAIN) for i, key in enumerate(keys)]
