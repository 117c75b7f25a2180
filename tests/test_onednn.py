"""oneDNN's convolutions (colorjax.models.onednn) equal XLA's pass by pass, in float32 and
bfloat16; ``conv_impl=onednn`` trains and colorizes like ``native``; batch-sharded calls run
on each device's rows; ``auto`` falls back to ``hybrid``, saying why, where the extension
cannot be built."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from colorjax.config import apply_overrides
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.models import conv, onednn
from colorjax.models.gemm import Geometry
from colorjax.native import build

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in onednn.X86_64, reason="oneDNN runs on x86-64 only"
)

RTOL = 1e-4
BF16_RTOL = 1.5e-2  # operands rounded to 8 significant bits, float32 accumulation
REPO = Path(__file__).parents[1]

# (x shape, kernel shape [kh,kw,Cin/groups,Cout], stride, padding, groups, dilation)
LAYERS = {
    "1x1": ((2, 9, 11, 6), (1, 1, 6, 8), 1, ((0, 0), (0, 0)), 1, 1),
    "3x3 s1": ((2, 9, 11, 6), (3, 3, 6, 8), 1, ((1, 1), (1, 1)), 1, 1),
    "3x3 s2 odd": ((2, 9, 11, 6), (3, 3, 6, 8), 2, ((1, 1), (1, 1)), 1, 1),
    "4x4 s2 pix2pix": ((3, 10, 14, 5), (4, 4, 5, 7), 2, ((1, 1), (1, 1)), 1, 1),
    "4x4 s1 uneven": ((2, 9, 9, 6), (4, 4, 6, 3), 1, ((1, 2), (2, 1)), 1, 1),
    "5x5 s2": ((2, 13, 11, 4), (5, 5, 4, 6), 2, ((2, 2), (2, 2)), 1, 1),
    "image in": ((2, 16, 16, 1), (4, 4, 1, 8), 2, ((1, 1), (1, 1)), 1, 1),
    "groups 2": ((2, 9, 11, 6), (3, 3, 3, 8), 1, ((1, 1), (1, 1)), 2, 1),
    "depthwise 3x3": ((2, 9, 11, 8), (3, 3, 1, 8), 1, ((1, 1), (1, 1)), 8, 1),
    "depthwise 5x5 s2": ((2, 15, 13, 8), (5, 5, 1, 8), 2, ((1, 2), (1, 2)), 8, 1),
    "dilated": ((2, 12, 11, 6), (3, 3, 6, 8), 1, ((2, 2), (2, 2)), 1, 2),
}


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    """The extension, built (once per test session) and registered."""
    assert onednn.unavailable_reason() is None


def native_passes(x, kernel, dy, stride, padding, groups, dilation):
    """XLA's forward pass, input gradient and kernel gradient (float32 operands)."""

    def forward(x, kernel):
        return lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            padding,
            rhs_dilation=(dilation, dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
        )

    y, pullback = jax.vjp(forward, x, kernel)
    return (y, *pullback(dy))


def onednn_passes(x, kernel, dy, stride, padding, groups, dilation):
    geometry = Geometry(stride, padding)
    options = dict(groups=groups, dilation=dilation)

    @jax.jit
    def run(x, kernel, dy):
        y = onednn.correlate(x, kernel, geometry, **options)
        dx = onednn.correlate_input_grad(dy, kernel, geometry, x.shape, **options)
        dkernel = onednn.correlate_kernel_grad(x, dy, geometry, kernel.shape, **options)
        return y, dx, dkernel

    return run(x, kernel, dy)


def assert_close(actual, expected, rtol: float) -> None:
    """Each array within ``rtol`` of the largest magnitude of its expected value."""
    for name, a, e in zip(("y", "dx", "dkernel"), actual, expected, strict=True):
        assert a.shape == e.shape, name
        scale = float(jnp.max(jnp.abs(e)))
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(e), atol=rtol * scale, rtol=0, err_msg=name
        )


def random_operands(x_shape, kernel_shape, stride, padding, groups, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, np.float32)
    kernel = rng.standard_normal(kernel_shape, np.float32)
    y_shape = onednn.output_shape(x_shape, kernel_shape, Geometry(stride, padding), dilation)
    return x, kernel, rng.standard_normal(y_shape, np.float32)


@pytest.mark.parametrize("layer", LAYERS)
def test_float32_passes_equal_native(layer):
    spec = LAYERS[layer]
    x, kernel, dy = random_operands(*spec)
    expected = native_passes(x, kernel, dy, *spec[2:])
    assert_close(onednn_passes(x, kernel, dy, *spec[2:]), expected, RTOL)


@pytest.mark.parametrize("layer", LAYERS)
def test_bfloat16_passes_equal_native_on_rounded_operands(layer):
    spec = LAYERS[layer]
    x, kernel, dy = (jnp.asarray(a, jnp.bfloat16) for a in random_operands(*spec))
    expected = native_passes(*(a.astype(jnp.float32) for a in (x, kernel, dy)), *spec[2:])
    actual = onednn_passes(x, kernel, dy, *spec[2:])
    assert [a.dtype for a in actual] == [jnp.bfloat16, jnp.bfloat16, jnp.float32]
    assert_close(actual, expected, BF16_RTOL)


@pytest.fixture
def onednn_everywhere(monkeypatch) -> None:
    """``onednn`` runs every pass through oneDNN (the tests' maps are below its routing's)."""
    monkeypatch.setattr(conv, "_onednn_runs", lambda *shapes: True)


def conv_value_and_grads(fn, x, kernel):
    @jax.jit
    def run(x, kernel):
        y, pullback = jax.vjp(fn, x, kernel)
        cotangent = jnp.sin(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        return (y, *pullback(cotangent.astype(y.dtype)))

    return run(x, kernel)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("size", [4, 7])
def test_conv_transpose2d_equals_native(onednn_everywhere, dtype, size):
    x, kernel, _ = random_operands((2, size, size + 1, 6), (4, 4, 6, 5), 1, ((0, 0),) * 2, 1, 1)
    x = jnp.asarray(x, dtype)
    results = {
        impl: conv_value_and_grads(
            lambda x, k, impl=impl: conv.conv_transpose2d(x, k, impl=impl), x, kernel
        )
        for impl in ("native", "onednn")
    }
    assert_close(results["onednn"], results["native"], RTOL if dtype == "float32" else BF16_RTOL)


@pytest.mark.parametrize("layer", ["3x3 s2 odd", "4x4 s2 pix2pix", "groups 2", "depthwise 3x3"])
def test_conv2d_equals_native_with_gradients(onednn_everywhere, layer):
    x_shape, kernel_shape, stride, padding, groups, _ = LAYERS[layer]
    x, kernel, _ = random_operands(x_shape, kernel_shape, stride, padding, groups, 1)
    results = {
        impl: conv_value_and_grads(
            lambda x, k, impl=impl: conv.conv2d(
                x, k, stride=stride, padding=padding, impl=impl, feature_group_count=groups
            ),
            x,
            kernel,
        )
        for impl in ("native", "onednn")
    }
    assert_close(results["onednn"], results["native"], RTOL)


def test_routing_leaves_small_maps_and_thin_float32_layers_to_hybrid():
    wide = ((16, 64, 64, 128), (16, 32, 32, 256))
    small = ((16, 4, 4, 512), (16, 2, 2, 512))
    four_by_four = ((16, 8, 8, 512), (16, 4, 4, 512))
    eight_by_eight = ((16, 16, 16, 512), (16, 8, 8, 512))
    image_in = ((16, 128, 128, 1), (16, 64, 64, 64))
    image_out = ((16, 15, 15, 512), (16, 12, 12, 1))
    for dtype in (jnp.float32, jnp.bfloat16):
        for kind in conv.PASSES:
            assert conv.pass_choice(kind, "onednn", dtype, *wide) == "onednn"
            hybrid = conv.pass_choice(kind, "hybrid", dtype, *small)
            assert conv.pass_choice(kind, "onednn", dtype, *small) == hybrid
            on_image_out = conv.pass_choice(kind, "onednn", dtype, *image_out)
            assert (on_image_out == "onednn") == (dtype == jnp.bfloat16)
        assert conv.pass_choice("forward", "onednn", dtype, *image_in) == "onednn"
        assert conv.pass_choice("kernel_grad", "onednn", dtype, *image_in) == "onednn"
        assert conv.pass_choice("input_grad", "onednn", dtype, *image_in) != "onednn"
        on_four_by_four = conv.pass_choice("forward", "onednn", dtype, *four_by_four)
        assert (on_four_by_four == "onednn") == (dtype == jnp.bfloat16)
        kernel_grad_eight = conv.pass_choice("kernel_grad", "onednn", dtype, *eight_by_eight)
        assert (kernel_grad_eight == "onednn") == (dtype == jnp.float32)
    for kind in conv.PASSES:  # oneDNN's convolutions take float32 and bfloat16 only
        assert conv.pass_choice(kind, "onednn", jnp.float16, *wide) != "onednn"


def _run_steps(config, steps: int = 2) -> list[dict]:
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), config.data.image_size)
    step = make_train_step(gan, adversarial=True, donate=False)
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    history = []
    for _ in range(steps):
        state, metrics = step(state, {"rgb": rgb})
        history.append({k: float(v) for k, v in metrics.items()})
    return history


def test_train_steps_match_native(onednn_everywhere, tiny_config):
    native = _run_steps(apply_overrides(tiny_config, ["model.conv_impl=native"]))
    ours = _run_steps(apply_overrides(tiny_config, ["model.conv_impl=onednn"]))
    for metrics, expected in zip(ours, native, strict=True):
        for name in ("g_l1", "g_adv", "d_loss", "g_grad_norm", "d_grad_norm"):
            assert metrics[name] == pytest.approx(expected[name], rel=1e-3), name


def test_colorize_matches_native(onednn_everywhere, colorizer):
    gray = np.random.default_rng(0).integers(0, 256, (37, 45), np.uint8)
    expected, ours = (
        dataclasses.replace(
            colorizer, model=dataclasses.replace(colorizer.model, conv_impl=impl)
        ).colorize(gray)
        for impl in ("native", "onednn")
    )
    assert np.abs(np.asarray(ours, np.int16) - np.asarray(expected, np.int16)).max() <= 1


def test_auto_falls_back_to_hybrid_saying_why_once(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))  # nothing built here yet
    monkeypatch.setenv("CXX", "no-such-compiler")
    onednn.unavailable_reason.cache_clear()
    conv._onednn_or_why_not.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=conv.logger.name):
            assert conv.resolve_impl("auto") == "hybrid"
            assert conv.resolve_impl("auto") == "hybrid"
        assert len(caplog.records) == 1
        assert "no C++ compiler ('no-such-compiler'" in caplog.records[0].getMessage()
        assert list(tmp_path.iterdir()) == []
        with pytest.raises(RuntimeError, match="onednn is unavailable: no C"):
            conv.resolve_impl("onednn")
    finally:
        onednn.unavailable_reason.cache_clear()
        conv._onednn_or_why_not.cache_clear()


def test_extension_is_built_once_per_cache(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")  # a rebuild would fail
    path = build.built_extension(
        "onednn_conv.cc", "dnnl", "oneapi/dnnl/dnnl.hpp", "oneapi/dnnl/dnnl_version.h"
    )
    assert path.parent == build.cache_dir() and path.exists()
    assert not list(path.parent.glob("*.partial"))


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from colorjax.models import onednn
    from colorjax.models.gemm import Geometry

    geometry = Geometry(2, ((1, 1), (1, 1)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 10, 10, 6), np.float32)
    kernel = rng.standard_normal((4, 4, 6, 8), np.float32)
    dy = rng.standard_normal((4, 5, 5, 8), np.float32)

    def passes(x, kernel, dy):
        return (
            onednn.correlate(x, kernel, geometry),
            onednn.correlate_input_grad(dy, kernel, geometry, x.shape),
            onednn.correlate_kernel_grad(x, dy, geometry, kernel.shape),
        )

    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows, whole = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    sharded = jax.jit(passes, in_shardings=(rows, whole, rows))
    hlo = sharded.lower(x, kernel, dy).compile().as_text()
    calls = [line for line in hlo.splitlines() if "custom-call(" in line]
    local = [line for line in calls if "f32[2,10,10,6]" in line or "f32[2,5,5,8]" in line]
    print("CALLS", len(calls), "LOCAL", len(local))
    for a, e in zip(sharded(x, kernel, dy), jax.jit(passes)(x, kernel, dy)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-4)
    print("EQUAL")
    """
)


def test_batch_sharded_calls_run_on_each_devices_rows():
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"} | {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CALLS 3 LOCAL 3" in done.stdout and "EQUAL" in done.stdout
