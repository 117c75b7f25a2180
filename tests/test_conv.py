"""The fast convolution implementations match XLA's native ones, values and gradients."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import conv

RTOL = 1e-4
SAME = ((1, 1), (1, 1))


def value_and_grads(
    fn: Callable[[jax.Array, jax.Array], jax.Array], x: np.ndarray, kernel: np.ndarray
) -> tuple[jax.Array, ...]:
    """fn(x, kernel) and its gradients wrt x and kernel for a fixed pseudo-random cotangent."""

    @jax.jit
    def run(x, kernel):
        y, pullback = jax.vjp(fn, x, kernel)
        cotangent = jnp.sin(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return (y, *pullback(cotangent))

    return run(x, kernel)


def assert_close(actual: tuple[jax.Array, ...], expected: tuple[jax.Array, ...]) -> None:
    for name, a, e in zip(("y", "dx", "dkernel"), actual, expected, strict=True):
        assert a.shape == e.shape, name
        scale = float(jnp.max(jnp.abs(e)))
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), atol=RTOL * scale, rtol=0, err_msg=name
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


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "size", "cin"),
    [
        (4, 2, SAME, (13, 11), 8),  # encoder / PatchGAN downsampling, odd sizes
        (4, 2, SAME, (16, 16), 3),
        (4, 1, SAME, (9, 7), 8),  # PatchGAN's last two layers
        (3, 1, SAME, (7, 10), 8),  # resize-conv and sub-pixel upsampling
        (3, 2, ((0, 1), (1, 0)), (9, 8), 4),
    ],
)
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


def test_resolve_impl_auto_is_hybrid_on_cpu_and_native_elsewhere(monkeypatch):
    assert conv.resolve_impl("auto") == "hybrid"  # the tests run on CPU
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
