"""Convolution primitives behind every layer of the networks, chosen in one place.

All tensors are NHWC and kernels HWIO, so the parameters are the same whichever
implementation runs: a checkpoint trained with one loads into the other.

Implementations (``impl``):

* ``native``: XLA's convolutions, differentiated by JAX. The right choice on GPU/TPU.
* ``matmul``: every pass (forward, input gradient, kernel gradient) as one matrix product
  over im2col patches, with the input gradient scattered back by a phase-wise overlap-add
  (col2im). The FLOPs of the plain convolution, padding taps included.
* ``hybrid``: a custom VJP that runs each of the three passes in the form XLA:CPU runs fast.
  A transposed convolution is run as the input gradient of a stride-2 correlation, so its
  backward pass is that correlation's forward pass and kernel gradient (XLA:CPU
  differentiates its own transposed convolution at ~3-10 GFLOP/s). Each pass is a matrix
  product when the strided side has at most ``GEMM_MAX_PIXELS`` pixels per image or the
  full-resolution side at most ``GEMM_MAX_CHANNELS`` channels (where XLA's convolutions are
  slowest and the im2col buffers small). Otherwise it is XLA's own convolution, except the
  input gradient of a 4x4 stride-2 correlation, which runs as that of the equivalent 2x2
  stride-1 correlation over the space-to-depth input (~1.5x faster on XLA:CPU). Like im2col,
  these matrix products and 2x2 correlations also multiply the zero padding, which XLA's
  FLOP count of its own convolutions leaves out: 3% more counted FLOPs at 32x32, 14% at 8x8.
* ``auto``: ``hybrid`` on CPU, ``native`` elsewhere (see ``resolve_impl``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]
Shape = tuple[int, ...]

IMPLS = ("auto", "native", "matmul", "hybrid")

# A pass runs as a matrix product in ``hybrid`` when the strided side of the convolution
# (the output of a convolution, the input of a transposed one) has at most this many pixels
# per image: XLA:CPU's convolutions are slowest there, the im2col buffers smallest.
GEMM_MAX_PIXELS = 64
# ... and when the full-resolution side has at most this many channels (the network's image
# input and output layers), where im2col is cheap and XLA's convolution vectorizes poorly.
GEMM_MAX_CHANNELS = 4

# Otherwise the input gradient of a 4x4 stride-2 correlation with at least this many input
# channels runs as the input gradient of a 2x2 stride-1 correlation over the space-to-depth
# input, which XLA:CPU runs ~1.5x faster than its own (lhs-dilated) form.
SPACE_TO_DEPTH_MIN_CHANNELS = 8

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def resolve_impl(impl: str) -> str:
    """The implementation ``impl`` names, with ``auto`` resolved for the default backend.

    ``auto`` is ``hybrid`` on CPU, for training and inference alike (its forward pass is
    XLA's own except on small maps, where the matrix product is also faster), and
    ``native`` on GPU and TPU, whose convolution libraries need no help.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; valid: {', '.join(IMPLS)}")
    if impl == "auto":
        return "hybrid" if jax.default_backend() == "cpu" else "native"
    return impl


def conv2d(
    x: jax.Array, kernel: jax.Array, *, stride: int, padding: Padding, impl: str = "native"
) -> jax.Array:
    """Cross-correlation of ``x`` [N,H,W,Cin] with ``kernel`` [kh,kw,Cin,Cout]."""
    impl = resolve_impl(impl)
    geometry = _Geometry(stride, padding)
    if impl == "native":
        return _native_correlate(x, kernel, geometry)
    return _custom_conv2d(x, kernel, geometry, impl)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, *, impl: str = "native") -> jax.Array:
    """Stride-2 transposed convolution with a 4x4 kernel, as PyTorch's
    ``ConvTranspose2d(cin, cout, 4, stride=2, padding=1)``: the output is exactly 2x the input.

    ``kernel`` is [4, 4, Cin, Cout]; it is applied as the gradient of a stride-2 convolution
    with that kernel, i.e. a 1-dilated input convolved with the spatially flipped kernel.
    """
    impl = resolve_impl(impl)
    if impl == "native":
        flipped = kernel[::-1, ::-1]
        return lax.conv_general_dilated(
            x,
            flipped,
            window_strides=(1, 1),
            padding=((2, 2), (2, 2)),
            lhs_dilation=(2, 2),
            dimension_numbers=_DIMENSIONS,
        )
    return _custom_conv_transpose2d(x, kernel, impl)


# ---- geometry ----


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Stride and zero padding of a cross-correlation (hashable: a static argument)."""

    stride: int
    padding: Padding

    def output_size(self, size: int, kernel_size: int, axis: int) -> int:
        low, high = self.padding[axis]
        return (size + low + high - kernel_size) // self.stride + 1


# PyTorch's ConvTranspose2d(k=4, s=2, p=1) is the input gradient of this correlation.
_UPSAMPLE_GEOMETRY = _Geometry(stride=2, padding=((1, 1), (1, 1)))


def _output_shape(x_shape: Shape, kernel_shape: Shape, geometry: _Geometry) -> Shape:
    kh, kw, _, cout = kernel_shape
    n, h, w, _ = x_shape
    return n, geometry.output_size(h, kh, 0), geometry.output_size(w, kw, 1), cout


def _use_matmul(impl: str, x_shape: Shape, y_shape: Shape) -> bool:
    """Whether a pass of the correlation from x [N,H,W,Cin] to y [N,Ho,Wo,Cout] runs as a
    matmul."""
    small_map = y_shape[1] * y_shape[2] <= GEMM_MAX_PIXELS
    thin_input = x_shape[3] <= GEMM_MAX_CHANNELS
    return impl == "matmul" or small_map or thin_input


def _swap_io(kernel: jax.Array) -> jax.Array:
    """[kh,kw,A,B] -> [kh,kw,B,A]."""
    return jnp.swapaxes(kernel, 2, 3)


# ---- custom VJPs ----


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _custom_conv2d(x: jax.Array, kernel: jax.Array, geometry: _Geometry, impl: str) -> jax.Array:
    return _correlate(x, kernel, geometry, impl)


def _custom_conv2d_fwd(x, kernel, geometry, impl):
    return _correlate(x, kernel, geometry, impl), (x, kernel)


def _custom_conv2d_bwd(geometry, impl, residuals, dy):
    x, kernel = residuals
    dx = _correlate_input_grad(dy, kernel, geometry, x.shape, impl)
    dkernel = _correlate_kernel_grad(x, dy, geometry, kernel.shape, impl)
    return dx, dkernel


_custom_conv2d.defvjp(_custom_conv2d_fwd, _custom_conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _custom_conv_transpose2d(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    return _upsample(x, kernel, impl)


def _upsample(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    """The transposed convolution as the input gradient of a stride-2 correlation."""
    n, h, w, _ = x.shape
    out_shape = (n, 2 * h, 2 * w, kernel.shape[3])
    return _correlate_input_grad(x, _swap_io(kernel), _UPSAMPLE_GEOMETRY, out_shape, impl)


def _custom_conv_transpose2d_fwd(x, kernel, impl):
    return _upsample(x, kernel, impl), (x, kernel)


def _custom_conv_transpose2d_bwd(impl, residuals, dy):
    x, kernel = residuals
    dx = _correlate(dy, _swap_io(kernel), _UPSAMPLE_GEOMETRY, impl)
    dkernel = _correlate_kernel_grad(dy, x, _UPSAMPLE_GEOMETRY, _swap_io(kernel).shape, impl)
    return dx, _swap_io(dkernel)


_custom_conv_transpose2d.defvjp(_custom_conv_transpose2d_fwd, _custom_conv_transpose2d_bwd)


# ---- the three passes of a correlation y = x * kernel ----


def _correlate(x: jax.Array, kernel: jax.Array, geometry: _Geometry, impl: str) -> jax.Array:
    """y [N,Ho,Wo,Cout] from x [N,H,W,Cin]."""
    if _use_matmul(impl, x.shape, _output_shape(x.shape, kernel.shape, geometry)):
        kh, kw, cin, cout = kernel.shape
        return _matmul(_im2col(x, kh, kw, geometry), kernel.reshape(kh * kw * cin, cout))
    return _native_correlate(x, kernel, geometry)


def _correlate_input_grad(
    dy: jax.Array, kernel: jax.Array, geometry: _Geometry, x_shape: Shape, impl: str
) -> jax.Array:
    """dx [N,H,W,Cin] from dy [N,Ho,Wo,Cout]."""
    if _use_matmul(impl, x_shape, dy.shape):
        kh, kw, _, cout = kernel.shape
        patch_grads = lax.dot_general(
            dy.reshape(-1, cout), kernel.reshape(-1, cout), (((1,), (1,)), ((), ()))
        )
        return _col2im(patch_grads.reshape(*dy.shape[:3], -1), x_shape, kh, kw, geometry)
    if _space_to_depth_applies(kernel.shape, geometry):
        return _space_to_depth_input_grad(dy, kernel, geometry, x_shape)
    return _native_transpose(lambda x: _native_correlate(x, kernel, geometry), dy, x_shape)


def _correlate_kernel_grad(
    x: jax.Array, dy: jax.Array, geometry: _Geometry, kernel_shape: Shape, impl: str
) -> jax.Array:
    """dkernel [kh,kw,Cin,Cout] from x [N,H,W,Cin] and dy [N,Ho,Wo,Cout]."""
    if _use_matmul(impl, x.shape, dy.shape):
        kh, kw, cin, cout = kernel_shape
        patches = _im2col(x, kh, kw, geometry).reshape(-1, kh * kw * cin)
        dkernel = lax.dot_general(patches, dy.reshape(-1, cout), (((0,), (0,)), ((), ())))
        return dkernel.reshape(kernel_shape)
    return _native_transpose(lambda k: _native_correlate(x, k, geometry), dy, kernel_shape)


# ---- native building blocks ----


def _native_correlate(x: jax.Array, kernel: jax.Array, geometry: _Geometry) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(geometry.stride, geometry.stride),
        padding=geometry.padding,
        dimension_numbers=_DIMENSIONS,
    )


def _native_transpose(
    linear: Callable[[jax.Array], jax.Array], cotangent: jax.Array, primal_shape: Shape
) -> jax.Array:
    """The transpose of the linear map ``linear`` (whose input is ``primal_shape``) applied
    to ``cotangent``, as XLA derives it."""
    primal = jax.ShapeDtypeStruct(primal_shape, cotangent.dtype)
    (result,) = jax.linear_transpose(linear, primal)(cotangent)
    return result


# ---- space-to-depth: a 4x4 stride-2 correlation as a 2x2 stride-1 one over 4x the channels ----


def _space_to_depth_applies(kernel_shape: Shape, geometry: _Geometry) -> bool:
    kh, kw, cin, _ = kernel_shape
    return (kh, kw, geometry.stride) == (4, 4, 2) and cin >= SPACE_TO_DEPTH_MIN_CHANNELS


def _space_to_depth_input_grad(
    dy: jax.Array, kernel: jax.Array, geometry: _Geometry, x_shape: Shape
) -> jax.Array:
    """dx of a 4x4 stride-2 correlation, as XLA's input gradient of the equivalent 2x2
    stride-1 correlation over the space-to-depth input (padded to 2 * (Ho + 1) rows)."""
    n, _, _, cin = x_shape
    _, ho, wo, _ = dy.shape
    folded_kernel = _fold_kernel(kernel)
    folded_shape = (n, ho + 1, wo + 1, 4 * cin)
    folded_grad = _native_transpose(
        lambda z: _native_correlate(z, folded_kernel, _Geometry(1, ((0, 0), (0, 0)))),
        dy,
        folded_shape,
    )
    return _crop_padding(_depth_to_space(folded_grad), x_shape, geometry)


def _fold_kernel(kernel: jax.Array) -> jax.Array:
    """[4,4,C,O] -> [2,2,4C,O]: tap (2a + ry, 2b + rx) becomes tap (a, b), channel block
    (ry, rx)."""
    _, _, cin, cout = kernel.shape
    blocks = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    return blocks.reshape(2, 2, 4 * cin, cout)


def _depth_to_space(z: jax.Array) -> jax.Array:
    """[N,H,W,4C] -> [N,2H,2W,C]: channel block (ry, rx) becomes pixel offset (ry, rx)."""
    n, h, w, c4 = z.shape
    pixels = z.reshape(n, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return pixels.reshape(n, 2 * h, 2 * w, c4 // 4)


def _crop_padding(padded: jax.Array, x_shape: Shape, geometry: _Geometry) -> jax.Array:
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


# ---- matmul building blocks ----


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """[..., K] @ [K, M] -> [..., M] as one 2-D matrix product."""
    rows = a.reshape(-1, a.shape[-1]) @ b
    return rows.reshape(*a.shape[:-1], b.shape[-1])


def _im2col(x: jax.Array, kh: int, kw: int, geometry: _Geometry) -> jax.Array:
    """Patches [N,Ho,Wo,kh*kw*C] of the zero-padded ``x``, ordered (row, column, channel)."""
    n, _, _, c = x.shape
    _, ho, wo, _ = _output_shape(x.shape, (kh, kw, c, 1), geometry)
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


def _col2im(cols: jax.Array, x_shape: Shape, kh: int, kw: int, geometry: _Geometry) -> jax.Array:
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
    return _crop_padding(grid.reshape(n, s * phase_h, s * phase_w, c), x_shape, geometry)


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
