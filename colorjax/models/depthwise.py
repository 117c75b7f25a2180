"""Depthwise convolution (one k x k filter per channel) as a sum over its k * k taps.

XLA:CPU runs depthwise convolutions (``feature_group_count`` equal to the channel count)
several times slower than the arithmetic warrants, forward and backward. Written as a sum of
strided slices of the zero-padded input, each times that tap's per-channel weights, the
whole pass is one elementwise fusion, and so are the gradients JAX derives from it (slice
transposes to pad, multiply to multiply). ``conv.conv2d`` routes depthwise convolutions here
for its CPU implementations.

Products are accumulated in float32 with the float32 kernel and the result cast to the input's
dtype, so a bfloat16 input gives the float32 sum rounded once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from colorjax.models.gemm import Geometry, output_shape


def is_depthwise(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], groups: int) -> bool:
    """Whether a grouped convolution is depthwise with one output channel per input channel:
    x [N,H,W,C], kernel [kh,kw,1,C], ``groups`` = C."""
    channels = x_shape[3]
    return groups == channels and tuple(kernel_shape[2:]) == (1, channels)


def correlate(x: jax.Array, kernel: jax.Array, geometry: Geometry) -> jax.Array:
    """Depthwise cross-correlation of ``x`` [N,H,W,C] with ``kernel`` [kh,kw,1,C]."""
    kh, kw, _, channels = kernel.shape
    n, ho, wo, _ = output_shape(x.shape, kernel.shape, geometry)
    padded = jnp.pad(x, ((0, 0), *geometry.padding, (0, 0)))
    taps = kernel.astype(jnp.float32)
    s = geometry.stride
    total = jnp.zeros((n, ho, wo, channels), jnp.float32)
    for i in range(kh):
        for j in range(kw):
            window = lax.slice(
                padded,
                (0, i, j, 0),
                (n, i + (ho - 1) * s + 1, j + (wo - 1) * s + 1, channels),
                (1, s, s, 1),
            )
            total = total + window.astype(jnp.float32) * taps[i, j, 0]
    return total.astype(x.dtype)
