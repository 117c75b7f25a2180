"""PatchGAN discriminator: concat(L, ab) [B, H, W, 3] -> patch logits [B, h, w, 1].

pix2pix's ``NLayerDiscriminator``: a 4x4 stride-2 conv (with bias, no norm), ``layers - 1`` more
stride-2 convs and one stride-1 conv, each followed by a norm, every hidden conv followed by
LeakyReLU [-> dropout], and a final 4x4 conv to one logit per patch. ``layers=3`` is the 70x70
PatchGAN (2,765,633 parameters with BatchNorm).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.layers import ConvNorm, dropout
from colorjax.models.norms import NORM_KINDS
from colorjax.models.remat import remat_block

DISC_NORMS = (*NORM_KINDS, "spectral")
KERNEL_SIZE = 4
MAX_MULT = 8  # widths double per layer up to features * MAX_MULT


def conv_strides(layers: int) -> list[int]:
    """Strides of the hidden convs, then of the logit conv."""
    return [2] * layers + [1, 1]


def receptive_field(layers: int) -> int:
    """Side in pixels of the input patch one logit sees (70 for ``layers=3``)."""
    field, jump = 1, 1
    for stride in conv_strides(layers):
        field += (KERNEL_SIZE - 1) * jump
        jump *= stride
    return field


def check_input_size(height: int, width: int, layers: int) -> None:
    """Raise ValueError if an H x W input is smaller than the receptive field."""
    field = receptive_field(layers)
    if min(height, width) < field:
        raise ValueError(
            f"PatchDiscriminator(layers={layers}) has a {field}x{field} receptive field; "
            f"the {height}x{width} input is smaller. Use larger images or fewer layers."
        )


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN; fields mirror ``colorjax.config.DiscConfig`` plus ``dtype``,
    ``conv_impl`` and ``remat`` (as in ``ModelConfig``; ``blocks`` rematerialises every block,
    ``full`` is applied around the whole network by its builder).

    ``norm="spectral"`` means spectral normalisation of every conv and no activation norm;
    ``spectral=True`` adds spectral normalisation to any activation norm. Spectral and
    BatchNorm state live in ``batch_stats`` and change only when ``train``; dropout draws from
    the ``dropout`` rng. The logits are float32.
    """

    layers: int = 3
    features: int = 64
    norm: str = "batch"
    num_groups: int = 32
    spectral: bool = False
    dropout: float = 0.0
    slope: float = 0.2
    init_std: float = 0.02
    dtype: str = "float32"
    conv_impl: str = "auto"
    remat: str = "none"

    def _block(self, features: int, stride: int, norm: str, name: str) -> ConvNorm:
        return remat_block(ConvNorm, self.remat)(
            features,
            stride=stride,
            norm=norm,
            num_groups=self.num_groups,
            spectral=self.spectral or self.norm == "spectral",
            init_std=self.init_std,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.norm not in DISC_NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; valid norms: {', '.join(DISC_NORMS)}")
        if self.layers < 1:
            raise ValueError(f"layers must be at least 1, got {self.layers}")
        check_input_size(x.shape[1], x.shape[2], self.layers)
        activation_norm = "none" if self.norm == "spectral" else self.norm
        *hidden_strides, logit_stride = conv_strides(self.layers)
        for layer, stride in enumerate(hidden_strides):
            features = self.features * min(2**layer, MAX_MULT)
            norm = "none" if layer == 0 else activation_norm
            x = self._block(features, stride, norm, name=f"conv_{layer}")(x, train=train)
            x = dropout(nn.leaky_relu(x, self.slope), self.dropout, train=train)
        x = self._block(1, logit_stride, "none", name="logits")(x, train=train)
        return x.astype(jnp.float32)
