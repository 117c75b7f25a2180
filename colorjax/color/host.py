"""CIE Lab maths in numpy on the host, with ``colorjax.color.lab``'s constants.

Full-resolution photos (tens of millions of pixels) are converted through lookup tables of the
sRGB curve instead of per-pixel powers, in bands of rows; both tables come from ``lab``'s own
curve, so the two paths agree. ``lab_to_linear_rgb`` is the unclipped conversion the colour
bins' gamut test needs.
"""

from __future__ import annotations

import functools

import numpy as np

from colorjax.color import lab as jlab

LINEAR_STEPS = 65535
ROWS_PER_CHUNK = 256  # full-resolution conversions run in bands of rows (cache, peak memory)


@functools.cache
def lookup_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sRGB curve as tables, built on first use (with JAX, so importing starts no backend):
    uint8 -> linear; linear (16-bit steps) -> uint8; and each channel's 256 levels ->
    its contribution to the luminance Y, so Y is three table look-ups."""
    to_linear = np.asarray(jlab.srgb_to_linear(np.arange(256) / 255.0), np.float32)
    steps = np.arange(LINEAR_STEPS + 1, dtype=np.float64) / LINEAR_STEPS
    to_srgb8 = np.round(np.asarray(jlab.linear_to_srgb(steps)) * 255.0).astype(np.uint8)
    luminance = (to_linear[None, :] * jlab.XYZ_FROM_RGB[1][:, None]).astype(np.float32)
    return to_linear, to_srgb8, luminance


_RGB_FROM_XYZ_WHITE = (jlab.RGB_FROM_XYZ * np.asarray(jlab.D65_WHITE)).T.astype(np.float32)
_F_THRESHOLD = np.float32(jlab.LAB_EPSILON ** (1 / 3))


def full_resolution_l(rgb: np.ndarray) -> np.ndarray:
    """CIE L* [H,W] (0..100) of a uint8 RGB image: its luminance, whatever its tint."""
    lightness = np.empty(rgb.shape[:2], np.float32)
    luminance = lookup_tables()[2]
    for top in range(0, rgb.shape[0], ROWS_PER_CHUNK):
        band = rgb[top : top + ROWS_PER_CHUNK]
        y = sum(np.take(luminance[c], band[..., c]) for c in range(3))
        f = np.where(y > jlab.LAB_EPSILON, np.cbrt(y), jlab.LAB_KAPPA * y + jlab.LAB_OFFSET)
        lightness[top : top + ROWS_PER_CHUNK] = 116.0 * f - 16.0
    return lightness


def _lab_f_inverse(f: np.ndarray, threshold: float = _F_THRESHOLD) -> np.ndarray:
    return np.where(f > threshold, f * f * f, (f - jlab.LAB_OFFSET) / jlab.LAB_KAPPA)


def lab_to_rgb8(lab: np.ndarray) -> np.ndarray:
    """CIE Lab [..., 3] float32 -> uint8 sRGB (out-of-gamut clipped), via the lookup table."""
    fy = (lab[..., 0] + np.float32(16.0)) / np.float32(116.0)
    f = np.stack(
        [
            fy + lab[..., 1] / np.float32(500.0),
            fy,
            np.maximum(fy - lab[..., 2] / np.float32(200.0), 0.0),
        ],
        -1,
    )
    linear = _lab_f_inverse(f) @ _RGB_FROM_XYZ_WHITE
    np.clip(linear, 0.0, 1.0, out=linear)
    return lookup_tables()[1][(linear * LINEAR_STEPS + 0.5).astype(np.int32)]


def lab_to_linear_rgb(lab: np.ndarray) -> np.ndarray:
    """Unclipped linear sRGB (float64) of CIE Lab values [..., 3]: a colour is in the sRGB
    gamut when all three channels lie in [0, 1]."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = _lab_f_inverse(f, jlab.LAB_EPSILON ** (1.0 / 3.0))
    return (xyz * jlab.D65_WHITE) @ jlab.RGB_FROM_XYZ.T
