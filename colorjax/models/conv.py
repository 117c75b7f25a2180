"""Convolution primitives behind every layer of the networks, chosen in one place.

All tensors are NHWC and kernels HWIO, so the parameters are the same whichever
implementation runs: a checkpoint trained with one loads into the other. The compute dtype is
that of the input ``x``; the kernel (float32 parameters) is cast to it inside, and its
gradient comes back in the kernel's own dtype.

Implementations (``impl``):

* ``native``: XLA's convolutions, differentiated by JAX. The right choice on GPU/TPU.
* ``matmul``: every pass (forward, input gradient, kernel gradient) as one matrix product
  over im2col patches, with the input gradient scattered back by a phase-wise overlap-add
  (col2im): ``colorjax.models.gemm``'s ``strided`` form. The FLOPs of the plain
  convolution, padding taps included.
* ``hybrid``: a custom VJP that runs each of the three passes in the form XLA:CPU runs fast.
  A transposed convolution is run as the input gradient of a stride-2 correlation, so its
  backward pass is that correlation's forward pass and kernel gradient (XLA:CPU
  differentiates its own transposed convolution at ~3-10 GFLOP/s). The choice of each pass
  depends on the compute dtype (``pass_choice``):

  - float32 (and float16): a pass is a ``strided`` matrix product when the strided side has
    at most ``GEMM_MAX_PIXELS`` pixels per image or, for the gradients, the full-resolution
    side at most ``GEMM_MAX_CHANNELS`` channels (where XLA's convolutions are slowest and the
    im2col buffers small). Otherwise it is XLA's own convolution, except the input gradient of a
    4x4 stride-2 correlation, which runs as that of the equivalent 2x2 stride-1 correlation
    over the space-to-depth input (~1.5x faster on XLA:CPU).
  - bfloat16: XLA:CPU runs bfloat16 convolutions in float32, but bfloat16 matrix products
    (float32 accumulation) on the CPU's bfloat16 units, 3-5x faster than float32 ones. So a
    pass whose Cin * Cout is at least ``BF16_TAPS_MIN_CHANNEL_PRODUCT``, whose strided side
    has at least ``BF16_TAPS_MIN_PIXELS`` pixels and Cout at least ``BF16_TAPS_MIN_COUT``
    channels is a matrix product in gemm's folded ``taps`` form; otherwise it is the float32
    choice (on small maps the ``strided`` product, in bfloat16). A pass below the channel
    product (the image input and output layers, the narrow wide maps, where the folded
    form's data movement costs more than the products save) runs the float32 choice on
    float32 copies of its operands: XLA:CPU's float32 patch copies are cheaper than its
    bfloat16 ones, and its bfloat16 convolutions run in float32 anyway.

  Like im2col, these matrix products and 2x2 correlations also multiply the zero padding,
  which XLA's FLOP count of its own convolutions leaves out: 3% more counted FLOPs at 32x32,
  14% at 8x8.
* ``onednn``: oneDNN's convolutions (``colorjax.models.onednn``) for the passes where they
  beat ``hybrid`` (``_onednn_runs``), ``hybrid``'s choice for the others.
* ``auto``: ``onednn`` on x86-64 CPUs where its extension builds, else ``hybrid`` on CPU;
  ``native`` elsewhere (see ``resolve_impl``).

Grouped convolutions: depthwise ones run as ``colorjax.models.depthwise``'s sums over the taps
under every implementation but ``native``; other grouped ones through oneDNN under ``onednn``
and as XLA's own under the others.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from colorjax.models import depthwise, gemm, onednn
from colorjax.models.gemm import Geometry, Padding, Shape

IMPLS = ("auto", "native", "matmul", "hybrid", "onednn")
PASSES = ("forward", "input_grad", "kernel_grad")

# A float32 pass runs as a matrix product in ``hybrid`` when the strided side of the
# convolution (the output of a convolution, the input of a transposed one) has at most this
# many pixels per image: XLA:CPU's convolutions are slowest there, the im2col buffers smallest.
GEMM_MAX_PIXELS = 64
# ... and a gradient pass when the full-resolution side has at most this many channels (the
# network's image input and output layers), where im2col is cheap and XLA's convolution
# vectorizes poorly (their forward pass is faster as XLA's own).
GEMM_MAX_CHANNELS = 4

# Otherwise the input gradient of a 4x4 stride-2 correlation with at least this many input
# channels runs as the input gradient of a 2x2 stride-1 correlation over the space-to-depth
# input, which XLA:CPU runs ~1.5x faster than its own (lhs-dilated) form.
SPACE_TO_DEPTH_MIN_CHANNELS = 8

# A bfloat16 pass runs in gemm's folded ``taps`` form when Cin * Cout of the correlation is at
# least this (below, the products are too small to pay for the data movement around them) ...
BF16_TAPS_MIN_CHANNEL_PRODUCT = 2**14
# ... and the strided side has at least this many pixels per image (by pass; smaller maps
# take the float32 choice, a strided matrix product). Measured on the pix2pix_unet128 and
# cbsd_cpu layers at batch 16.
BF16_TAPS_MIN_PIXELS = {"forward": 4, "input_grad": 64, "kernel_grad": 16}
# ... and Cout at least this (by pass: the gradients' products are too thin below; e.g. the
# 3x3 convolutions to 128 or 64 channels of cbsd_cpu's decoder).
BF16_TAPS_MIN_COUT = {"forward": 128, "input_grad": 256, "kernel_grad": 256}

# ``onednn`` leaves a pass to ``hybrid`` where the strided side has at most this many pixels
# per image, by compute dtype and pass (oneDNN's per-call overhead and blocking lose to one
# matrix product there; its bfloat16 kernels win down to smaller maps than its float32 ones,
# except the kernel gradient; other dtypes, such as float16, always stay with ``hybrid``) ...
ONEDNN_MAX_HYBRID_PIXELS = {
    "float32": {"forward": 16, "input_grad": 16, "kernel_grad": 16},
    "bfloat16": {"forward": 4, "input_grad": 4, "kernel_grad": 64},
}
# ... or, for the input gradient, the input has at most this many channels, or, in float32,
# the output (the image layers: oneDNN's float32 kernels vectorize over channels; its bfloat16
# ones still beat ``hybrid``'s float32 fallback on a thin output). Measured with
# ``experiments.bench --only layers`` on pix2pix_unet128 at batch 16, quiet 2-core AVX-512.
ONEDNN_THIN_CHANNELS = 4

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")

logger = logging.getLogger(__name__)


def resolve_impl(impl: str) -> str:
    """The implementation ``impl`` names, with ``auto`` resolved for the default backend.

    ``auto`` is ``onednn`` on CPU where oneDNN's convolutions are available (else ``hybrid``,
    saying why once), for training and inference alike, and ``native`` on GPU and TPU, whose
    convolution libraries need no help. ``onednn`` where it is unavailable is an error.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; valid: {', '.join(IMPLS)}")
    if impl == "auto":
        if jax.default_backend() != "cpu":
            return "native"
        return "onednn" if _onednn_or_why_not() else "hybrid"
    if impl == "onednn" and not onednn.available():
        raise RuntimeError(f"conv impl onednn is unavailable: {onednn.unavailable_reason()}")
    return impl


def twice_differentiable(impl: str) -> str:
    """``impl``, or ``hybrid`` where it resolves to ``onednn``: oneDNN's passes have no
    derivatives of their own, which a gradient penalty (R1) differentiates through."""
    return "hybrid" if resolve_impl(impl) == "onednn" else impl


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one axis: ``ceil(size / stride)`` outputs, the extra
    pixel (if the total is odd) at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


@functools.cache
def _onednn_or_why_not() -> bool:
    """Whether oneDNN's convolutions are available, logging once why not when they are not."""
    reason = onednn.unavailable_reason()
    if reason is not None:
        logger.warning("conv_impl=auto runs hybrid, not onednn: %s", reason)
    return reason is None


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: int,
    padding: Padding | str,
    impl: str = "native",
    feature_group_count: int = 1,
) -> jax.Array:
    """Cross-correlation of ``x`` [N,H,W,Cin] with ``kernel`` [kh,kw,Cin/groups,Cout].

    ``padding`` is explicit ((top, bottom), (left, right)) or ``"SAME"`` (``same_padding``).
    Grouped convolutions (``feature_group_count`` > 1): depthwise ones
    (``depthwise.is_depthwise``) run as ``depthwise.correlate`` under every implementation but
    ``native``, the others through oneDNN under ``onednn`` and as XLA's own otherwise.
    """
    impl = resolve_impl(impl)
    if padding == "SAME":
        kh, kw = kernel.shape[:2]
        padding = (same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kw, stride))
    geometry = Geometry(stride, padding)
    if feature_group_count != 1:
        if impl != "native" and depthwise.is_depthwise(x.shape, kernel.shape, feature_group_count):
            return depthwise.correlate(x, kernel, geometry)
        if impl == "onednn":
            return onednn.grouped_conv2d(x, kernel, geometry, feature_group_count)
        return _native_correlate(x, kernel.astype(x.dtype), geometry, feature_group_count)
    if impl == "native":
        return _native_correlate(x, kernel.astype(x.dtype), geometry)
    return _custom_conv2d(x, kernel, geometry, impl)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, *, impl: str = "native") -> jax.Array:
    """Stride-2 transposed convolution with a 4x4 kernel, as PyTorch's
    ``ConvTranspose2d(cin, cout, 4, stride=2, padding=1)``: the output is exactly 2x the input.

    ``kernel`` is [4, 4, Cin, Cout]; it is applied as the gradient of a stride-2 convolution
    with that kernel, i.e. a 1-dilated input convolved with the spatially flipped kernel.
    """
    impl = resolve_impl(impl)
    if impl == "native":
        flipped = kernel[::-1, ::-1].astype(x.dtype)
        return lax.conv_general_dilated(
            x,
            flipped,
            window_strides=(1, 1),
            padding=((2, 2), (2, 2)),
            lhs_dilation=(2, 2),
            dimension_numbers=_DIMENSIONS,
        )
    return _custom_conv_transpose2d(x, kernel, impl)


# PyTorch's ConvTranspose2d(k=4, s=2, p=1) is the input gradient of this correlation.
UPSAMPLE_GEOMETRY = Geometry(stride=2, padding=((1, 1), (1, 1)))


def _swap_io(kernel: jax.Array) -> jax.Array:
    """[kh,kw,A,B] -> [kh,kw,B,A]."""
    return jnp.swapaxes(kernel, 2, 3)


# ---- custom VJPs ----


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _custom_conv2d(x: jax.Array, kernel: jax.Array, geometry: Geometry, impl: str) -> jax.Array:
    return _correlate(x, kernel, geometry, impl)


def _custom_conv2d_fwd(x, kernel, geometry, impl):
    return _correlate(x, kernel, geometry, impl), (x, kernel)


def _custom_conv2d_bwd(geometry, impl, residuals, dy):
    x, kernel = residuals
    dx = _correlate_input_grad(dy, kernel, geometry, x.shape, impl)
    dkernel = _correlate_kernel_grad(x, dy, geometry, kernel.shape, impl)
    return dx, dkernel.astype(kernel.dtype)


_custom_conv2d.defvjp(_custom_conv2d_fwd, _custom_conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _custom_conv_transpose2d(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    return _upsample(x, kernel, impl)


def _upsample(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    """The transposed convolution as the input gradient of a stride-2 correlation."""
    n, h, w, _ = x.shape
    out_shape = (n, 2 * h, 2 * w, kernel.shape[3])
    return _correlate_input_grad(x, _swap_io(kernel), UPSAMPLE_GEOMETRY, out_shape, impl)


def _custom_conv_transpose2d_fwd(x, kernel, impl):
    return _upsample(x, kernel, impl), (x, kernel)


def _custom_conv_transpose2d_bwd(impl, residuals, dy):
    x, kernel = residuals
    dx = _correlate(dy, _swap_io(kernel), UPSAMPLE_GEOMETRY, impl)
    dkernel = _correlate_kernel_grad(dy, x, UPSAMPLE_GEOMETRY, _swap_io(kernel).shape, impl)
    return dx, _swap_io(dkernel).astype(kernel.dtype)


_custom_conv_transpose2d.defvjp(_custom_conv_transpose2d_fwd, _custom_conv_transpose2d_bwd)


# ---- the three passes of a correlation y = x * kernel ----


def run_pass(
    kind: str, impl: str, a: jax.Array, b: jax.Array, geometry: Geometry, out_shape: Shape
) -> jax.Array:
    """Pass ``kind`` (a ``PASSES`` name) of the correlation ``geometry`` describes, as ``impl``
    (not ``auto``) runs it: y from (x, kernel), dx from (dy, kernel) or dkernel from (x, dy);
    ``out_shape`` is that of the result."""
    if kind == "forward":
        if impl == "native":
            return _native_correlate(a, b.astype(a.dtype), geometry)
        return _correlate(a, b, geometry, impl)
    if impl == "native":
        b = b.astype(a.dtype)
        if kind == "input_grad":
            return _native_transpose(lambda x: _native_correlate(x, b, geometry), a, out_shape)
        return _native_transpose(lambda k: _native_correlate(a, k, geometry), b, out_shape)
    if kind == "input_grad":
        return _correlate_input_grad(a, b, geometry, out_shape, impl)
    return _correlate_kernel_grad(a, b, geometry, out_shape, impl)


def pass_choice(kind: str, impl: str, dtype: jnp.dtype, x_shape: Shape, y_shape: Shape) -> str:
    """How ``hybrid`` (or ``matmul``) runs pass ``kind`` of the correlation from x [N,H,W,Cin]
    to y [N,Ho,Wo,Cout]: a ``gemm.FORMS`` name, ``native`` (XLA's convolution, or for the
    input gradient of a 4x4 stride-2 correlation its space-to-depth form), ``float32`` (the
    float32 choice, on float32 copies of the bfloat16 operands) or, for ``onednn``, ``onednn``."""
    if impl == "matmul":
        return "strided"
    if impl == "onednn" and _onednn_runs(kind, dtype, x_shape, y_shape):
        return "onednn"
    pixels = y_shape[1] * y_shape[2]
    if dtype == jnp.bfloat16:
        if x_shape[3] * y_shape[3] < BF16_TAPS_MIN_CHANNEL_PRODUCT:
            return "float32"
        if pixels >= BF16_TAPS_MIN_PIXELS[kind] and y_shape[3] >= BF16_TAPS_MIN_COUT[kind]:
            return "taps"
    small_map = pixels <= GEMM_MAX_PIXELS
    thin_input = x_shape[3] <= GEMM_MAX_CHANNELS and kind != "forward"
    return "strided" if small_map or thin_input else "native"


def _onednn_runs(kind: str, dtype: jnp.dtype, x_shape: Shape, y_shape: Shape) -> bool:
    """Whether ``onednn`` runs pass ``kind`` of the correlation from x to y through oneDNN:
    not on small maps, not out of a thin image layer's input gradient, in float32 not into a
    thin output."""
    name = jnp.dtype(dtype).name
    if name not in ONEDNN_MAX_HYBRID_PIXELS:
        return False
    if y_shape[1] * y_shape[2] <= ONEDNN_MAX_HYBRID_PIXELS[name][kind]:
        return False
    if kind == "input_grad" and x_shape[3] <= ONEDNN_THIN_CHANNELS:
        return False
    return name == "bfloat16" or y_shape[3] > ONEDNN_THIN_CHANNELS


def _correlate(x: jax.Array, kernel: jax.Array, geometry: Geometry, impl: str) -> jax.Array:
    """y [N,Ho,Wo,Cout] from x [N,H,W,Cin]."""
    y_shape = gemm.output_shape(x.shape, kernel.shape, geometry)
    choice = pass_choice("forward", impl, x.dtype, x.shape, y_shape)
    if choice == "float32":
        return _correlate(x.astype(jnp.float32), kernel, geometry, impl).astype(x.dtype)
    if choice == "onednn":
        return onednn.correlate(x, kernel, geometry)
    if choice in gemm.FORMS:
        return gemm.correlate(x, kernel, geometry, choice)
    return _native_correlate(x, kernel.astype(x.dtype), geometry)


def _correlate_input_grad(
    dy: jax.Array, kernel: jax.Array, geometry: Geometry, x_shape: Shape, impl: str
) -> jax.Array:
    """dx [N,H,W,Cin] from dy [N,Ho,Wo,Cout]."""
    choice = pass_choice("input_grad", impl, dy.dtype, x_shape, dy.shape)
    if choice == "float32":
        dx = _correlate_input_grad(dy.astype(jnp.float32), kernel, geometry, x_shape, impl)
        return dx.astype(dy.dtype)
    if choice == "onednn":
        return onednn.correlate_input_grad(dy, kernel, geometry, x_shape)
    if choice in gemm.FORMS:
        return gemm.correlate_input_grad(dy, kernel, geometry, x_shape, choice)
    kernel = kernel.astype(dy.dtype)
    if _space_to_depth_applies(kernel.shape, geometry):
        return _space_to_depth_input_grad(dy, kernel, geometry, x_shape)
    return _native_transpose(lambda x: _native_correlate(x, kernel, geometry), dy, x_shape)


def _correlate_kernel_grad(
    x: jax.Array, dy: jax.Array, geometry: Geometry, kernel_shape: Shape, impl: str
) -> jax.Array:
    """dkernel [kh,kw,Cin,Cout] (float32) from x [N,H,W,Cin] and dy [N,Ho,Wo,Cout]."""
    choice = pass_choice("kernel_grad", impl, dy.dtype, x.shape, dy.shape)
    if choice == "float32":
        x, dy = x.astype(jnp.float32), dy.astype(jnp.float32)
        return _correlate_kernel_grad(x, dy, geometry, kernel_shape, impl)
    if choice == "onednn":
        return onednn.correlate_kernel_grad(x, dy, geometry, kernel_shape)
    if choice in gemm.FORMS:
        return gemm.correlate_kernel_grad(x, dy, geometry, kernel_shape, choice)
    x = x.astype(dy.dtype)
    grad = _native_transpose(lambda k: _native_correlate(x, k, geometry), dy, kernel_shape)
    return grad.astype(jnp.float32)


# ---- native building blocks ----


def _native_correlate(
    x: jax.Array, kernel: jax.Array, geometry: Geometry, feature_group_count: int = 1
) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(geometry.stride, geometry.stride),
        padding=geometry.padding,
        dimension_numbers=_DIMENSIONS,
        feature_group_count=feature_group_count,
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


def _space_to_depth_applies(kernel_shape: Shape, geometry: Geometry) -> bool:
    kh, kw, cin, _ = kernel_shape
    return (kh, kw, geometry.stride) == (4, 4, 2) and cin >= SPACE_TO_DEPTH_MIN_CHANNELS


def _space_to_depth_input_grad(
    dy: jax.Array, kernel: jax.Array, geometry: Geometry, x_shape: Shape
) -> jax.Array:
    """dx of a 4x4 stride-2 correlation, as XLA's input gradient of the equivalent 2x2
    stride-1 correlation over the space-to-depth input (padded to 2 * (Ho + 1) rows)."""
    n, _, _, cin = x_shape
    _, ho, wo, _ = dy.shape
    folded_kernel = gemm.fold_kernel(kernel, 2)
    folded_shape = (n, ho + 1, wo + 1, 4 * cin)
    folded_grad = _native_transpose(
        lambda z: _native_correlate(z, folded_kernel, Geometry(1, ((0, 0), (0, 0)))),
        dy,
        folded_shape,
    )
    return gemm.crop_padding(gemm.depth_to_space(folded_grad, 2), x_shape, geometry)
