"""The tf.data input pipeline: source -> decode -> crop/resize/flip -> batch of uint8 RGB.

    pipeline = build_pipeline("sample", image_size=64, batch_size=8, train=True, seed=0)
    for batch in pipeline.as_numpy():  # {"rgb": uint8 [8, 64, 64, 3]}
        ...

Batches stay uint8 sRGB, a quarter of the bytes of float L and ab: the conversion to the
network's Lab values (``color.rgb8_to_network``) runs on the device, inside the jitted step,
where it costs next to nothing; on the host it was two thirds of the pipeline's time.

Sources: ``sample`` (photos bundled with scikit-image, split into train and held-out eval
regions), ``folder:PATH`` and ``tfds:NAME[:SPLIT]``, or a mix of them (below).

How the stream is made, so that a run can resume exactly:

1. Build time: every image of the source is probed once (``imageio.probe_image`` in a thread
   pool). Undecodable images, and gray ones when ``skip_gray``, are dropped here, counted by
   reason and reported in one summary line per source (``Pipeline.source_stats``;
   ``Pipeline.stats`` totals a mix).
2. An index stream numbers the kept images: element ``g`` (global over all processes) of epoch
   ``g // n``. Random-access sources use a stateless permutation seeded by (seed, epoch); TFDS
   streams its records through a shuffle buffer seeded by (seed, epoch) with the images still
   encoded. ``start_step`` starts at element ``start_step * batch_size`` at the index level,
   so skipped images are never decoded (TFDS: at most one epoch of encoded records is read).
3. Process ``p`` keeps the elements at positions ``[p * b, (p + 1) * b)`` of every global batch
   (``b = batch_size // process_count``), so the processes' batches concatenated in order are
   the single-process batch. (For TFDS every process reads all records, still encoded.)
4. Decoding (``imageio.decode_image``) and augmentation run after that; every random draw is a
   stateless op seeded by (seed, g).

A mix is a comma list of sources, each optionally weighted: ``folder:A,folder:B*2,sample*0.5``
(a path in a mix cannot contain "," or "*"). Every source keeps its own train/eval split (its
sub-folders or ``eval_fraction`` hash, its regions, its TFDS splits) and its own index stream
(step 2; the first source is seeded by the run's seed itself, so a one-source pipeline is what
it always was, the others by seeds derived from (seed, position in the mix)). A mix epoch holds
``draws_per_epoch(w, n) = max(1, floor(w * n + 0.5))`` draws of a source of weight ``w``
(default 1) with ``n`` usable training images, the sources' draws in an order shuffled by
(seed, epoch). So an unweighted mix draws every image once per mix epoch, as if the sources
were one folder; weight 2 draws each of a source's images twice as often as an unweighted mix
would, 0.5 half as often (each image once every two mix epochs: a source's own stream moves on
by ``w * n`` draws per mix epoch, whole or fractional epochs of its own). Which source serves
global element ``g`` is known at the index level, so ``start_step`` tells each source how far
its own stream has gone (nothing skipped is decoded), and step 3 shards the mixed ``g``. The
eval split of a mix is one pass over the sources' eval images taking turns: the first image of
each source, then the second of each, and so on.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import itertools
import logging
import math
import os
import re
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from colorjax import imageio
from colorjax.config import DataConfig

logger = logging.getLogger(__name__)

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
GRAY, UNREADABLE = "gray", "unreadable"
TRAIN, EVAL = "train", "eval"
EVAL_FOLDERS = ("eval", "val")
TFDS_EVAL_SPLITS = ("validation", "test")
ASPECT_RANGE = (3 / 4, 4 / 3)  # random resized crop: width / height
FULL_REGION = (0.0, 0.0, 1.0, 1.0)  # y0, x0, y1, x1 as fractions of the decoded image
_SCAN_THREADS = min(8, 2 * (os.cpu_count() or 1))
_SCAN_CHUNK = 256
_MIX_STREAM, _SOURCE_STREAM = 1, 2  # sub-streams of the run's seed (``_derived_seed``)
DECODED_CACHE_BYTES = 1 << 30  # file sources whose decoded images fit are decoded only once

Probe = imageio.ImageInfo | str  # what the scan learned about one image: its info or a reason


# ----------------------------------------------------------------------------- scan and stats


@dataclasses.dataclass(frozen=True)
class Item:
    """One training or evaluation example of a source: an encoded image, optionally a region."""

    key: str  # file path, or "NAME:SPLIT#position" for a TFDS record
    split: str  # TRAIN | EVAL
    region: tuple[float, float, float, float] = FULL_REGION


@dataclasses.dataclass(frozen=True)
class DataStats:
    """What the build-time scan found. Counts are of distinct images; ``None`` = not scanned."""

    source: str
    split: str
    found: int
    decoded: int
    skipped: dict[str, int]
    train: int | None
    eval: int | None
    width: tuple[int, int, int]  # min, median, max of the decoded images
    height: tuple[int, int, int]

    def summary(self) -> str:
        """One line for the log."""
        skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
        counts = ", ".join(
            f"{name} {n}" for name, n in ((TRAIN, self.train), (EVAL, self.eval)) if n is not None
        )
        return (
            f"data {self.source} [{self.split}]: found {self.found}, decoded {self.decoded}, "
            f"skipped {sum(self.skipped.values())}{f' ({skipped})' if skipped else ''}; "
            f"{counts}; width {'/'.join(map(str, self.width))}, "
            f"height {'/'.join(map(str, self.height))} (min/median/max)"
        )


def _probe_bytes(data: bytes, name: str) -> Probe:
    try:
        return imageio.probe_image(data, name)
    except imageio.ImageDecodeError as err:
        return err.reason


@functools.lru_cache(maxsize=1 << 20)
def _probe_file_version(path: str, size: int, mtime_ns: int) -> Probe:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return UNREADABLE
    return _probe_bytes(data, path)


def _probe_file(path: str) -> Probe:
    """Probe of the file at ``path``, remembered for as long as its size and mtime hold."""
    try:
        stat = os.stat(path)
    except OSError:
        return UNREADABLE
    return _probe_file_version(path, stat.st_size, stat.st_mtime_ns)


def _threaded_map(fn: Callable[[Any], Probe], inputs: Iterable[Any]) -> list[Probe]:
    """``[fn(x) for x in inputs]`` on a thread pool, consuming ``inputs`` chunk by chunk."""
    inputs, results = iter(inputs), []
    with ThreadPoolExecutor(_SCAN_THREADS) as pool:
        while chunk := list(itertools.islice(inputs, _SCAN_CHUNK)):
            results += pool.map(fn, chunk)
    return results


def _usable(probe: Probe, skip_gray: bool) -> bool:
    return isinstance(probe, imageio.ImageInfo) and not (skip_gray and probe.gray)


def _skip_reason(probe: Probe, skip_gray: bool) -> str | None:
    if isinstance(probe, str):
        return probe
    return GRAY if skip_gray and probe.gray else None


def _min_median_max(values: Sequence[int]) -> tuple[int, int, int]:
    if not values:
        return (0, 0, 0)
    return min(values), int(statistics.median(values)), max(values)


def _stats(
    source: str, split: str, items: Sequence[Item], probes: dict[str, Probe], skip_gray: bool
) -> DataStats:
    """Counts over the distinct images behind ``items``; ``probes`` maps item key -> probe."""
    infos = [p for p in probes.values() if isinstance(p, imageio.ImageInfo)]
    reasons = (_skip_reason(p, skip_gray) for p in probes.values())
    kept = collections.Counter(it.split for it in items if _usable(probes[it.key], skip_gray))
    splits = {it.split for it in items}
    return DataStats(
        source=source,
        split=split,
        found=len(probes),
        decoded=len(infos),
        skipped=dict(collections.Counter(r for r in reasons if r is not None)),
        train=kept[TRAIN] if TRAIN in splits else None,
        eval=kept[EVAL] if EVAL in splits else None,
        width=_min_median_max([i.width for i in infos]),
        height=_min_median_max([i.height for i in infos]),
    )


# ----------------------------------------------------------------------------- sources


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
    landscape = not isinstance(info, imageio.ImageInfo) or info.width >= info.height
    if landscape:
        return (0.0, 0.0, 1.0, cut), (0.0, cut, 1.0, 1.0)
    return (0.0, 0.0, cut, 1.0), (cut, 0.0, 1.0, 1.0)


def _sample_items() -> tuple[list[Item], dict[str, Probe]]:
    paths = [str(sample_dir() / name) for name in SAMPLE_FILES if (sample_dir() / name).exists()]
    if not paths:
        raise ValueError(f"source 'sample': none of {', '.join(SAMPLE_FILES)} is in {sample_dir()}")
    probes = dict(zip(paths, _threaded_map(_probe_file, paths), strict=True))
    items = []
    for path in paths:
        train_region, eval_region = _sample_regions(probes[path])
        items += [Item(path, TRAIN, train_region), Item(path, EVAL, eval_region)]
    return items, probes


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in imageio.IMAGE_EXTENSIONS and p.is_file()
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


def _folder_catalog(argument: str, eval_fraction: float) -> tuple[list[Item], dict[str, Probe]]:
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise ValueError(f"source 'folder:{argument}': {root} is not an existing folder")
    items = _folder_items(root, eval_fraction)
    if not items:
        extensions = " ".join(imageio.IMAGE_EXTENSIONS)
        raise ValueError(f"source 'folder:{argument}': no image files ({extensions}) under {root}")
    keys = [it.key for it in items]
    return items, dict(zip(keys, _threaded_map(_probe_file, keys), strict=True))


@dataclasses.dataclass(frozen=True)
class _TfdsRead:
    """Which TFDS split a pipeline streams and which of its records belong to which split."""

    name: str
    split: str  # TFDS split expression
    carve: bool  # eval = the first eval_fraction of the records, train = the rest


def _tfds_read(name: str, split: str, train: bool, available: Sequence[str]) -> _TfdsRead:
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


def _tfds_builder(name: str, data_dir: str | None) -> Any:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir or None)
    if "image" not in builder.info.features:
        raise ValueError(
            f"source 'tfds:{name}' has no 'image' feature "
            f"(features: {', '.join(builder.info.features)})"
        )
    builder.download_and_prepare()
    return builder


def _tfds_encoded(builder: Any, split: str) -> tf.data.Dataset:
    """The records' encoded image bytes, in the split's fixed order."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return ds.map(lambda example: example["image"])


def _tfds_items(read: _TfdsRead, count: int, eval_fraction: float, split: str) -> list[Item]:
    keys = [f"{read.name}:{read.split}#{i}" for i in range(count)]
    if not read.carve:
        return [Item(key, split) for key in keys]
    head = max(1, round(count * eval_fraction)) if count > 1 and eval_fraction > 0 else 0
    return [Item(key, EVAL if i < head else TRAIN) for i, key in enumerate(keys)]


# ----------------------------------------------------------------------------- index streams


def _epochs(first_epoch: int, train: bool) -> tf.data.Dataset:
    return tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max if train else 1)


def _epoch_seed(seed: int, epoch: tf.Tensor | int) -> tf.Tensor:
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _shuffled_range(count: int, seed: int, epoch: tf.Tensor | int) -> tf.Tensor:
    """The permutation of ``range(count)`` for ``epoch``."""
    order = tf.range(count, dtype=tf.int64)
    return tf.random.experimental.stateless_shuffle(order, seed=_epoch_seed(seed, epoch))


def _permuted_stream(count: int, *, train: bool, seed: int, first: int) -> tf.data.Dataset:
    """(g, item index) for global elements g >= ``first``; a new permutation every epoch."""
    first_epoch, offset = divmod(first, count)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        order = _shuffled_range(count, seed, e) if train else tf.range(count, dtype=tf.int64)
        start = tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0)
        numbers = e * count + tf.range(start, count)
        return tf.data.Dataset.from_tensor_slices((numbers, order[start:]))

    return _epochs(first_epoch, train).flat_map(epoch)


def _buffered_stream(
    records: tf.data.Dataset, count: int, *, train: bool, seed: int, first: int, buffer: int
) -> tf.data.Dataset:
    """(g, record) for g >= ``first`` from a non-random-access stream of ``count`` records."""
    first_epoch, offset = divmod(first, count)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        shuffled = records
        if train:
            epoch_seed = tf.random.stateless_uniform(
                [], seed=_epoch_seed(seed, e), minval=None, maxval=None, dtype=tf.int64
            )
            shuffled = records.shuffle(buffer, seed=epoch_seed)
        numbered = tf.data.Dataset.zip(tf.data.Dataset.range(e * count, (e + 1) * count), shuffled)
        return numbered.skip(tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0))

    return _epochs(first_epoch, train).flat_map(epoch)


def _mask_filter(keep: np.ndarray) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    mask = tf.constant(keep)
    return lambda position, _: mask[position]


def _derived_seed(seed: int, *stream: int) -> int:
    """A stable non-negative int64 seed of a sub-stream of the run's ``seed``."""
    entropy = [seed % 2**64, *stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def _mix_choices(draws: np.ndarray, *, seed: int, first: int) -> tf.data.Dataset:
    """Which source serves each global element g >= ``first`` of a training mix."""
    slot_source = tf.constant(np.repeat(np.arange(len(draws)), draws), tf.int64)
    stream = _permuted_stream(int(draws.sum()), train=True, seed=seed, first=first)
    return stream.map(lambda _, slot: slot_source[slot])


def _draws_before(draws: np.ndarray, *, seed: int, first: int) -> np.ndarray:
    """How many elements each source of a training mix served before global element ``first``
    (the start of its own stream when resuming there); ``_mix_choices`` order."""
    epoch, offset = divmod(first, int(draws.sum()))
    slot_source = np.repeat(np.arange(len(draws)), draws)
    served = slot_source[_shuffled_range(int(draws.sum()), seed, epoch).numpy()[:offset]]
    return epoch * draws + np.bincount(served, minlength=len(draws))


def _taking_turns(groups: Sequence[Sequence[Any]]) -> list[Any]:
    """The first element of each group, then the second of each, ...; groups may differ in
    length."""
    gap = object()
    turns = itertools.zip_longest(*groups, fillvalue=gap)
    return [element for turn in turns for element in turn if element is not gap]


def _shard_filter(
    batch_size: int, local_batch: int, process_index: int
) -> Callable[..., tf.Tensor]:
    """Keep global element g when it falls in this process's slice of its global batch."""
    return lambda g, *_: (g % batch_size) // local_batch == process_index


# ----------------------------------------------------------------------------- per element


class _Decoder:
    """An element's image: a record's encoded ``data``, or (no data) the file at ``key``, kept
    decoded when all the files fit in memory."""

    def __init__(self, keep_decoded: bool) -> None:
        self._decoded: dict[bytes, np.ndarray] | None = {} if keep_decoded else None

    def __call__(self, key: bytes, data: bytes) -> np.ndarray:
        if data:
            return imageio.decode_image(data, key.decode())
        if self._decoded is None:
            return imageio.load_image(key.decode())
        if (image := self._decoded.get(key)) is None:
            image = self._decoded[key] = imageio.load_image(key.decode())
        return image


def _as_image(numpy_fn: Callable[..., np.ndarray], *args: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] from a numpy decoder run inside the graph."""
    image = tf.numpy_function(numpy_fn, list(args), tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def _crop_region(image: tf.Tensor, region: tf.Tensor) -> tf.Tensor:
    """The part of ``image`` inside ``region`` (fractions y0, x0, y1, x1), at least 1 x 1."""
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    start = tf.cast(tf.round(region[:2] * size), tf.int32)
    end = tf.maximum(tf.cast(tf.round(region[2:] * size), tf.int32), start + 1)
    return image[start[0] : end[0], start[1] : end[1]]


def _random_resized_crop(
    image: tf.Tensor, seed: tf.Tensor, size: int, min_scale: float
) -> tf.Tensor:
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[FULL_REGION]], tf.float32),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=ASPECT_RANGE,
        area_range=(min_scale, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.image.resize(tf.slice(image, begin, extent), (size, size), antialias=True)


def _resize_center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resize the shorter side to ``size`` (antialiased), then cut the central square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(shape)
    resized_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    resized = tf.image.resize(image, resized_shape, antialias=True)
    top, left = (resized_shape[0] - size) // 2, (resized_shape[1] - size) // 2
    return resized[top : top + size, left : left + size]


@dataclasses.dataclass(frozen=True)
class _Transform:
    """Decoded uint8 image -> {"rgb"} example: crop, resize, flip."""

    train: bool
    image_size: int
    seed: int
    min_crop_scale: float
    flip: bool

    def __call__(self, g: tf.Tensor, image: tf.Tensor, region: tf.Tensor) -> dict[str, tf.Tensor]:
        image = _crop_region(image, region)
        if self.train:
            element_seed = tf.stack([tf.constant(self.seed, tf.int64), g])
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed))
            image = _random_resized_crop(image, crop_seed, self.image_size, self.min_crop_scale)
            if self.flip:
                image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        else:
            image = _resize_center_crop(image, self.image_size)
        rgb = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        rgb.set_shape([self.image_size, self.image_size, 3])
        return {"rgb": rgb}


# ----------------------------------------------------------------------------- the pipeline


@dataclasses.dataclass
class Pipeline:
    """A built input pipeline: ``dataset`` yields this process's batches of {"rgb"} (uint8)."""

    dataset: tf.data.Dataset
    stats: DataStats  # what the scan found (a mix: all its sources together)
    items: list[Item]  # the images (and regions) this split draws from, in catalog order
    local_batch_size: int
    source_stats: list[DataStats]  # per source of ``parse_mix(source)``, in its order

    def as_numpy(self) -> Iterator[dict[str, np.ndarray]]:
        """The batches as dicts of numpy arrays."""
        return self.dataset.as_numpy_iterator()


@dataclasses.dataclass(frozen=True)
class _Catalog:
    """A scanned source: its items, what the scan learned, and (TFDS) the encoded records."""

    items: list[Item]
    probes: dict[str, Probe]  # item key -> probe
    records: tf.data.Dataset | None = None  # encoded images in item order; None: keys are files


@dataclasses.dataclass(frozen=True)
class _Part:
    """One source of a pipeline: its catalog, which of its items the split uses, its seed."""

    catalog: _Catalog
    keep: np.ndarray
    seed: int
    weight: float

    @property
    def size(self) -> int:
        return int(self.keep.sum())


def _decoded_bytes(items: Sequence[Item], probes: dict[str, Probe]) -> int:
    """Memory the distinct decoded images of ``items`` take (all of them decode)."""
    infos = {it.key: probes[it.key] for it in items}.values()
    return sum(3 * info.width * info.height for info in infos)


def _file_refs(part: _Part, *, train: bool, first: int) -> tf.data.Dataset:
    """(path, "", region) of the files in a fresh stateless permutation every epoch."""
    items = list(itertools.compress(part.catalog.items, part.keep))
    paths = tf.constant([it.key for it in items])
    regions = tf.constant([it.region for it in items], tf.float32)
    stream = _permuted_stream(len(items), train=train, seed=part.seed, first=first)
    return stream.map(lambda _, k: (paths[k], tf.constant(""), regions[k]))


def _record_refs(part: _Part, *, train: bool, first: int, buffer: int) -> tf.data.Dataset:
    """(name, encoded image, region) of the TFDS records through a seeded shuffle buffer."""
    names = tf.constant([it.key for it in part.catalog.items])
    region = tf.constant(FULL_REGION, tf.float32)
    records = part.catalog.records.enumerate().filter(_mask_filter(part.keep))
    stream = _buffered_stream(
        records, part.size, train=train, seed=part.seed, first=first, buffer=buffer
    )
    return stream.map(lambda _, record: (names[record[0]], record[1], region))


def _source_refs(part: _Part, *, train: bool, first: int, buffer: int) -> tf.data.Dataset:
    """The elements of one source from its own element ``first``, not decoded yet."""
    if part.catalog.records is None:
        return _file_refs(part, train=train, first=first)
    return _record_refs(part, train=train, first=first, buffer=buffer)


def _train_refs(parts: Sequence[_Part], *, seed: int, first: int, buffer: int) -> tf.data.Dataset:
    """The endless training elements from global element ``first``: one source's stream, or
    the sources' streams in the mix order (module docstring)."""
    if len(parts) == 1:
        return _source_refs(parts[0], train=True, first=first, buffer=buffer)
    draws = np.array([draws_per_epoch(part.weight, part.size) for part in parts])
    mix_seed = _derived_seed(seed, _MIX_STREAM)
    starts = _draws_before(draws, seed=mix_seed, first=first)
    streams = [
        _source_refs(part, train=True, first=int(start), buffer=buffer)
        for part, start in zip(parts, starts, strict=True)
    ]
    return tf.data.Dataset.choose_from_datasets(
        streams, _mix_choices(draws, seed=mix_seed, first=first)
    )


def _eval_refs(parts: Sequence[_Part], *, first: int, buffer: int) -> tf.data.Dataset:
    """One pass over the eval elements, the sources taking turns, from global element ``first``."""
    streams = [_source_refs(part, train=False, first=0, buffer=buffer) for part in parts]
    mixed = streams[0]
    if len(parts) > 1:
        turns = _taking_turns([[source] * part.size for source, part in enumerate(parts)])
        choices = tf.data.Dataset.from_tensor_slices(np.array(turns, np.int64))
        mixed = tf.data.Dataset.choose_from_datasets(streams, choices)
    return mixed.skip(first)


def _elements(
    parts: Sequence[_Part],
    *,
    train: bool,
    seed: int,
    first: int,
    shard: Callable[..., tf.Tensor],
    buffer: int,
) -> tf.data.Dataset:
    """(g, uint8 image, region) of this process's elements from global element ``first``,
    decoded after the skip and the shard."""
    refs = (
        _train_refs(parts, seed=seed, first=first, buffer=buffer)
        if train
        else _eval_refs(parts, first=first, buffer=buffer)
    )
    numbered = tf.data.Dataset.zip(tf.data.Dataset.range(first, np.iinfo(np.int64).max), refs)
    file_bytes = sum(
        _decoded_bytes(list(itertools.compress(p.catalog.items, p.keep)), p.catalog.probes)
        for p in parts
        if p.catalog.records is None
    )
    decode = _Decoder(file_bytes <= DECODED_CACHE_BYTES)
    return numbered.filter(shard).map(
        lambda g, ref: (g, _as_image(decode, ref[0], ref[1]), ref[2]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _tfds_catalog(
    argument: str, *, train: bool, eval_fraction: float, data_dir: str | None
) -> _Catalog:
    name, _, tfds_split = argument.partition(":")
    builder = _tfds_builder(name, data_dir)
    read = _tfds_read(name, tfds_split, train, list(builder.info.splits.keys()))
    records = _tfds_encoded(builder, read.split)
    results = _threaded_map(
        lambda pair: _probe_bytes(pair[1], f"{name}:{read.split}#{pair[0]}"),
        enumerate(records.as_numpy_iterator()),
    )
    items = _tfds_items(read, len(results), eval_fraction, TRAIN if train else EVAL)
    return _Catalog(items, dict(zip((it.key for it in items), results, strict=True)), records)


def _catalog(source: str, *, train: bool, eval_fraction: float, data_dir: str | None) -> _Catalog:
    scheme, argument = parse_source(source)
    if scheme == "sample":
        return _Catalog(*_sample_items())
    if scheme == "folder":
        return _Catalog(*_folder_catalog(argument, eval_fraction))
    return _tfds_catalog(argument, train=train, eval_fraction=eval_fraction, data_dir=data_dir)


def _check_disjoint(sources: Sequence[Source], catalogs: Sequence[_Catalog]) -> None:
    """A mix whose sources share images (say a folder and its sub-folder) is a ValueError."""
    owner: dict[str, str] = {}
    for source, catalog in zip(sources, catalogs, strict=True):
        keys = {it.key for it in catalog.items}
        if catalog.records is None:
            keys = {os.path.realpath(key) for key in keys}
        if shared := sorted(keys & owner.keys()):
            raise ValueError(
                f"data sources {owner[shared[0]]!r} and {source.spec!r} share {len(shared)} "
                f"images (e.g. {shared[0]}); the sources of a mix must not overlap"
            )
        owner |= dict.fromkeys(keys, source.spec)


def _catalogs(
    sources: Sequence[Source],
    *,
    train: bool,
    eval_fraction: float,
    data_dir: str | None,
    whole_plain_folders: bool = False,
) -> list[_Catalog]:
    """The scanned catalog of every source; ``whole_plain_folders``: a folder without train/
    and eval/ sub-folders is all eval."""
    catalogs = [
        _catalog(
            source.spec,
            train=train,
            eval_fraction=(
                1.0
                if whole_plain_folders and parse_source(source.spec)[0] == "folder"
                else eval_fraction
            ),
            data_dir=data_dir,
        )
        for source in sources
    ]
    _check_disjoint(sources, catalogs)
    return catalogs


def _split_mask(
    source: str, catalog: _Catalog, split: str, skip_gray: bool
) -> tuple[np.ndarray, DataStats]:
    """Which catalog items are usable images of ``split``, and the scan's stats; logs their
    summary once (a warning when images were skipped); none usable is a ValueError."""
    stats = _stats(source, split, catalog.items, catalog.probes, skip_gray)
    (logger.warning if stats.skipped else logger.info)(stats.summary())
    keep = np.array(
        [it.split == split and _usable(catalog.probes[it.key], skip_gray) for it in catalog.items]
    )
    if not keep.any():
        hint = (
            " (raise eval_fraction, or use train/ and eval/ sub-folders)" if split == EVAL else ""
        )
        raise ValueError(f"source {source!r} has no usable {split} images{hint}: {stats.summary()}")
    return keep, stats


def _mix_stats(source: str, split: str, parts: Sequence[_Part], skip_gray: bool) -> DataStats:
    """The scan of all the sources of a mix together."""
    items = [it for part in parts for it in part.catalog.items]
    probes = {key: probe for part in parts for key, probe in part.catalog.probes.items()}
    return _stats(source, split, items, probes, skip_gray)


def _log_mix(sources: Sequence[Source], parts: Sequence[_Part]) -> None:
    draws = [draws_per_epoch(part.weight, part.size) for part in parts]
    shares = ", ".join(
        f"{source.name} {part.size} images x {source.weight:g} = {n} ({n / sum(draws):.1%})"
        for source, part, n in zip(sources, parts, draws, strict=True)
    )
    logger.info(f"data mix [train]: draws per mix epoch of {sum(draws)}: {shares}")


def _local_batch_size(batch_size: int, process_index: int, process_count: int) -> int:
    if batch_size <= 0 or process_count <= 0 or batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} (global) must be a positive multiple of "
            f"process_count {process_count}"
        )
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return batch_size // process_count


def build_pipeline(
    source: str,
    *,
    image_size: int,
    batch_size: int,
    train: bool,
    seed: int = 0,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    eval_fraction: float = 0.1,
    min_crop_scale: float = 0.35,
    flip: bool = True,
    skip_gray: bool | None = None,
    data_dir: str | None = None,
    shuffle_buffer: int = 2048,
) -> Pipeline:
    """The input pipeline of ``source`` (one source or a mix) for this process (see the module
    docstring).

    ``batch_size`` is global; this process yields ``batch_size // process_count``. Train: an
    endless stream of random resized, flipped crops. Eval: one deterministic pass of centre
    crops, the last batch possibly partial. ``skip_gray`` defaults to on for train only.
    """
    local_batch = _local_batch_size(batch_size, process_index, process_count)
    skip_gray = train if skip_gray is None else skip_gray
    split = TRAIN if train else EVAL
    sources = parse_mix(source)
    catalogs = _catalogs(sources, train=train, eval_fraction=eval_fraction, data_dir=data_dir)
    parts, source_stats = [], []
    for position, (spec, catalog) in enumerate(zip(sources, catalogs, strict=True)):
        keep, stats = _split_mask(spec.spec, catalog, split, skip_gray)
        part_seed = seed if position == 0 else _derived_seed(seed, _SOURCE_STREAM, position)
        parts.append(_Part(catalog, keep, part_seed, spec.weight))
        source_stats.append(stats)
    if len(parts) > 1 and train:
        _log_mix(sources, parts)
    stats = source_stats[0] if len(parts) == 1 else _mix_stats(source, split, parts, skip_gray)
    transform = _Transform(train, image_size, seed, min_crop_scale, flip)
    dataset = (
        _elements(
            parts,
            train=train,
            seed=seed,
            first=start_step * batch_size,
            shard=_shard_filter(batch_size, local_batch, process_index),
            buffer=shuffle_buffer,
        )
        .map(transform, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(local_batch, drop_remainder=train)
        .prefetch(tf.data.AUTOTUNE)
    )
    items = [it for part in parts for it in itertools.compress(part.catalog.items, part.keep)]
    return Pipeline(dataset, stats, items, local_batch, source_stats)


def pipeline_from_config(
    cfg: DataConfig,
    *,
    train: bool,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Pipeline:
    """``build_pipeline`` with the fields of ``cfg``; ``cfg.skip_gray`` applies to training and
    validation alike (a gray ground truth has no colours to score a colorization against)."""
    return build_pipeline(
        cfg.source,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        train=train,
        seed=seed,
        start_step=start_step,
        process_index=process_index,
        process_count=process_count,
        eval_fraction=cfg.eval_fraction,
        min_crop_scale=cfg.min_crop_scale,
        flip=cfg.flip,
        skip_gray=cfg.skip_gray,
        data_dir=cfg.data_dir or None,
        shuffle_buffer=cfg.shuffle_buffer,
    )


def validation_images(cfg: DataConfig, count: int) -> tuple[np.ndarray, list[str]]:
    """The validation set of ``cfg``'s source(s): the first ``count`` eval-pipeline crops of
    each source (uint8 [N, size, size, 3]), the sources taking turns (the first image of each,
    then the second of each...), and each image's source name (``Source.name``)."""
    if count < 1:
        raise ValueError(f"log.eval_images={count}: validation needs at least 1 image per source")
    per_source = []
    for source in parse_mix(cfg.source):
        single = dataclasses.replace(cfg, source=source.spec)
        batches = pipeline_from_config(single, train=False, seed=0).as_numpy()
        images = itertools.islice((rgb for batch in batches for rgb in batch["rgb"]), count)
        per_source.append([(source.name, rgb) for rgb in images])
    named = _taking_turns(per_source)
    return np.stack([rgb for _, rgb in named]), [name for name, _ in named]


# ----------------------------------------------------------------------------- evaluation images


def _file_root(source: str) -> Path | None:
    """The folder a file source's image names are relative to; None for TFDS."""
    scheme, argument = parse_source(source)
    if scheme == "sample":
        return sample_dir()
    return Path(argument).expanduser() if scheme == "folder" else None


def _decode_positions(catalog: _Catalog, positions: Sequence[int]) -> list[np.ndarray]:
    """The decoded images of the catalog items at ``positions`` (ascending)."""
    if catalog.records is None:
        return [imageio.load_image(catalog.items[p].key) for p in positions]
    wanted = set(positions)
    records = catalog.records.take(max(positions, default=-1) + 1).as_numpy_iterator()
    return [
        imageio.decode_image(data, catalog.items[p].key)
        for p, data in enumerate(records)
        if p in wanted
    ]


def _eval_view(image: np.ndarray, region: tuple[float, ...], size: int | None) -> np.ndarray:
    """``region`` of a decoded image at native size, or its validation view at ``size``."""
    view = _crop_region(tf.constant(image), tf.constant(region, tf.float32))
    if size is not None:
        view = tf.round(tf.clip_by_value(_resize_center_crop(view, size), 0.0, 255.0))
    return np.ascontiguousarray(tf.cast(view, tf.uint8).numpy())


def _source_eval_images(
    source: str, catalog: _Catalog, size: int | None, limit: int | None, skip_gray: bool
) -> list[tuple[str, np.ndarray]]:
    keep, _ = _split_mask(source, catalog, EVAL, skip_gray=skip_gray)
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
    catalogs = _catalogs(
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
    return _taking_turns(prefixed)
