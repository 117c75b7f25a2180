"""sRGB <-> CIE L*a*b* (D65 white, 2 degree observer) in jax.numpy, and the network scaling.

The constants follow ``skimage.color`` (sRGB matrix, D65 white, the 0.008856 / 7.787 linear
segment), so results agree with ``skimage.color.rgb2lab`` to float32 precision. They are module
constants so the host-side conversions of ``colorjax.color.host`` use the same numbers.

Network values: ``L / 50 - 1`` and ``ab / 110``, both clipped to [-1, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])

SRGB_LINEAR_THRESHOLD = 0.04045  # encoded value where the sRGB curve turns linear
SRGB_LINEAR_SLOPE = 12.92
SRGB_GAMMA = 2.4
LAB_EPSILON = 0.008856  # (6/29)**3, as skimage rounds it
LAB_KAPPA = 7.787  # slope of the linear segment of f(t)
LAB_OFFSET = 16.0 / 116.0

L_SCALE = 50.0  # L in [0, 100] -> L / 50 - 1 in [-1, 1]
AB_SCALE = 110.0  # ab in about [-110, 110] -> ab / 110, clipped to [-1, 1]

_HIGHEST = jax.lax.Precision.HIGHEST


def _as_float(x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _mix(x: jax.Array, matrix: np.ndarray) -> jax.Array:
    """``matrix @ x`` over the last axis."""
    return jnp.einsum("...c,dc->...d", x, jnp.asarray(matrix, x.dtype), precision=_HIGHEST)


def srgb_to_linear(rgb: jax.typing.ArrayLike) -> jax.Array:
    """Undo the sRGB transfer curve (values in [0, 1])."""
    rgb = _as_float(rgb)
    curved = ((jnp.maximum(rgb, SRGB_LINEAR_THRESHOLD) + 0.055) / 1.055) ** SRGB_GAMMA
    return jnp.where(rgb > SRGB_LINEAR_THRESHOLD, curved, rgb / SRGB_LINEAR_SLOPE)


def linear_to_srgb(linear: jax.typing.ArrayLike) -> jax.Array:
    """Apply the sRGB transfer curve; the result is clipped to [0, 1]."""
    linear = jnp.clip(_as_float(linear), 0.0, 1.0)
    threshold = SRGB_LINEAR_THRESHOLD / SRGB_LINEAR_SLOPE
    curved = 1.055 * jnp.maximum(linear, threshold) ** (1.0 / SRGB_GAMMA) - 0.055
    return jnp.where(linear > threshold, curved, linear * SRGB_LINEAR_SLOPE)


def rgb_to_lab(rgb: jax.typing.ArrayLike) -> jax.Array:
    """sRGB in [0, 1] (any leading shape, last axis 3) -> L*a*b* with L in [0, 100]."""
    xyz = _mix(srgb_to_linear(rgb), XYZ_FROM_RGB) / jnp.asarray(D65_WHITE, jnp.float32)
    f = jnp.where(xyz > LAB_EPSILON, jnp.cbrt(xyz), LAB_KAPPA * xyz + LAB_OFFSET)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: jax.typing.ArrayLike) -> jax.Array:
    """L*a*b* -> sRGB in [0, 1]; colours outside the sRGB gamut are clipped."""
    lab = _as_float(lab)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = jnp.maximum(fy - lab[..., 2] / 200.0, 0.0)
    f = jnp.stack([fx, fy, fz], axis=-1)
    threshold = LAB_EPSILON ** (1.0 / 3.0)
    xyz = jnp.where(f > threshold, f**3, (f - LAB_OFFSET) / LAB_KAPPA)
    return linear_to_srgb(_mix(xyz * jnp.asarray(D65_WHITE, xyz.dtype), RGB_FROM_XYZ))


def normalize_l(l: jax.typing.ArrayLike) -> jax.Array:
    """L in [0, 100] -> [-1, 1]."""
    return jnp.clip(_as_float(l) / L_SCALE - 1.0, -1.0, 1.0)


def denormalize_l(l: jax.typing.ArrayLike) -> jax.Array:
    """Network L in [-1, 1] -> L in [0, 100]."""
    return (_as_float(l) + 1.0) * L_SCALE


def normalize_ab(ab: jax.typing.ArrayLike) -> jax.Array:
    """a*b* -> ab / 110 clipped to [-1, 1]."""
    return jnp.clip(_as_float(ab) / AB_SCALE, -1.0, 1.0)


def denormalize_ab(ab: jax.typing.ArrayLike) -> jax.Array:
    """Network ab in [-1, 1] -> a*b*."""
    return _as_float(ab) * AB_SCALE


def rgb_to_network(rgb: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """sRGB [..., 3] in [0, 1] -> (L [..., 1], ab [..., 2]), both in [-1, 1]."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1]), normalize_ab(lab[..., 1:])


def rgb8_to_network(rgb8: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """uint8 sRGB [..., 3] (a pipeline batch) -> (L [..., 1], ab [..., 2]), both in [-1, 1]."""
    return rgb_to_network(jnp.asarray(rgb8, jnp.float32) / 255.0)


def network_to_rgb(l: jax.typing.ArrayLike, ab: jax.typing.ArrayLike) -> jax.Array:
    """Network (L [..., 1], ab [..., 2]) in [-1, 1] -> sRGB [..., 3] in [0, 1]."""
    lab = jnp.concatenate([denormalize_l(l), denormalize_ab(ab)], axis=-1)
    return lab_to_rgb(lab)
