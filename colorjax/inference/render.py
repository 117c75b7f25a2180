"""From a photo's full-resolution lightness to the network's input, and back to RGB."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from colorjax import color
from colorjax.color import ROWS_PER_CHUNK, lab_to_rgb8


def network_input(lightness: Sequence[np.ndarray], pad_to: int = 0) -> np.ndarray:
    """The generator's input [B,h,w,1] for render-size L planes (0..100) of one shape; gray
    planes pad it to ``pad_to`` rows, so that every batch of a run has one compiled shape."""
    batch = np.asarray(color.normalize_l(np.stack(lightness)), np.float32)[..., None]
    if len(batch) >= pad_to:
        return batch
    return np.concatenate([batch, np.zeros((pad_to - len(batch), *batch.shape[1:]), np.float32)])


def resize_plane(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float [H,W] plane to ``shape`` (area averaging down, bilinear up)."""
    if plane.shape == tuple(shape):
        return plane.astype(np.float32)
    image = Image.fromarray(plane.astype(np.float32), mode="F")
    shrinking = shape[0] < plane.shape[0] or shape[1] < plane.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(image.resize((shape[1], shape[0]), method), np.float32)


def recombine(lightness: np.ndarray, ab_small: np.ndarray, chroma: float = 1.0) -> np.ndarray:
    """Full-size L with network ab (times ``chroma``) upsampled to it -> RGB uint8; colours
    outside the sRGB gamut are clipped."""
    shape = lightness.shape
    scale = np.float32(color.AB_SCALE * chroma)
    a, b = (resize_plane(ab_small[..., c] * scale, shape) for c in range(2))
    rgb = np.empty((*shape, 3), np.uint8)
    for top in range(0, shape[0], ROWS_PER_CHUNK):
        rows = slice(top, top + ROWS_PER_CHUNK)
        rgb[rows] = lab_to_rgb8(np.stack([lightness[rows], a[rows], b[rows]], axis=-1))
    return rgb
