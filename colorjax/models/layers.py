"""Layers shared by the generator and the discriminator.

Every convolution goes through ``colorjax.models.conv`` (``impl`` picks the implementation), with
float32 parameters ``kernel`` [kh, kw, Cin, Cout] and ``bias`` [Cout]. The input and the bias are
cast to the compute ``dtype`` inside the layer and the kernel inside the convolution (which
returns its gradient in float32), so the parameters are the same whichever implementation or
dtype runs, and with or without spectral normalisation.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.conv import conv2d, conv_transpose2d
from colorjax.models.gemm import depth_to_space
from colorjax.models.norms import Initializer, make_norm

UPSAMPLE_MODES = ("transpose", "resize_conv", "subpixel")
ACTIVATIONS = ("none", "relu", "leaky_relu")


def normal_around_one(std: float) -> Initializer:
    """Initializer drawing from normal(1, std), pix2pix's init of norm scales."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return 1.0 + std * jax.random.normal(key, shape, dtype)

    return init


def nearest_upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of NHWC maps."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``x`` scaled to unit Euclidean norm."""
    return x * jax.lax.rsqrt(jnp.sum(x * x) + eps)


class SpectralNormalizer(nn.Module):
    """Divides a kernel by its largest singular value (Miyato et al. 2018).

    The kernel is read as a [kh * kw * Cin, Cout] matrix, as PyTorch's ``spectral_norm`` reads
    [Cout, Cin * kh * kw]. Each call runs one power-iteration step from the stored right
    singular vector estimate ``u``; ``batch_stats`` keeps ``u`` and ``sigma`` (the last
    estimate, for monitoring) and they are written only when ``update`` is true, so evaluation
    is deterministic and stateless. The stored kernel itself is left as initialised.
    """

    @nn.compact
    def __call__(self, kernel: jax.Array, *, update: bool) -> jax.Array:
        matrix = kernel.reshape(-1, kernel.shape[-1])
        u_state = self.variable(
            "batch_stats",
            "u",
            lambda: l2_normalize(jax.random.normal(self.make_rng("params"), matrix.shape[-1:])),
        )
        sigma_state = self.variable("batch_stats", "sigma", jnp.ones, (), jnp.float32)
        v = jax.lax.stop_gradient(l2_normalize(matrix @ u_state.value))
        u = jax.lax.stop_gradient(l2_normalize(v @ matrix))
        sigma = v @ matrix @ u
        if update:
            u_state.value, sigma_state.value = u, jax.lax.stop_gradient(sigma)
        return kernel / sigma


class _ConvBase(nn.Module):
    """Holds the ``kernel`` (normal(0, init_std)) and ``bias`` (zeros) of one convolution;
    ``spectral`` divides the kernel by its largest singular value (``SpectralNormalizer``)."""

    features: int
    use_bias: bool = True
    spectral: bool = False
    init_std: float = 0.02
    dtype: str = "float32"
    impl: str = "auto"

    def kernel_param(self, shape: tuple[int, int, int, int], *, train: bool) -> jax.Array:
        init = nn.initializers.normal(self.init_std)
        kernel = self.param("kernel", init, shape, jnp.float32)
        if self.spectral:
            kernel = SpectralNormalizer(name="spectral")(kernel, update=train)
        return kernel

    def add_bias(self, y: jax.Array) -> jax.Array:
        if not self.use_bias:
            return y
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y + bias.astype(self.dtype)


class Conv(_ConvBase):
    """k x k convolution with symmetric zero padding (pix2pix: k=4, padding=1) or ``"SAME"``
    padding (``conv.same_padding``); ``feature_group_count`` groups (the kernel is
    [k, k, Cin / groups, features])."""

    kernel_size: int = 4
    stride: int = 1
    padding: int | str = 1
    feature_group_count: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        k, p, groups = self.kernel_size, self.padding, self.feature_group_count
        kernel = self.kernel_param((k, k, x.shape[-1] // groups, self.features), train=train)
        y = conv2d(
            x.astype(self.dtype),
            kernel,
            stride=self.stride,
            padding=p if isinstance(p, str) else ((p, p), (p, p)),
            impl=self.impl,
            feature_group_count=groups,
        )
        return self.add_bias(y)


class Upsample(_ConvBase):
    """x2 upsampling convolution.

    ``transpose``: 4x4 stride-2 transposed conv (pix2pix). ``resize_conv``: nearest-neighbour
    x2 then a 3x3 conv, free of checkerboard artifacts. ``subpixel``: a 3x3 conv to 4x the
    channels, then depth-to-space.
    """

    mode: str = "transpose"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        cin, cout = x.shape[-1], self.features
        same = ((1, 1), (1, 1))
        if self.mode == "transpose":
            y = conv_transpose2d(
                x, self.kernel_param((4, 4, cin, cout), train=train), impl=self.impl
            )
        elif self.mode == "resize_conv":
            kernel = self.kernel_param((3, 3, cin, cout), train=train)
            y = conv2d(nearest_upsample(x), kernel, stride=1, padding=same, impl=self.impl)
        elif self.mode == "subpixel":
            kernel = self.kernel_param((3, 3, cin, 4 * cout), train=train)
            y = depth_to_space(conv2d(x, kernel, stride=1, padding=same, impl=self.impl))
        else:
            raise ValueError(
                f"unknown upsample {self.mode!r}; valid modes: {', '.join(UPSAMPLE_MODES)}"
            )
        return self.add_bias(y)


class ConvNorm(nn.Module):
    """An optional activation of the input (pre-activation blocks, so that a rematerialised
    block recomputes it), a convolution (``upsample=None``) or x2 upsampling, then a norm from
    ``make_norm``.

    The convolution has a bias only when no norm follows. ``spectral`` divides its kernel by
    its largest singular value (power-iteration state in ``batch_stats``, advanced only when
    ``train``).
    """

    features: int
    stride: int = 2
    upsample: str | None = None
    norm: str = "none"
    num_groups: int = 32
    spectral: bool = False
    init_std: float = 0.02
    dtype: str = "float32"
    conv_impl: str = "auto"
    activation: str = "none"  # of the input: none | relu | leaky_relu
    slope: float = 0.2  # leaky_relu's negative slope

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = activate(x, self.activation, self.slope)
        common = dict(
            use_bias=self.norm == "none",
            spectral=self.spectral,
            init_std=self.init_std,
            dtype=self.dtype,
            impl=self.conv_impl,
            name="conv",
        )
        if self.upsample is None:
            conv = Conv(self.features, stride=self.stride, **common)
        else:
            conv = Upsample(self.features, mode=self.upsample, **common)
        x = conv(x, train=train)
        norm = make_norm(
            self.norm,
            train=train,
            num_groups=self.num_groups,
            scale_init=normal_around_one(self.init_std),
            dtype=self.dtype,
            name="norm",
        )
        return norm(x)


def activate(x: jax.Array, kind: str, slope: float) -> jax.Array:
    """``x`` through the activation ``kind`` (``slope``: LeakyReLU's negative slope)."""
    if kind == "relu":
        return nn.relu(x)
    if kind == "leaky_relu":
        return nn.leaky_relu(x, slope)
    if kind == "none":
        return x
    raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")


def dropout(x: jax.Array, rate: float, *, train: bool) -> jax.Array:
    """Dropout drawing from the ``dropout`` rng in training; identity when ``rate`` is 0."""
    if rate == 0:
        return x
    return nn.Dropout(rate, deterministic=not train)(x)
