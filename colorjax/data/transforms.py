"""Per-element work: decoding, region crops, random resized crops and centre crops."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from colorjax.data.scan import FULL_REGION
from colorjax.imaging import decoding

ASPECT_RANGE = (3 / 4, 4 / 3)  # random resized crop: width / height


class Decoder:
    """An element's image: a record's encoded ``data``, or (no data) the file at ``key``, kept
    decoded when all the files fit in memory."""

    def __init__(self, keep_decoded: bool) -> None:
        self._decoded: dict[bytes, np.ndarray] | None = {} if keep_decoded else None

    def __call__(self, key: bytes, data: bytes) -> np.ndarray:
        if data:
            return decoding.decode_image(data, key.decode())
        if self._decoded is None:
            return decoding.load_image(key.decode())
        if (image := self._decoded.get(key)) is None:
            image = self._decoded[key] = decoding.load_image(key.decode())
        return image


def as_image(numpy_fn: Callable[..., np.ndarray], *args: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] from a numpy decoder run inside the graph."""
    image = tf.numpy_function(numpy_fn, list(args), tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def crop_region(image: tf.Tensor, region: tf.Tensor) -> tf.Tensor:
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


def resize_center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resize the shorter side to ``size`` (antialiased), then cut the central square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(shape)
    resized_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    resized = tf.image.resize(image, resized_shape, antialias=True)
    top, left = (resized_shape[0] - size) // 2, (resized_shape[1] - size) // 2
    return resized[top : top + size, left : left + size]


@dataclasses.dataclass(frozen=True)
class Transform:
    """Decoded uint8 image -> {"rgb"} example: crop, resize, flip."""

    train: bool
    image_size: int
    seed: int
    min_crop_scale: float
    flip: bool

    def __call__(self, g: tf.Tensor, image: tf.Tensor, region: tf.Tensor) -> dict[str, tf.Tensor]:
        image = crop_region(image, region)
        if self.train:
            element_seed = tf.stack([tf.constant(self.seed, tf.int64), g])
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed))
            image = _random_resized_crop(image, crop_seed, self.image_size, self.min_crop_scale)
            if self.flip:
                image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        else:
            image = resize_center_crop(image, self.image_size)
        rgb = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        rgb.set_shape([self.image_size, self.image_size, 3])
        return {"rgb": rgb}
