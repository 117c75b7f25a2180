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

1. Build time: every image of the source is probed once (``decoding.probe_image`` in a thread
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
4. Decoding (``decoding.decode_image``) and augmentation run after that; every random draw is a
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

import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from colorjax.config import DataConfig
from colorjax.data.scan import (
    EVAL,
    FULL_REGION,
    TRAIN,
    DataStats,
    Item,
    Probe,
    is_usable,
    probe_bytes,
    scan_stats,
    threaded_map,
)
from colorjax.data.sources import (
    Source,
    draws_per_epoch,
    folder_catalog,
    parse_mix,
    parse_source,
    sample_items,
    tfds_builder,
    tfds_encoded,
    tfds_items,
    tfds_read,
)
from colorjax.data.streams import (
    MIX_STREAM,
    SOURCE_STREAM,
    buffered_stream,
    derived_seed,
    draws_before,
    mask_filter,
    mix_choices,
    permuted_stream,
    shard_filter,
    taking_turns,
)
from colorjax.data.transforms import Decoder, Transform, as_image

logger = logging.getLogger(__name__)


DECODED_CACHE_BYTES = 1 << 30  # file sources whose decoded images fit are decoded only once


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
class Catalog:
    """A scanned source: its items, what the scan learned, and (TFDS) the encoded records."""

    items: list[Item]
    probes: dict[str, Probe]  # item key -> probe
    records: tf.data.Dataset | None = None  # encoded images in item order; None: keys are files


@dataclasses.dataclass(frozen=True)
class _Part:
    """One source of a pipeline: its catalog, which of its items the split uses, its seed."""

    catalog: Catalog
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
    stream = permuted_stream(len(items), train=train, seed=part.seed, first=first)
    return stream.map(lambda _, k: (paths[k], tf.constant(""), regions[k]))


def _record_refs(part: _Part, *, train: bool, first: int, buffer: int) -> tf.data.Dataset:
    """(name, encoded image, region) of the TFDS records through a seeded shuffle buffer."""
    names = tf.constant([it.key for it in part.catalog.items])
    region = tf.constant(FULL_REGION, tf.float32)
    records = part.catalog.records.enumerate().filter(mask_filter(part.keep))
    stream = buffered_stream(
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
    mix_seed = derived_seed(seed, MIX_STREAM)
    starts = draws_before(draws, seed=mix_seed, first=first)
    streams = [
        _source_refs(part, train=True, first=int(start), buffer=buffer)
        for part, start in zip(parts, starts, strict=True)
    ]
    return tf.data.Dataset.choose_from_datasets(
        streams, mix_choices(draws, seed=mix_seed, first=first)
    )


def _eval_refs(parts: Sequence[_Part], *, first: int, buffer: int) -> tf.data.Dataset:
    """One pass over the eval elements, the sources taking turns, from global element ``first``."""
    streams = [_source_refs(part, train=False, first=0, buffer=buffer) for part in parts]
    mixed = streams[0]
    if len(parts) > 1:
        turns = taking_turns([[source] * part.size for source, part in enumerate(parts)])
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
    decode = Decoder(file_bytes <= DECODED_CACHE_BYTES)
    return numbered.filter(shard).map(
        lambda g, ref: (g, as_image(decode, ref[0], ref[1]), ref[2]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _tfds_catalog(
    argument: str, *, train: bool, eval_fraction: float, data_dir: str | None
) -> Catalog:
    name, _, tfds_split = argument.partition(":")
    builder = tfds_builder(name, data_dir)
    read = tfds_read(name, tfds_split, train, list(builder.info.splits.keys()))
    records = tfds_encoded(builder, read.split)
    results = threaded_map(
        lambda pair: probe_bytes(pair[1], f"{name}:{read.split}#{pair[0]}"),
        enumerate(records.as_numpy_iterator()),
    )
    items = tfds_items(read, len(results), eval_fraction, TRAIN if train else EVAL)
    return Catalog(items, dict(zip((it.key for it in items), results, strict=True)), records)


def _catalog(source: str, *, train: bool, eval_fraction: float, data_dir: str | None) -> Catalog:
    scheme, argument = parse_source(source)
    if scheme == "sample":
        return Catalog(*sample_items())
    if scheme == "folder":
        return Catalog(*folder_catalog(argument, eval_fraction))
    return _tfds_catalog(argument, train=train, eval_fraction=eval_fraction, data_dir=data_dir)


def _check_disjoint(sources: Sequence[Source], catalogs: Sequence[Catalog]) -> None:
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


def load_catalogs(
    sources: Sequence[Source],
    *,
    train: bool,
    eval_fraction: float,
    data_dir: str | None,
    whole_plain_folders: bool = False,
) -> list[Catalog]:
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


def split_mask(
    source: str, catalog: Catalog, split: str, skip_gray: bool
) -> tuple[np.ndarray, DataStats]:
    """Which catalog items are usable images of ``split``, and the scan's stats; logs their
    summary once (a warning when images were skipped); none usable is a ValueError."""
    stats = scan_stats(source, split, catalog.items, catalog.probes, skip_gray)
    (logger.warning if stats.skipped else logger.info)(stats.summary())
    keep = np.array(
        [it.split == split and is_usable(catalog.probes[it.key], skip_gray) for it in catalog.items]
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
    return scan_stats(source, split, items, probes, skip_gray)


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
    catalogs = load_catalogs(sources, train=train, eval_fraction=eval_fraction, data_dir=data_dir)
    parts, source_stats = [], []
    for position, (spec, catalog) in enumerate(zip(sources, catalogs, strict=True)):
        keep, stats = split_mask(spec.spec, catalog, split, skip_gray)
        part_seed = seed if position == 0 else derived_seed(seed, SOURCE_STREAM, position)
        parts.append(_Part(catalog, keep, part_seed, spec.weight))
        source_stats.append(stats)
    if len(parts) > 1 and train:
        _log_mix(sources, parts)
    stats = source_stats[0] if len(parts) == 1 else _mix_stats(source, split, parts, skip_gray)
    transform = Transform(train, image_size, seed, min_crop_scale, flip)
    dataset = (
        _elements(
            parts,
            train=train,
            seed=seed,
            first=start_step * batch_size,
            shard=shard_filter(batch_size, local_batch, process_index),
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
    named = taking_turns(per_source)
    return np.stack([rgb for _, rgb in named]), [name for name, _ in named]
