"""Depthwise convolution (one k x k filter per channel) as sums over its k * k taps.

XLA:CPU runs depthwise convolutions (``feature_group_count`` equal to the channel count)
several times slower than the arithmetic warrants, forward and backward. Here each pass is
elementwise work XLA fuses: the output is a sum over the taps of a strided slice of the
zero-padded input times the tap's per-channel weights; the input gradient the same sum over
the dilated, padded output gradient with the flipped kernel; the kernel gradient, per tap,
the sum of a slice of the input times the output gradient. ``conv.conv2d`` routes
depthwise convolutions here for its CPU implementations.

Products are accumulated in float32 with the kernel in float32; the output and the input
gradient are cast to the input's dtype, the kernel gradient to the kernel's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from jax import lax

from colorjax.models.gemm import Geometry, Shape, output_shape

_UNPADDED = Geometry(1, ((0, 0), (0, 0)))


def is_depthwise(x_shape: Shape, kernel_shape: Shape, groups: int) -> bool:
    """Whether a grouped convolution is depthwise with one output channel per input channel:
    x [N,H,W,C], kernel [kh,kw,1,C], ``groups`` = C."""
    channels = x_shape[3]
    return groups == channels and tuple(kernel_shape[2:]) == (1, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def correlate(x: jax.Array, kernel: jax.Array, geometry: Geometry) -> jax.Array:
    """Depthwise cross-correlation of ``x`` [N,H,W,C] with ``kernel`` [kh,kw,1,C]."""
    return _tap_sum(x, kernel, geometry)


def _correlate_fwd(x, kernel, geometry):
    return _tap_sum(x, kernel, geometry), (x, kernel)


def _correlate_bwd(geometry, residuals, dy):
    x, kernel = residuals
    dkernel = _kernel_grad(x, dy, geometry, kernel.shape).astype(kernel.dtype)
    return _input_grad(dy, kernel, geometry, x.shape), dkernel


correlate.defvjp(_correlate_fwd, _correlate_bwd)


def _windows(
    x: jax.Array, kernel_shape: Shape, geometry: Geometry
) -> Iterator[tuple[int, int, jax.Array]]:
    """(i, j, the input pixels tap (i, j) multiplies, [N,Ho,Wo,C]) for every tap."""
    kh, kw, _, channels = kernel_shape
    n, ho, wo, _ = output_shape(x.shape, kernel_shape, geometry)
    padded = jnp.pad(x, ((0, 0), *geometry.padding, (0, 0)))
    s = geometry.stride
    for i in range(kh):
        for j in range(kw):
            end = (n, i + (ho - 1) * s + 1, j + (wo - 1) * s + 1, channels)
            yield i, j, lax.slice(padded, (0, i, j, 0), end, (1, s, s, 1))


def _tap_sum(x: jax.Array, kernel: jax.Array, geometry: Geometry) -> jax.Array:
    taps = kernel.astype(jnp.float32)
    total = sum(
        window.astype(jnp.float32) * taps[i, j, 0]
        for i, j, window in _windows(x, kernel.shape, geometry)
    )
    return total.astype(x.dtype)


def _input_grad(dy: jax.Array, kernel: jax.Array, geometry: Geometry, x_shape: Shape) -> jax.Array:
    """dx [N,H,W,C]: the tap sum of the flipped kernel over dy dilated by the stride and
    padded so that output pixel q sums dy[o] * kernel[q + pad - o * stride]."""
    s = geometry.stride
    config = [(0, 0, 0)]
    for axis, k in enumerate(kernel.shape[:2]):
        low, high = geometry.padding[axis]
        unused = (x_shape[1 + axis] + low + high - k) % s  # input rows no output reads
        config.append((k - 1 - low, k - 1 - high + unused, s - 1))
    config.append((0, 0, 0))
    dilated = lax.pad(dy, jnp.zeros((), dy.dtype), config)
    return _tap_sum(dilated, kernel[::-1, ::-1], _UNPADDED)


def _kernel_grad(x: jax.Array, dy: jax.Array, geometry: Geometry, kernel_shape: Shape) -> jax.Array:
    """dkernel [kh,kw,1,C] (float32): per tap, the sum over N, Ho, Wo of its window of the
    padded input times dy, one tap per step of a loop (XLA:CPU runs k * k separate
    reductions in one program several times slower)."""
    kh, kw, _, channels = kernel_shape
    n, ho, wo, _ = dy.shape
    s = geometry.stride
    padded = jnp.pad(x, ((0, 0), *geometry.padding, (0, 0)))
    dy = dy.astype(jnp.float32)
    span = (n, (ho - 1) * s + 1, (wo - 1) * s + 1, channels)

    def tap_sum(carry: None, tap: jax.Array) -> tuple[None, jax.Array]:
        window = lax.dynamic_slice(padded, (0, tap // kw, tap % kw, 0), span)[:, ::s, ::s]
        return carry, jnp.sum(window.astype(jnp.float32) * dy, axis=(0, 1, 2))

    _, sums = lax.scan(tap_sum, None, jnp.arange(kh * kw))
    return sums.reshape(kh, kw, 1, channels)
