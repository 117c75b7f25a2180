"""oneDNN's CPU convolutions (the library PyTorch runs its CPU convolutions through) inside
jitted computations, as XLA FFI custom calls.

The three passes of a grouped 2-D cross-correlation (NHWC activations, HWIO kernels, float32
or bfloat16 with float32 accumulation): ``correlate``, ``correlate_input_grad`` (which is also
a transposed convolution) and ``correlate_kernel_grad``; ``grouped_conv2d`` differentiates
them as one. The C++ handlers (``colorjax/native/onednn_conv.cc``) are compiled on first use
against the ``onednn-cpu-gomp`` wheel (``colorjax.native.build``); ``unavailable_reason`` says
why they cannot be where they cannot. Each call is partitioned along the batch when its
operands are sharded over devices (``jax.experimental.custom_partitioning``): the kernel
gradient is summed over the devices, the other passes run on each device's rows.
"""

from __future__ import annotations

import ctypes
import functools
import platform

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from colorjax.models.gemm import Geometry, Shape
from colorjax.native import build

TARGETS = {
    "colorjax_onednn_forward": "ColorjaxOnednnForward",
    "colorjax_onednn_input_grad": "ColorjaxOnednnInputGrad",
    "colorjax_onednn_kernel_grad": "ColorjaxOnednnKernelGrad",
}
X86_64 = ("x86_64", "amd64")


@functools.cache
def unavailable_reason() -> str | None:
    """Why oneDNN's convolutions cannot run in this process, or None once they are built,
    loaded and registered with XLA."""
    try:
        _register()
    except (build.Unavailable, OSError) as error:
        return str(error)
    return None


def available() -> bool:
    return unavailable_reason() is None


def _register() -> None:
    if platform.machine().lower() not in X86_64:
        raise build.Unavailable(
            f"oneDNN convolutions are used on x86-64 only, not {platform.machine()}"
        )
    path = build.built_extension(
        "onednn_conv.cc", "dnnl", "oneapi/dnnl/dnnl.hpp", "oneapi/dnnl/dnnl_version.h"
    )
    library = ctypes.CDLL(str(path))
    for target, symbol in TARGETS.items():
        handler = jax.ffi.pycapsule(getattr(library, symbol))
        jax.ffi.register_ffi_target(target, handler, platform="cpu")


# ---- a differentiable grouped correlation ----


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def grouped_conv2d(x: jax.Array, kernel: jax.Array, geometry: Geometry, groups: int) -> jax.Array:
    """Correlation of x [N,H,W,Cin] with kernel [kh,kw,Cin/groups,Cout] in x's dtype; the
    kernel's gradient comes back in its own dtype."""
    return correlate(x, kernel, geometry, groups=groups)


def _grouped_fwd(x, kernel, geometry, groups):
    return correlate(x, kernel, geometry, groups=groups), (x, kernel)


def _grouped_bwd(geometry, groups, residuals, dy):
    x, kernel = residuals
    dx = correlate_input_grad(dy, kernel, geometry, x.shape, groups=groups)
    dkernel = correlate_kernel_grad(x, dy, geometry, kernel.shape, groups=groups)
    return dx, dkernel.astype(kernel.dtype)


grouped_conv2d.defvjp(_grouped_fwd, _grouped_bwd)


# ---- the three passes ----


def output_shape(x_shape: Shape, kernel_shape: Shape, geometry: Geometry, dilation: int) -> Shape:
    """Shape of the correlation of x [N,H,W,Cin] with a kernel [kh,kw,Cin/groups,Cout]."""
    kh, kw, _, cout = kernel_shape
    n, h, w, _ = x_shape
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    return n, geometry.output_size(h, span_h, 0), geometry.output_size(w, span_w, 1), cout


def correlate(
    x: jax.Array, kernel: jax.Array, geometry: Geometry, *, dilation: int = 1, groups: int = 1
) -> jax.Array:
    """y [N,Ho,Wo,Cout] from x [N,H,W,Cin], in x's dtype."""
    y_shape = output_shape(x.shape, kernel.shape, geometry, dilation)
    out = jax.ShapeDtypeStruct(y_shape, x.dtype)
    return _call("forward", out, geometry, dilation, groups)(x, kernel.astype(x.dtype))


def correlate_input_grad(
    dy: jax.Array,
    kernel: jax.Array,
    geometry: Geometry,
    x_shape: Shape,
    *,
    dilation: int = 1,
    groups: int = 1,
) -> jax.Array:
    """dx [N,H,W,Cin] from dy [N,Ho,Wo,Cout], in dy's dtype."""
    out = jax.ShapeDtypeStruct(tuple(x_shape), dy.dtype)
    return _call("input_grad", out, geometry, dilation, groups)(dy, kernel.astype(dy.dtype))


def correlate_kernel_grad(
    x: jax.Array,
    dy: jax.Array,
    geometry: Geometry,
    kernel_shape: Shape,
    *,
    dilation: int = 1,
    groups: int = 1,
) -> jax.Array:
    """dkernel [kh,kw,Cin/groups,Cout] from x [N,H,W,Cin] and dy [N,Ho,Wo,Cout], in float32."""
    out = jax.ShapeDtypeStruct(tuple(kernel_shape), jnp.float32)
    return _call("kernel_grad", out, geometry, dilation, groups)(x.astype(dy.dtype), dy)


def _call(
    pass_name: str, out: jax.ShapeDtypeStruct, geometry: Geometry, dilation: int, groups: int
):
    """The FFI call of one pass, partitioned along the batch of its operands."""
    if not available():
        raise RuntimeError(f"oneDNN convolutions are unavailable: {unavailable_reason()}")
    (top, bottom), (left, right) = geometry.padding
    attributes = (
        ("strides", (geometry.stride,) * 2),
        ("padding", (top, bottom, left, right)),
        ("dilation", (dilation,) * 2),
        ("groups", groups),
    )
    return _batch_partitioned(pass_name, tuple(out.shape), jnp.dtype(out.dtype), attributes)


# Einsum-like factors of each pass's operands and result; only the batch ``n`` may be sharded.
SHARDING_RULES = {
    "forward": "n h w c, a b k o -> n i j o",
    "input_grad": "n i j o, a b k c -> n h w c",
    "kernel_grad": "n h w c, n i j o -> a b k o",
}


def _unsharded_factors(rule: str) -> tuple[str, ...]:
    """Every factor of ``rule`` but the batch, in order of first appearance."""
    factors = rule.replace("->", " ").replace(",", " ").split()
    return tuple(factor for factor in dict.fromkeys(factors) if factor != "n")


@functools.cache
def _batch_partitioned(
    pass_name: str, out_shape: Shape, dtype: jnp.dtype, attributes: tuple
) -> custom_partitioning:
    """Pass ``pass_name`` as a custom call whose operands are split along the batch between
    devices: each device runs oneDNN on its own rows, and the kernel gradient (over the
    whole batch) is summed across them."""
    target = f"colorjax_onednn_{pass_name}"
    sums_batch = pass_name == "kernel_grad"
    arrays = {name: np.asarray(value, np.int64)[()] for name, value in attributes}

    def local_call(a: jax.Array, b: jax.Array) -> jax.Array:
        shape = out_shape if sums_batch else (a.shape[0], *out_shape[1:])
        result = jax.ShapeDtypeStruct(shape, dtype)
        return jax.ffi.ffi_call(target, result, vmap_method="sequential")(a, b, **arrays)

    def result_sharding(mesh, batch_axes) -> NamedSharding:
        return NamedSharding(mesh, PartitionSpec() if sums_batch else PartitionSpec(batch_axes))

    def infer_sharding(mesh, arg_shapes, result_shape) -> NamedSharding:
        return result_sharding(mesh, _batch_axes(arg_shapes[0]))

    def partition(mesh, arg_shapes, result_shape):
        axes = _batch_axes(arg_shapes[0])
        rows = NamedSharding(mesh, PartitionSpec(axes))
        second = rows if sums_batch else NamedSharding(mesh, PartitionSpec())

        def lower(a: jax.Array, b: jax.Array) -> jax.Array:
            result = local_call(a, b)
            return jax.lax.psum(result, axes) if sums_batch and axes else result

        return mesh, lower, result_sharding(mesh, axes), (rows, second)

    partitioned = custom_partitioning(local_call)
    partitioned.def_partition(
        partition,
        infer_sharding_from_operands=infer_sharding,
        sharding_rule=SHARDING_RULES[pass_name],
        need_replication_factors=_unsharded_factors(SHARDING_RULES[pass_name]),
    )
    return partitioned


def _batch_axes(shape) -> str | tuple[str, ...] | None:
    """The mesh axes the first (batch) dimension of ``shape`` is split over, if any."""
    spec = getattr(shape.sharding, "spec", ())
    return spec[0] if len(spec) else None
