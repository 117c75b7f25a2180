"""U-Net generator: L [B, H, W, 1] in [-1, 1] -> ab [B, H, W, out_channels] in [-1, 1].

The structure is pix2pix's ``unet_128`` at the defaults (41,825,474 parameters with one input
channel): pre-activation encoder blocks LeakyReLU(0.2) -> 4x4 stride-2 conv -> norm (no
activation before the outermost conv, no norm after the outermost and innermost convs), decoder
blocks ReLU -> x2 upsampling -> norm [-> dropout], each concatenated after its encoder skip, and a
final ReLU -> x2 upsampling (with bias) -> tanh.

With ``head="classification"`` the final block is instead ReLU -> 1x1 conv (with bias) to
``out_channels`` logits, one per colour bin (``colorjax.heads.colorbins``), at half the
resolution of the padded input (``colorjax.heads`` decodes it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.layers import Conv, ConvNorm, dropout
from colorjax.models.remat import remat_block

ENCODER_SLOPE = 0.2  # LeakyReLU negative slope of the encoder


def level_widths(depth: int, features: int, max_mult: int) -> list[int]:
    """Channels of each encoder level, outermost first: doubling, capped at features*max_mult."""
    return [features * min(2**level, max_mult) for level in range(depth)]


def reflect_pad_to_multiple(x: jax.Array, multiple: int) -> tuple[jax.Array, tuple[int, int]]:
    """``x`` [B, H, W, C] reflect-padded (centred) so H and W are multiples of ``multiple``.

    Returns the padded maps and the (top, left) offset of the original image. Padding wider
    than the image repeats the reflection (``jnp.pad`` semantics), so tiny images work too.
    """
    pads = [(-size) % multiple for size in x.shape[1:3]]
    before = [pad // 2 for pad in pads]
    widths = [(0, 0), *((b, pad - b) for b, pad in zip(before, pads, strict=True)), (0, 0)]
    return jnp.pad(x, widths, mode="reflect"), (before[0], before[1])


class UNetGenerator(nn.Module):
    """pix2pix U-Net; fields mirror ``colorjax.config.ModelConfig``.

    Any H x W and batch size: the input is reflect-padded to a multiple of ``2**depth`` and the
    output cropped back. ``dtype`` is the compute dtype (parameters and norm statistics stay
    float32; the output is float32). Dropout draws from the ``dropout`` rng; BatchNorm
    averages live in ``batch_stats``. ``remat`` ``blocks`` rematerialises every block
    (``colorjax.models.remat``; ``full`` is applied around the whole network by its builder).
    """

    depth: int = 7
    features: int = 64
    max_mult: int = 8
    norm: str = "batch"
    num_groups: int = 32
    dropout: float = 0.5
    dropout_blocks: int = 3
    upsample: str = "transpose"
    out_channels: int = 2
    head: str = "regression"
    init_std: float = 0.02
    dtype: str = "float32"
    conv_impl: str = "auto"
    remat: str = "none"

    def _block(
        self,
        features: int,
        norm: str,
        name: str,
        upsample: str | None = None,
        activation: str = "relu",
    ) -> ConvNorm:
        return remat_block(ConvNorm, self.remat)(
            features,
            upsample=upsample,
            activation=activation,
            slope=ENCODER_SLOPE,
            norm=norm,
            num_groups=self.num_groups,
            init_std=self.init_std,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        height, width = x.shape[1:3]
        x, (top, left) = reflect_pad_to_multiple(x, 2**self.depth)
        skips = self._encode(x, train=train)
        x = self._decode(skips, train=train)
        if self.head == "classification":
            return self._bin_logits(nn.relu(x), train=train)
        x = self._block(self.out_channels, "none", "final", self.upsample)(x, train=train)
        return jnp.tanh(x.astype(jnp.float32))[:, top : top + height, left : left + width]

    def _bin_logits(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, H'/2, W'/2, Q] over the colour bins, for the padded H' x W' input."""
        logits = Conv(
            self.out_channels,
            kernel_size=1,
            padding=0,
            init_std=self.init_std,
            dtype=self.dtype,
            impl=self.conv_impl,
            name="logits",
        )(x, train=train)
        return logits.astype(jnp.float32)

    def _encode(self, x: jax.Array, *, train: bool) -> list[jax.Array]:
        """Activations of every encoder level, outermost first."""
        skips = []
        for level, features in enumerate(level_widths(self.depth, self.features, self.max_mult)):
            outermost, innermost = level == 0, level == self.depth - 1
            norm = "none" if outermost or innermost else self.norm
            activation = "none" if outermost else "leaky_relu"
            x = self._block(features, norm, f"down_{level}", activation=activation)(x, train=train)
            skips.append(x)
        return skips

    def _decode(self, skips: list[jax.Array], *, train: bool) -> jax.Array:
        """Decoder from the innermost activation up to half resolution, block ``j`` (0 =
        innermost) joining the skip of level ``depth - 2 - j`` as concat(skip, upsampled)."""
        x = skips[-1]
        for block, skip in enumerate(reversed(skips[:-1])):
            x = self._block(skip.shape[-1], self.norm, f"up_{block}", self.upsample)(x, train=train)
            if block < self.dropout_blocks:
                x = dropout(x, self.dropout, train=train)
            x = jnp.concatenate([skip, x], axis=-1)
        return x
