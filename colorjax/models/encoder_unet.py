"""A U-Net whose encoder is an ImageNet-trained EfficientNet-Lite0: L [B,H,W,1] in [-1, 1] ->
ab [B,H,W,out_channels] in [-1, 1] (regression) or colour-bin logits at half resolution
(classification), the same contract as ``UNetGenerator`` at ``depth=5``.

The L channel enters the encoder as the three-channel gray sRGB image it describes, in the
normalisation the encoder was trained with. The encoder's feature maps at strides 2, 4, 8, 16
and 32 feed a decoder of four blocks, innermost first: x2 upsampling -> norm -> ReLU, concatenated
with the encoder's map of that stride, then a 3x3 convolution -> norm -> ReLU. The
classification head reads the stride-2 result with a 1x1 convolution; the regression head
upsamples it once more to a*b* through tanh.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.color.lab import denormalize_l, lab_to_rgb
from colorjax.models.efficientnet import EfficientNetLite0, normalize_rgb
from colorjax.models.layers import Conv, ConvNorm, dropout, normal_around_one
from colorjax.models.norms import make_norm
from colorjax.models.remat import remat_block
from colorjax.models.unet import reflect_pad_to_multiple

ENCODER_NAME = "encoder"  # the pretrained sub-tree of the parameters (own learning rate)
DEPTH = 5  # the encoder's downsamplings: inputs are padded to multiples of 2**DEPTH
DECODER_MULTS = (8, 4, 2, 1)  # decoder widths, innermost first, times ``features``


def gray_rgb255(l_network: jax.Array) -> jax.Array:
    """The gray sRGB image [B,H,W,3] in 0-255 whose lightness is ``l_network`` [B,H,W,1]."""
    lightness = denormalize_l(l_network.astype(jnp.float32))
    lab = jnp.concatenate([lightness, jnp.zeros_like(lightness), jnp.zeros_like(lightness)], -1)
    gray = jnp.clip(lab_to_rgb(lab)[..., 1:2], 0.0, 1.0)
    return jnp.broadcast_to(gray, (*gray.shape[:3], 3)) * 255.0


class EncoderUNet(nn.Module):
    """EfficientNet-Lite0 encoder + U-Net decoder; fields mirror ``ModelConfig``.

    ``frozen_bn``: the encoder's BatchNorm uses (and keeps) its running statistics even in
    training. ``features``: width of the outermost decoder block (the others are 2x, 4x, 8x).
    Dropout (``dropout``) follows the ``dropout_blocks`` innermost decoder blocks.
    """

    features: int = 32
    norm: str = "batch"
    num_groups: int = 32
    dropout: float = 0.0
    dropout_blocks: int = 0
    upsample: str = "resize_conv"
    out_channels: int = 2
    head: str = "regression"
    frozen_bn: bool = True
    init_std: float = 0.02
    dtype: str = "float32"
    conv_impl: str = "auto"
    remat: str = "none"  # blocks: the decoder's upsampling blocks recompute in the backward pass

    def _upsample_norm(self, features: int, name: str) -> ConvNorm:
        """x2 upsampling (``upsample``) -> norm."""
        return remat_block(ConvNorm, self.remat)(
            features,
            upsample=self.upsample,
            norm=self.norm,
            num_groups=self.num_groups,
            init_std=self.init_std,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            name=name,
        )

    def _conv3_norm(self, x: jax.Array, features: int, name: str, *, train: bool) -> jax.Array:
        """3x3 convolution (no bias) -> norm."""
        x = Conv(
            features,
            use_bias=False,
            kernel_size=3,
            padding=1,
            init_std=self.init_std,
            dtype=self.dtype,
            impl=self.conv_impl,
            name=f"{name}_conv",
        )(x, train=train)
        norm = make_norm(
            self.norm,
            train=train,
            num_groups=self.num_groups,
            scale_init=normal_around_one(self.init_std),
            dtype=self.dtype,
            name=f"{name}_norm",
        )
        return norm(x)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        height, width = x.shape[1:3]
        x, (top, left) = reflect_pad_to_multiple(x, 2**DEPTH)
        encoder = EfficientNetLite0(
            num_classes=None,
            frozen_bn=self.frozen_bn,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            name=ENCODER_NAME,
        )
        skips = encoder(normalize_rgb(gray_rgb255(x)).astype(self.dtype), train=train)
        x = self._decode(skips, train=train)
        if self.head == "classification":
            return self._head_conv(self.out_channels, "logits")(x, train=train).astype(jnp.float32)
        x = self._head_conv(self.out_channels, "final", upsample=self.upsample)(x, train=train)
        return jnp.tanh(x.astype(jnp.float32))[:, top : top + height, left : left + width]

    def _head_conv(self, features: int, name: str, upsample: str | None = None) -> nn.Module:
        """The output layer: a 1x1 convolution, or an x2 upsampling convolution (with bias)."""
        if upsample is None:
            return Conv(
                features,
                kernel_size=1,
                padding=0,
                init_std=self.init_std,
                dtype=self.dtype,
                impl=self.conv_impl,
                name=name,
            )
        return ConvNorm(
            features,
            upsample=upsample,
            init_std=self.init_std,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            name=name,
        )

    def _decode(self, skips: tuple[jax.Array, ...], *, train: bool) -> jax.Array:
        """From the stride-32 map up to stride 2, joining the encoder's map of each stride."""
        x = skips[-1]
        for block, (skip, mult) in enumerate(zip(reversed(skips[:-1]), DECODER_MULTS, strict=True)):
            width = self.features * mult
            x = nn.relu(self._upsample_norm(width, f"up_{block}")(x, train=train))
            x = jnp.concatenate([skip.astype(x.dtype), x], axis=-1)
            x = nn.relu(self._conv3_norm(x, width, f"fuse_{block}", train=train))
            if block < self.dropout_blocks:
                x = dropout(x, self.dropout, train=train)
        return x
