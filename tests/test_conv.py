"""The fast convolution implementations match XLA's native ones, values and gradients, in
float32 and, within bfloat16 rounding, in bfloat16."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import conv, gemm, onednn

RTOL = 1e-4
BF16_RTOL = 1.5e-2  # inputs rounded to 8 significant bits, products accumulated in float32
SAME = ((1, 1), (1, 1))


def value_and_grads(
    fn: Callable[[jax.Array, jax.Array], jax.Array], x: np.ndarray, kernel: np.ndarray
) -> tuple[jax.Array, ...]:
    """fn(x, kernel) and its gradients wrt x and kernel for a fixed pseudo-random cotangent."""

    @jax.jit
    def run(x, kernel):
        y, pullback = jax.vjp(fn, x, kernel)
        cotangent = jnp.sin(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        cotangent = cotangent.astype(y.dtype)
        return (y, *pullback(cotangent))

    return run(x, kernel)


def assert_close(
    actual: tuple[jax.Array, ...], expected: tuple[jax.Array, ...], rtol: float = RTOL
) -> None:
    """Each array within ``rtol`` of the largest magnitude of its expected value."""
    for name, a, e in zip(("y", "dx", "dkernel"), actual, expected, strict=True):
        assert a.shape == e.shape, name
        scale = float(jnp.max(jnp.abs(e)))
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(e), atol=rtol * scale, rtol=0, err_msg=name
        )


def random_inputs(
    x_shape: tuple[int, ...], kernel_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(x_shape, np.float32), rng.standard_normal(kernel_shape, np.float32))


@pytest.fixture(params=["matmul", "hybrid", "hybrid_no_matmul"])
def fast_impl(request, monkeypatch) -> str:
    """The fast implementations; ``hybrid_no_matmul`` forces hybrid's non-matmul passes
    (XLA's and space-to-depth), which otherwise only run on maps larger than these tests'."""
    if request.param == "hybrid_no_matmul":
        monkeypatch.setattr(conv, "GEMM_MAX_PIXELS", 0)
        return "hybrid"
    return request.param


@pytest.fixture(params=["taps", "float32"])
def bfloat16_products(request, monkeypatch) -> None:
    """Every bfloat16 pass of ``hybrid`` as gemm's ``taps`` form (which otherwise only runs on
    layers wider than these tests'), or as chosen for these narrow layers (float32 copies)."""
    if request.param == "taps":
        monkeypatch.setattr(conv, "BF16_TAPS_MIN_CHANNEL_PRODUCT", 0)
        monkeypatch.setattr(conv, "BF16_TAPS_MIN_PIXELS", dict.fromkeys(conv.PASSES, 0))
        monkeypatch.setattr(conv, "BF16_TAPS_MIN_COUT", dict.fromkeys(conv.PASSES, 0))


GEOMETRIES = pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "size", "cin"),
    [
        (4, 2, SAME, (13, 11), 8),  # encoder / PatchGAN downsampling, odd sizes
        (4, 2, SAME, (16, 16), 3),
        (4, 1, SAME, (9, 7), 8),  # PatchGAN's last two layers
        (3, 1, SAME, (7, 10), 8),  # resize-conv and sub-pixel upsampling
        (3, 2, ((0, 1), (1, 0)), (9, 8), 4),
    ],
)


@GEOMETRIES
def test_conv2d_matches_native(fast_impl, kernel_size, stride, padding, size, cin):
    x, kernel = random_inputs((2, *size, cin), (kernel_size, kernel_size, cin, 5))

    def with_impl(impl):
        return lambda x, k: conv.conv2d(x, k, stride=stride, padding=padding, impl=impl)

    assert_close(
        value_and_grads(with_impl(fast_impl), x, kernel),
        value_and_grads(with_impl("native"), x, kernel),
    )


@pytest.mark.parametrize(("size", "cin", "cout"), [((1, 1), 8, 4), ((5, 7), 8, 3), ((6, 6), 2, 8)])
def test_conv_transpose2d_matches_native(fast_impl, size, cin, cout):
    x, kernel = random_inputs((2, *size, cin), (4, 4, cin, cout))

    def with_impl(impl):
        return lambda x, k: conv.conv_transpose2d(x, k, impl=impl)

    actual = value_and_grads(with_impl(fast_impl), x, kernel)
    assert actual[0].shape == (2, 2 * size[0], 2 * size[1], cout)
    assert_close(actual, value_and_grads(with_impl("native"), x, kernel))


@GEOMETRIES
@pytest.mark.parametrize("form", gemm.FORMS)
def test_gemm_passes_match_native(form, kernel_size, stride, padding, size, cin):
    """Each matrix-product form computes the three passes of XLA's correlation (float32)."""
    x, kernel = random_inputs((2, *size, cin), (kernel_size, kernel_size, cin, 5))
    geometry = gemm.Geometry(stride, padding)
    y_shape = gemm.output_shape(x.shape, kernel.shape, geometry)
    dy = np.cos(np.arange(np.prod(y_shape), dtype=np.float32)).reshape(y_shape)

    @jax.jit
    def passes(x, kernel, dy):
        return (
            gemm.correlate(x, kernel, geometry, form),
            gemm.correlate_input_grad(dy, kernel, geometry, x.shape, form),
            gemm.correlate_kernel_grad(x, dy, geometry, kernel.shape, form),
        )

    def native(x, k):
        return conv.conv2d(x, k, stride=stride, padding=padding, impl="native")

    y, pullback = jax.vjp(native, x, kernel)
    assert_close(passes(x, kernel, dy), (y, *pullback(dy)))


def bfloat16_inputs(x: np.ndarray, kernel: np.ndarray) -> tuple[jax.Array, np.ndarray]:
    """``x`` in bfloat16 (as a layer passes it) with the kernel as float32 parameters."""
    return jnp.asarray(x, jnp.bfloat16), kernel


@GEOMETRIES
def test_bfloat16_conv2d_matches_float32_native(
    bfloat16_products, kernel_size, stride, padding, size, cin
):
    x, kernel = random_inputs((2, *size, cin), (kernel_size, kernel_size, cin, 5))

    def with_impl(impl):
        return lambda x, k: conv.conv2d(x, k, stride=stride, padding=padding, impl=impl)

    actual = value_and_grads(with_impl("hybrid"), *bfloat16_inputs(x, kernel))
    assert [a.dtype for a in actual] == [jnp.bfloat16, jnp.bfloat16, jnp.float32]
    assert_close(actual, value_and_grads(with_impl("native"), x, kernel), rtol=BF16_RTOL)


@pytest.mark.parametrize(("size", "cin", "cout"), [((1, 1), 8, 4), ((5, 7), 8, 3), ((6, 6), 2, 8)])
def test_bfloat16_conv_transpose2d_matches_float32_native(bfloat16_products, size, cin, cout):
    x, kernel = random_inputs((2, *size, cin), (4, 4, cin, cout))

    def with_impl(impl):
        return lambda x, k: conv.conv_transpose2d(x, k, impl=impl)

    actual = value_and_grads(with_impl("hybrid"), *bfloat16_inputs(x, kernel))
    assert_close(actual, value_and_grads(with_impl("native"), x, kernel), rtol=BF16_RTOL)


def test_bfloat16_products_run_where_they_pay():
    """Wide layers' bfloat16 passes are matrix products; the image layers' run on float32
    copies, and float32 keeps its own choice."""
    wide = ((16, 32, 32, 128), (16, 16, 16, 256))
    thin_output = ((16, 32, 32, 256), (16, 32, 32, 64))
    image = ((16, 128, 128, 3), (16, 64, 64, 64))
    for kind in conv.PASSES:
        assert conv.pass_choice(kind, "hybrid", jnp.bfloat16, *wide) == "taps"
        assert conv.pass_choice(kind, "hybrid", jnp.bfloat16, *thin_output) == "native"
        assert conv.pass_choice(kind, "hybrid", jnp.float32, *wide) == "native"
        assert conv.pass_choice(kind, "hybrid", jnp.bfloat16, *image) == "float32"
        thin_gradient = "native" if kind == "forward" else "strided"
        assert conv.pass_choice(kind, "hybrid", jnp.float32, *image) == thin_gradient


def test_conv_transpose2d_is_pytorch_layout():
    """One input pixel spreads the kernel over the output at 2 * i - 1 + k (PyTorch's rule)."""
    x = jnp.zeros((1, 3, 3, 1)).at[0, 1, 1, 0].set(1.0)
    kernel = jnp.arange(16.0).reshape(4, 4, 1, 1)
    for impl in ("native", "matmul", "hybrid"):
        y = jax.jit(lambda x, k, impl=impl: conv.conv_transpose2d(x, k, impl=impl))(x, kernel)
        y = y[0, :, :, 0]
        np.testing.assert_array_equal(np.asarray(y[1:5, 1:5]), np.asarray(kernel[:, :, 0, 0]))
        assert float(jnp.sum(y)) == float(jnp.sum(kernel))


def test_fast_path_keeps_bfloat16():
    x, kernel = (jnp.asarray(a, jnp.bfloat16) for a in random_inputs((1, 8, 8, 4), (4, 4, 4, 4)))
    y = jax.jit(lambda x, k: conv.conv2d(x, k, stride=2, padding=SAME, impl="matmul"))(x, kernel)
    grad = jax.jit(jax.grad(lambda k: jnp.sum(conv.conv_transpose2d(x, k, impl="matmul"))))(kernel)
    assert y.dtype == grad.dtype == jnp.bfloat16


def test_float32_kernel_of_a_bfloat16_input_gets_a_float32_gradient():
    x, kernel = random_inputs((1, 8, 8, 4), (4, 4, 4, 4))
    x = jnp.asarray(x, jnp.bfloat16)
    for impl in ("native", "hybrid"):
        y, grad = jax.jit(
            jax.value_and_grad(
                lambda k, impl=impl: jnp.sum(conv.conv2d(x, k, stride=2, padding=SAME, impl=impl))
            )
        )(kernel)
        assert y.dtype == jnp.bfloat16 and grad.dtype == jnp.float32


def test_resolve_impl_auto_is_onednn_or_hybrid_on_cpu_and_native_elsewhere(monkeypatch):
    cpu_choice = "onednn" if onednn.available() else "hybrid"
    assert conv.resolve_impl("auto") == cpu_choice  # the tests run on CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert conv.resolve_impl("auto") == "native"
    for impl in ("native", "matmul", "hybrid"):
        assert conv.resolve_impl(impl) == impl


def test_unknown_impl_lists_the_valid_ones():
    with pytest.raises(ValueError, match="auto, native, matmul, hybrid"):
        conv.resolve_impl("winograd")
    x = jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="unknown conv impl 'fft'"):
        conv.conv2d(x, jnp.zeros((3, 3, 1, 1)), stride=1, padding=SAME, impl="fft")


@pytest.mark.parametrize("impl", ["native", "hybrid"])
@pytest.mark.parametrize(("kernel_size", "stride", "groups"), [(3, 2, 1), (5, 2, 6), (3, 1, 3)])
def test_same_padding_and_groups_match_xla(impl, kernel_size, stride, groups):
    """``padding="SAME"`` pads as XLA's (TensorFlow's) SAME, the odd pixel at the end."""
    x, kernel = random_inputs((2, 9, 12, 6), (kernel_size, kernel_size, 6 // groups, 6))
    y = jax.jit(
        lambda x, k: conv.conv2d(
            x, k, stride=stride, padding="SAME", impl=impl, feature_group_count=groups
        )
    )(x, kernel)
    expected = jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    assert y.shape == expected.shape == (2, -(-9 // stride), -(-12 // stride), 6)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
