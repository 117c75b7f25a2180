"""The three passes of a convolution (forward, input gradient, kernel gradient) as matrix
products, in one of two ``FORMS``. Products take their inputs in the input's dtype (on CPU,
bfloat16 runs on the bfloat16 units) and accumulate in float32; outputs and input gradients
come back in the input's dtype, kernel gradients in float32.

``strided``: im2col over the strided patches of the zero-padded input and one product; the
input gradient is one product to patch gradients, overlap-added back (col2im), the kernel
gradient one product of the patches with the output gradient.

``taps`` reduces every pass, at any stride, to a stride-1 correlation:

* a stride-``s`` correlation is a stride-1 correlation of the space-to-depth input
  (``s * s`` times the channels) with the kernel folded the same way;
* its input gradient is, per output phase (the ``s * s`` pixel offsets modulo ``s``), a
  stride-1 correlation of the zero-padded output gradient with the flipped kernel taps of
  that phase. All phases read the same padded gradient, so they are one correlation whose
  output channels are the phases, interleaved back into pixels (depth-to-space); this is
  also how a transposed convolution runs, with no multiplications by inserted zeros;
* its kernel gradient is the kernel gradient of the stride-1 form, unfolded.

and runs that as a sum over the kernel taps of a shifted slice of the input times the tap's
[Cin, Cout] matrix (no patch buffer; per-layer measurements had im2col of the folded input,
or one product per kernel row, slower). Like im2col, it also multiplies the zero padding.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]
Shape = tuple[int, ...]

FORMS = ("strided", "taps")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Stride and zero padding of a cross-correlation (hashable: a static argument)."""

    stride: int
    padding: Padding

    def output_size(self, size: int, kernel_size: int, axis: int) -> int:
        low, high = self.padding[axis]
        return (size + low + high - kernel_size) // self.stride + 1


def output_shape(x_shape: Shape, kernel_shape: Shape, geometry: Geometry) -> Shape:
    """Shape of the correlation of x [N,H,W,Cin] with kernel [kh,kw,Cin,Cout]."""
    kh, kw, _, cout = kernel_shape
    n, h, w, _ = x_shape
    return n, geometry.output_size(h, kh, 0), geometry.output_size(w, kw, 1), cout


# ---- the three passes ----


def correlate(x: jax.Array, kernel: jax.Array, geometry: Geometry, form: str) -> jax.Array:
    """y [N,Ho,Wo,Cout] from x [N,H,W,Cin], in x's dtype."""
    kernel = kernel.astype(x.dtype)
    if form == "strided":
        kh, kw, cin, cout = kernel.shape
        patches = _im2col(x, kh, kw, geometry)
        y = _product(patches.reshape(-1, kh * kw * cin), kernel.reshape(-1, cout), (1, 0))
        return y.reshape(*patches.shape[:3], cout).astype(x.dtype)
    _, ho, wo, _ = output_shape(x.shape, kernel.shape, geometry)
    folded_x = _fold_input(x, kernel.shape, geometry, (ho, wo))
    y = _correlate_valid(folded_x, fold_kernel(kernel, geometry.stride))
    return y.astype(x.dtype)


def correlate_input_grad(
    dy: jax.Array, kernel: jax.Array, geometry: Geometry, x_shape: Shape, form: str
) -> jax.Array:
    """dx [N,H,W,Cin] from dy [N,Ho,Wo,Cout], in dy's dtype."""
    kernel = kernel.astype(dy.dtype)
    if form == "strided":
        kh, kw, _, cout = kernel.shape
        patch_grads = _product(dy.reshape(-1, cout), kernel.reshape(-1, cout), (1, 1))
        patch_grads = patch_grads.astype(dy.dtype).reshape(*dy.shape[:3], -1)
        return _col2im(patch_grads, x_shape, kh, kw, geometry)
    s = geometry.stride
    kh, kw = kernel.shape[:2]
    taps_h, taps_w = -(-kh // s), -(-kw // s)
    padded_dy = jnp.pad(dy, ((0, 0), (taps_h - 1,) * 2, (taps_w - 1,) * 2, (0, 0)))
    phases = _correlate_valid(padded_dy, _phase_kernel(kernel, s))
    return crop_padding(depth_to_space(phases.astype(dy.dtype), s), x_shape, geometry)


def correlate_kernel_grad(
    x: jax.Array, dy: jax.Array, geometry: Geometry, kernel_shape: Shape, form: str
) -> jax.Array:
    """dkernel [kh,kw,Cin,Cout] from x [N,H,W,Cin] and dy [N,Ho,Wo,Cout], in float32."""
    kh, kw, cin, cout = kernel_shape
    x = x.astype(dy.dtype)
    if form == "strided":
        patches = _im2col(x, kh, kw, geometry).reshape(-1, kh * kw * cin)
        return _product(patches, dy.reshape(-1, cout), (0, 0)).reshape(kernel_shape)
    s = geometry.stride
    folded_x = _fold_input(x, kernel_shape, geometry, dy.shape[1:3])
    folded = _kernel_grad_valid(_channels_first(folded_x), dy)
    taps_h, taps_w = folded.shape[:2]
    unfolded = folded.reshape(taps_h, taps_w, s, s, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    return unfolded.reshape(taps_h * s, taps_w * s, cin, cout)[:kh, :kw]


# ---- stride-1 "valid" correlations as sums over taps ----


def _product(a: jax.Array, b: jax.Array, contracting: tuple[int, int]) -> jax.Array:
    """2-D matrix product contracting axis ``contracting[0]`` of ``a`` with
    ``contracting[1]`` of ``b``, accumulated and returned in float32."""
    dims = (((contracting[0],), (contracting[1],)), ((), ()))
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _taps(a: int, b: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(a) for j in range(b)]


def _correlate_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 correlation without padding, float32: [N,H,W,C] * [a,b,C,O], as the sum over
    taps of the shifted input times the tap's [C, O] matrix."""
    x = _materialized(x)
    a, b, c, o = kernel.shape
    n, h, w, _ = x.shape
    ho, wo = h - a + 1, w - b + 1

    def tap_product(i: int, j: int) -> jax.Array:
        shifted = lax.slice(x, (0, i, j, 0), (n, i + ho, j + wo, c))
        return _product(shifted.reshape(-1, c), kernel[i, j], (1, 0))

    return sum(tap_product(i, j) for i, j in _taps(a, b)).reshape(n, ho, wo, o)


def _materialized(x: jax.Array) -> jax.Array:
    """``x`` computed once into its own buffer: the shifted slices of every tap read it
    instead of each recomputing its producers (padding, folding, the previous layer's norm and
    activation), which XLA would otherwise fuse into each of them."""
    return lax.optimization_barrier(x)


def _channels_first(x: jax.Array) -> jax.Array:
    """[N,H,W,C] -> [C,N,H,W], materialized once: the kernel gradient's products contract
    over pixels, which the CPU's bfloat16 matrix products need as the last axis of their
    left operand (a transpose folded into the product would run it in float32)."""
    return _materialized(jnp.transpose(x, (3, 0, 1, 2)))


def _kernel_grad_valid(x_t: jax.Array, dy: jax.Array) -> jax.Array:
    """Kernel gradient [a,b,C,O] (float32) of the stride-1 unpadded correlation of the
    channels-first x_t [C,N,H,W] giving dy [N,Ho,Wo,O], one product per tap."""
    c, n, h, w = x_t.shape
    _, ho, wo, o = dy.shape
    a, b = h - ho + 1, w - wo + 1
    rows = dy.reshape(-1, o)

    def tap_product(i: int, j: int) -> jax.Array:
        shifted = lax.slice(x_t, (0, 0, i, j), (c, n, i + ho, j + wo))
        return _product(shifted.reshape(c, -1), rows, (1, 0))

    return jnp.stack([tap_product(i, j) for i, j in _taps(a, b)]).reshape(a, b, c, o)


# ---- folding a stride-s correlation into a stride-1 one ----


def _fold_input(x: jax.Array, kernel_shape: Shape, geometry: Geometry, out_hw) -> jax.Array:
    """The zero-padded ``x`` as [N, Ho + A - 1, Wo + B - 1, s*s*Cin] (A = ceil(kh / s)):
    pixel (s*q + ry, s*r + rx) becomes pixel (q, r), channel block (ry, rx)."""
    s = geometry.stride
    kh, kw = kernel_shape[:2]
    n, h, w, c = x.shape
    rows, cols = s * (out_hw[0] + -(-kh // s) - 1), s * (out_hw[1] + -(-kw // s) - 1)
    (top, _), (left, _) = geometry.padding
    padded = jnp.pad(
        x, ((0, 0), (top, max(rows - h - top, 0)), (left, max(cols - w - left, 0)), (0, 0))
    )[:, :rows, :cols]
    if s == 1:
        return padded
    blocks = padded.reshape(n, rows // s, s, cols // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, rows // s, cols // s, s * s * c)


def fold_kernel(kernel: jax.Array, stride: int) -> jax.Array:
    """[kh,kw,C,O] -> [A,B,s*s*C,O] (A = ceil(kh / s)): tap (s*a + ry, s*b + rx) becomes
    tap (a, b), channel block (ry, rx); taps past the kernel's edge are zero."""
    s = stride
    kh, kw, c, o = kernel.shape
    a, b = -(-kh // s), -(-kw // s)
    if s == 1:
        return kernel
    padded = jnp.pad(kernel, ((0, s * a - kh), (0, s * b - kw), (0, 0), (0, 0)))
    blocks = padded.reshape(a, s, b, s, c, o).transpose(0, 2, 1, 3, 4, 5)
    return blocks.reshape(a, b, s * s * c, o)


def _phase_kernel(kernel: jax.Array, stride: int) -> jax.Array:
    """[kh,kw,C,O] -> [A,B,O,s*s*C]: the flipped taps of each output phase (ry, rx) of the
    input gradient, phases as output-channel blocks."""
    s = stride
    kh, kw, c, o = kernel.shape
    a, b = -(-kh // s), -(-kw // s)
    padded = jnp.pad(kernel, ((0, s * a - kh), (0, s * b - kw), (0, 0), (0, 0)))
    blocks = padded.reshape(a, s, b, s, c, o)[::-1, :, ::-1]
    return blocks.transpose(0, 2, 5, 1, 3, 4).reshape(a, b, o, s * s * c)


def depth_to_space(z: jax.Array, block: int = 2) -> jax.Array:
    """[N,H,W,b*b*C] -> [N,b*H,b*W,C]: channel block (i, j) becomes pixel offset (i, j)."""
    n, h, w, channels = z.shape
    c = channels // (block * block)
    pixels = z.reshape(n, h, w, block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return pixels.reshape(n, block * h, block * w, c)


def crop_padding(padded: jax.Array, x_shape: Shape, geometry: Geometry) -> jax.Array:
    """The gradient wrt x from one wrt its zero-padded version, given as ``padded``; rows and
    columns past ``padded``'s end (never read by the correlation) get zero gradient."""
    _, h, w, _ = x_shape
    (top, bottom), (left, right) = geometry.padding
    full_h, full_w = h + top + bottom, w + left + right
    padded = padded[:, :full_h, :full_w]
    padded = jnp.pad(
        padded, ((0, 0), (0, full_h - padded.shape[1]), (0, full_w - padded.shape[2]), (0, 0))
    )
    return padded[:, top : top + h, left : left + w]


# ---- strided im2col and its adjoint ----


def _im2col(x: jax.Array, kh: int, kw: int, geometry: Geometry) -> jax.Array:
    """Patches [N,Ho,Wo,kh*kw*C] of the zero-padded ``x``, ordered (row, column, channel)."""
    n, _, _, c = x.shape
    _, ho, wo, _ = output_shape(x.shape, (kh, kw, c, 1), geometry)
    s = geometry.stride
    padded = jnp.pad(x, ((0, 0), *geometry.padding, (0, 0)))
    taps = [
        lax.slice(
            padded, (0, i, j, 0), (n, i + s * (ho - 1) + 1, j + s * (wo - 1) + 1, c), (1, s, s, 1)
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(taps, axis=-1)


def _col2im(cols: jax.Array, x_shape: Shape, kh: int, kw: int, geometry: Geometry) -> jax.Array:
    """The adjoint of ``_im2col``: overlap-adds patch gradients [N,Ho,Wo,kh*kw*C] into x.

    Padded row ``stride * o + i`` receives tap ``i`` of output row ``o``; so output phase
    ``r = i % stride`` is a sum of the taps of that phase, each shifted by ``i // stride``.
    The phases are then interleaved (depth-to-space) and the padding cropped.
    """
    n, _, _, c = x_shape
    _, ho, wo, _ = cols.shape
    s = geometry.stride
    taps = cols.reshape(n, ho, wo, kh, kw, c)
    phase_h, phase_w = ho + -(-kh // s) - 1, wo + -(-kw // s) - 1
    phases = [[_phase_sum(taps, ry, rx, s, phase_h, phase_w) for rx in range(s)] for ry in range(s)]
    grid = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
    return crop_padding(grid.reshape(n, s * phase_h, s * phase_w, c), x_shape, geometry)


def _phase_sum(
    taps: jax.Array, ry: int, rx: int, stride: int, phase_h: int, phase_w: int
) -> jax.Array:
    """Sum of the taps (i, j) with i % stride == ry and j % stride == rx, each shifted by
    (i // stride, j // stride), on a [N, phase_h, phase_w, C] grid."""
    n, ho, wo, kh, kw, c = taps.shape
    total = jnp.zeros((n, phase_h, phase_w, c), taps.dtype)
    for i in range(ry, kh, stride):
        for j in range(rx, kw, stride):
            dy, dx = i // stride, j // stride
            shifted = jnp.pad(
                taps[:, :, :, i, j],
                ((0, 0), (dy, phase_h - ho - dy), (dx, phase_w - wo - dx), (0, 0)),
            )
            total = total + shifted
    return total
