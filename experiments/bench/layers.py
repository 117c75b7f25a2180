"""The ``layers`` part: GFLOP/s of every pass of every convolution of the preset's networks
at ``data.batch_size``, run by XLA (``native``), by ``hybrid`` and by oneDNN alone, and the
implementation ``onednn`` routes each pass to.

A transposed convolution is listed as the stride-2 correlation whose input gradient it is:
its forward pass is that correlation's ``input_grad``, and its input gradient the ``forward``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from colorjax.config import Config
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.models import conv, gemm, onednn
from colorjax.models.gemm import Geometry, Shape
from experiments.bench.timing import median_seconds

LAYER_REPEATS = 5
IMPLS = ("native", "hybrid", "onednn_only")


@dataclasses.dataclass(frozen=True)
class Layer:
    """A correlation of x [N,H,W,Cin] with a kernel [kh,kw,Cin,Cout]."""

    x_shape: Shape
    kernel_shape: Shape
    geometry: Geometry
    transposed: bool

    @property
    def y_shape(self) -> Shape:
        return gemm.output_shape(self.x_shape, self.kernel_shape, self.geometry)

    @property
    def flops(self) -> int:
        kh, kw, cin, _ = self.kernel_shape
        return 2 * kh * kw * cin * math.prod(self.y_shape)

    def name(self) -> str:
        kh, _, cin, cout = self.kernel_shape
        _, h, w, _ = self.x_shape
        kind = "transposed " if self.transposed else ""
        return f"{kind}{kh}x{kh} s{self.geometry.stride} {cin}->{cout} at {h}x{w}"


def network_layers(cfg: Config) -> list[Layer]:
    """The distinct convolutions of the generator and discriminator, at batch size."""
    native = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, conv_impl="native"))
    gan = build_gan(native)
    jaxpr = jax.make_jaxpr(lambda key: init_state(gan, key, cfg.data.image_size))(
        jax.random.PRNGKey(0)
    )
    layers = [_layer(eqn, cfg.data.batch_size) for eqn in _equations(jaxpr.jaxpr)]
    return list(dict.fromkeys(layer for layer in layers if layer is not None))


def _equations(jaxpr):
    """The equations of ``jaxpr`` and of every jaxpr nested in it."""
    yield from jaxpr.eqns
    for sub in jex_core.subjaxprs(jaxpr):
        yield from _equations(sub)


def _layer(eqn, batch: int) -> Layer | None:
    if eqn.primitive.name != "conv_general_dilated":
        return None
    lhs, rhs = (tuple(v.aval.shape) for v in eqn.invars)
    lhs = (batch, *lhs[1:])
    if eqn.params["lhs_dilation"] == (2, 2):  # conv_transpose2d: the upsampling correlation's
        n, h, w, _ = lhs  # input gradient
        kh, kw, cin, cout = rhs
        x_shape = (n, 2 * h, 2 * w, cout)
        return Layer(x_shape, (kh, kw, cout, cin), conv.UPSAMPLE_GEOMETRY, True)
    geometry = Geometry(eqn.params["window_strides"][0], tuple(eqn.params["padding"]))
    return Layer(lhs, rhs, geometry, False)


def _operands(layer: Layer, kind: str, dtype) -> tuple[jax.Array, jax.Array, Shape]:
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    shapes = {
        "forward": (layer.x_shape, layer.kernel_shape, layer.y_shape),
        "input_grad": (layer.y_shape, layer.kernel_shape, layer.x_shape),
        "kernel_grad": (layer.x_shape, layer.y_shape, layer.kernel_shape),
    }
    a_shape, b_shape, out_shape = shapes[kind]
    a = jax.random.normal(key_a, a_shape, dtype)
    b = jax.random.normal(key_b, b_shape, jnp.float32 if kind != "kernel_grad" else dtype)
    return a, b, out_shape


def _pass_fn(kind: str, impl: str, geometry: Geometry, out_shape: Shape):
    if impl != "onednn_only":
        return functools.partial(conv.run_pass, kind, impl, geometry=geometry, out_shape=out_shape)
    if kind == "forward":
        return lambda a, b: onednn.correlate(a, b, geometry)
    if kind == "input_grad":
        return lambda a, b: onednn.correlate_input_grad(a, b, geometry, out_shape)
    return lambda a, b: onednn.correlate_kernel_grad(a, b, geometry, out_shape)


def _gflops(layer: Layer, kind: str, impl: str, dtype) -> float:
    a, b, out_shape = _operands(layer, kind, dtype)
    run = jax.jit(_pass_fn(kind, impl, layer.geometry, out_shape))
    jax.block_until_ready(run(a, b))
    rate = layer.flops / median_seconds(lambda: run(a, b), LAYER_REPEATS) / 1e9
    return float(f"{rate:.3g}")


def bench_layers(cfg: Config) -> dict:
    """GFLOP/s by layer, pass and implementation, and the pass ``onednn`` routes to."""
    dtype = jnp.dtype(cfg.model.dtype)
    impls = IMPLS if onednn.available() else IMPLS[:2]
    rows = []
    for layer in network_layers(cfg):
        for kind in conv.PASSES:
            figures = {impl: _gflops(layer, kind, impl, dtype) for impl in impls}
            route = conv.pass_choice(kind, "onednn", dtype, layer.x_shape, layer.y_shape)
            rows.append({"layer": layer.name(), "pass": kind, **figures, "onednn_route": route})
    return {"layers_dtype": cfg.model.dtype, "layers": rows}
