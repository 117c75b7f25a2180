"""Convolution primitives behind every layer of the networks, chosen in one place.

All tensors are NHWC and kernels HWIO, so the parameters are the same whichever
implementation runs: a checkpoint trained with one loads into the other.
"""

from __future__ import annotations

import jax
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int, padding: Padding,
           impl: str = "native") -> jax.Array:
    """Cross-correlation of ``x`` [N,H,W,Cin] with ``kernel`` [kh,kw,Cin,Cout]."""
    return lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding=padding,
        dimension_numbers=_DIMENSIONS)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, *, impl: str = "native") -> jax.Array:
    """Stride-2 transposed convolution with a 4x4 kernel, as PyTorch's
    ``ConvTranspose2d(cin, cout, 4, stride=2, padding=1)``: the output is exactly 2x the input.

    ``kernel`` is [4, 4, Cin, Cout]; it is applied as the gradient of a stride-2 convolution
    with that kernel, i.e. a 1-dilated input convolved with the spatially flipped kernel.
    """
    flipped = kernel[::-1, ::-1]
    return lax.conv_general_dilated(
        x, flipped, window_strides=(1, 1), padding=((2, 2), (2, 2)), lhs_dilation=(2, 2),
        dimension_numbers=_DIMENSIONS)
