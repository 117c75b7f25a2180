"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant: ReLU6, no squeeze-excitation, fixed
stem and head widths), as a classifier or as a five-scale feature encoder.

Input: NHWC RGB normalised by ``normalize_rgb``, any height and width (TensorFlow ``SAME``
padding, so a stride-2 layer maps n pixels to ceil(n / 2)). ``pretrained_variables`` in
``colorjax.models.efficientnet_weights`` holds the ImageNet weights for this tree.

Parameter tree: ``stem``, ``stage{s}_block{b}/{expand,depthwise,project}`` (no ``expand`` in
stage 0, whose expansion is 1) and ``head``, each a ``conv`` (``kernel``) and a ``bn``
(``scale``, ``bias``; running ``mean`` and ``var`` in ``batch_stats``); then ``classifier``.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.layers import Conv, dropout


class Stage(NamedTuple):
    expand: int
    kernel: int
    stride: int
    out: int
    repeats: int


STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)
# The stages whose outputs are the encoder's features, at strides 2, 4, 8, 16 and 32.
FEATURE_STAGES = (0, 1, 2, 4, 6)
ENCODER_CHANNELS = tuple(STAGES[s].out for s in FEATURE_STAGES)
DROPOUT_RATE = 0.2
BN_EPSILON = 1e-3  # TensorFlow's, as trained
BN_MOMENTUM = 0.99  # TensorFlow's, as trained
INPUT_MEAN, INPUT_STD = 127.0, 128.0  # on 0-255 RGB, as trained


def normalize_rgb(rgb255: jax.Array) -> jax.Array:
    """0-255 RGB to the network's input range: ``(x - 127) / 128``."""
    return (rgb255 - INPUT_MEAN) / INPUT_STD


class _ConvBN(nn.Module):
    """Bias-free SAME convolution ``{name}_conv``, BatchNorm ``{name}_bn``, optional ReLU6."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    depthwise: bool = False
    activate: bool = True
    frozen_bn: bool = False
    dtype: str = "float32"
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = Conv(
            self.features,
            use_bias=False,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding="SAME",
            feature_group_count=x.shape[-1] if self.depthwise else 1,
            dtype=self.dtype,
            impl=self.conv_impl,
            name="conv",
        )(x, train=train)
        x = nn.BatchNorm(
            use_running_average=self.frozen_bn or not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="bn",
        )(x)
        return nn.relu6(x) if self.activate else x


class _MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, k x k depthwise, 1x1 linear projection, plus
    the input when the stride is 1 and the width unchanged."""

    expand: int
    kernel_size: int
    stride: int
    features: int
    frozen_bn: bool = False
    dtype: str = "float32"
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        common = dict(frozen_bn=self.frozen_bn, dtype=self.dtype, conv_impl=self.conv_impl)
        cin = x.shape[-1]
        y = x
        if self.expand != 1:
            y = _ConvBN(cin * self.expand, name="expand", **common)(y, train=train)
        y = _ConvBN(
            cin * self.expand,
            kernel_size=self.kernel_size,
            stride=self.stride,
            depthwise=True,
            name="depthwise",
            **common,
        )(y, train=train)
        y = _ConvBN(self.features, activate=False, name="project", **common)(y, train=train)
        if self.stride == 1 and cin == self.features:
            y = y + x
        return y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: a 1000-way ImageNet classifier, or (``num_classes=None``) the
    encoder returning the outputs of the stages at strides 2, 4, 8, 16 and 32
    (``ENCODER_CHANNELS`` channels).

    ``frozen_bn``: BatchNorm always normalises with (and never updates) its running
    statistics. ``dtype`` is the compute dtype (parameters float32); ``conv_impl`` a
    ``colorjax.models.conv`` implementation.
    """

    num_classes: int | None = 1000
    frozen_bn: bool = False
    dtype: str = "float32"
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array | tuple[jax.Array, ...]:
        common = dict(frozen_bn=self.frozen_bn, dtype=self.dtype, conv_impl=self.conv_impl)
        x = _ConvBN(STEM_CHANNELS, kernel_size=3, stride=2, name="stem", **common)(x, train=train)
        features = []
        for s, stage in enumerate(STAGES):
            for b in range(stage.repeats):
                x = _MBConv(
                    stage.expand,
                    stage.kernel,
                    stage.stride if b == 0 else 1,
                    stage.out,
                    name=f"stage{s}_block{b}",
                    **common,
                )(x, train=train)
            if s in FEATURE_STAGES:
                features.append(x)
        if self.num_classes is None:
            return tuple(features)
        x = _ConvBN(HEAD_CHANNELS, name="head", **common)(x, train=train)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        x = dropout(x, DROPOUT_RATE, train=train)
        return nn.Dense(self.num_classes, param_dtype=jnp.float32, name="classifier")(x)
