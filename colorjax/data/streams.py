"""Index streams: which image each global element of an epoch is, for random-access and TFDS
sources, mixes and hosts, seeded so that a resumed run continues exactly."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

MIX_STREAM, SOURCE_STREAM = 1, 2  # sub-streams of the run's seed (``derived_seed``)


def _epochs(first_epoch: int, train: bool) -> tf.data.Dataset:
    return tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max if train else 1)


def _epoch_seed(seed: int, epoch: tf.Tensor | int) -> tf.Tensor:
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _shuffled_range(count: int, seed: int, epoch: tf.Tensor | int) -> tf.Tensor:
    """The permutation of ``range(count)`` for ``epoch``."""
    order = tf.range(count, dtype=tf.int64)
    return tf.random.experimental.stateless_shuffle(order, seed=_epoch_seed(seed, epoch))


def permuted_stream(count: int, *, train: bool, seed: int, first: int) -> tf.data.Dataset:
    """(g, item index) for global elements g >= ``first``; a new permutation every epoch."""
    first_epoch, offset = divmod(first, count)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        order = _shuffled_range(count, seed, e) if train else tf.range(count, dtype=tf.int64)
        start = tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0)
        numbers = e * count + tf.range(start, count)
        return tf.data.Dataset.from_tensor_slices((numbers, order[start:]))

    return _epochs(first_epoch, train).flat_map(epoch)


def buffered_stream(
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


def mask_filter(keep: np.ndarray) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    mask = tf.constant(keep)
    return lambda position, _: mask[position]


def derived_seed(seed: int, *stream: int) -> int:
    """A stable non-negative int64 seed of a sub-stream of the run's ``seed``."""
    entropy = [seed % 2**64, *stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def mix_choices(draws: np.ndarray, *, seed: int, first: int) -> tf.data.Dataset:
    """Which source serves each global element g >= ``first`` of a training mix."""
    slot_source = tf.constant(np.repeat(np.arange(len(draws)), draws), tf.int64)
    stream = permuted_stream(int(draws.sum()), train=True, seed=seed, first=first)
    return stream.map(lambda _, slot: slot_source[slot])


def draws_before(draws: np.ndarray, *, seed: int, first: int) -> np.ndarray:
    """How many elements each source of a training mix served before global element ``first``
    (the start of its own stream when resuming there); ``mix_choices`` order."""
    epoch, offset = divmod(first, int(draws.sum()))
    slot_source = np.repeat(np.arange(len(draws)), draws)
    served = slot_source[_shuffled_range(int(draws.sum()), seed, epoch).numpy()[:offset]]
    return epoch * draws + np.bincount(served, minlength=len(draws))


def taking_turns(groups: Sequence[Sequence[Any]]) -> list[Any]:
    """The first element of each group, then the second of each, ...; groups may differ in
    length."""
    gap = object()
    turns = itertools.zip_longest(*groups, fillvalue=gap)
    return [element for turn in turns for element in turn if element is not gap]


def shard_filter(batch_size: int, local_batch: int, process_index: int) -> Callable[..., tf.Tensor]:
    """Keep global element g when it falls in this process's slice of its global batch."""
    return lambda g, *_: (g % batch_size) // local_batch == process_index
