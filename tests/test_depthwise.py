"""Depthwise convolutions as tap sums match XLA's own, values and gradients, and are what
conv2d runs under its CPU implementations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import conv, depthwise


def value_and_grads(impl: str, x: np.ndarray, kernel: np.ndarray, stride: int):
    """conv2d's output and its gradients wrt x and kernel for a fixed cotangent."""

    def fn(x, kernel):
        return conv.conv2d(
            x, kernel, stride=stride, padding="SAME", impl=impl, feature_group_count=x.shape[-1]
        )

    @jax.jit
    def run(x, kernel):
        y, pullback = jax.vjp(fn, x, kernel)
        cotangent = jnp.sin(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        return (y, *pullback(cotangent.astype(y.dtype)))

    return run(x, kernel)


def random_inputs(x_shape, kernel_shape):
    rng = np.random.default_rng(0)
    return rng.standard_normal(x_shape, np.float32), rng.standard_normal(kernel_shape, np.float32)


@pytest.mark.parametrize("impl", ["hybrid", "matmul"])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(7, 7), (10, 13)])
def test_matches_native(impl, kernel_size, stride, size):
    x, kernel = random_inputs((2, *size, 6), (kernel_size, kernel_size, 1, 6))
    actual = value_and_grads(impl, x, kernel, stride)
    expected = value_and_grads("native", x, kernel, stride)
    for name, a, e in zip(("y", "dx", "dkernel"), actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype, name
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-4, err_msg=name)


def test_bfloat16_input_within_rounding():
    x, kernel = random_inputs((1, 9, 9, 8), (5, 5, 1, 8))
    x = jnp.asarray(x, jnp.bfloat16)
    y, dx, dkernel = value_and_grads("hybrid", x, kernel, 2)
    expected = value_and_grads("native", x.astype(jnp.float32), kernel, 2)
    assert (y.dtype, dx.dtype, dkernel.dtype) == (jnp.bfloat16, jnp.bfloat16, jnp.float32)
    for a, e in zip((y, dx, dkernel), expected, strict=True):
        scale = float(jnp.max(jnp.abs(e)))
        np.testing.assert_allclose(np.asarray(a, np.float32), e, atol=2e-2 * scale)


def primitives(impl: str, x_shape, kernel_shape, groups: int) -> set[str]:
    def fn(x, kernel):
        return conv.conv2d(
            x, kernel, stride=1, padding="SAME", impl=impl, feature_group_count=groups
        )

    jaxpr = jax.make_jaxpr(fn)(jnp.zeros(x_shape), jnp.zeros(kernel_shape))
    return {eqn.primitive.name for eqn in jaxpr.eqns}


def test_conv2d_routes_only_depthwise_on_cpu_choices():
    depthwise_shapes = ((1, 8, 8, 4), (3, 3, 1, 4))
    assert "conv_general_dilated" not in primitives("hybrid", *depthwise_shapes, groups=4)
    assert "conv_general_dilated" not in primitives("matmul", *depthwise_shapes, groups=4)
    assert "conv_general_dilated" in primitives("native", *depthwise_shapes, groups=4)
    # two groups of two channels, and a channel multiplier of 2, stay XLA's
    assert "conv_general_dilated" in primitives("hybrid", (1, 8, 8, 4), (3, 3, 2, 4), groups=2)
    assert "conv_general_dilated" in primitives("hybrid", (1, 8, 8, 4), (3, 3, 1, 8), groups=4)


def test_is_depthwise():
    assert depthwise.is_depthwise((1, 5, 5, 4), (3, 3, 1, 4), 4)
    assert not depthwise.is_depthwise((1, 5, 5, 4), (3, 3, 1, 8), 4)
    assert not depthwise.is_depthwise((1, 5, 5, 4), (3, 3, 2, 4), 2)


def test_gradients_come_back_in_the_operands_dtypes():
    x, kernel = random_inputs((1, 6, 6, 4), (3, 3, 1, 4))
    x, kernel = jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16)
    _, dx, dkernel = value_and_grads("hybrid", x, kernel, 1)
    assert dx.dtype == dkernel.dtype == jnp.bfloat16
