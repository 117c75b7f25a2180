"""How the generator's output becomes a*b*, and the reconstruction loss that trains it.

``regression`` (pix2pix): the output is network a*b* [B, H, W, 2] in [-1, 1], trained with L1.

``classification`` (Zhang et al. 2016): the output is logits [B, H'/2, W'/2, Q] over the
colour bins of ``colorjax.heads.colorbins``, at half the resolution of the input as the generator
pads it (H' x W', multiples of ``2**depth``). Chroma varies slowly, and the cross-entropy over Q
classes at full resolution would cost as much as the rest of the step. It is trained with the
rebalanced cross-entropy against soft-encoded targets of the half-resolution ground truth, and
decoded by the annealed mean, upsampled bilinearly to the padded size and cropped to the
input's: a*b* at full resolution, differentiable, which the L1 metric and the discriminator
see.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.config import Head, choices
from colorjax.heads import colorbins
from colorjax.models.unet import reflect_pad_to_multiple


def output_channels(kind: str, regression_channels: int = 2) -> int:
    """Channels of the generator's output for head ``kind``."""
    return regression_channels if kind == "regression" else len(colorbins.bin_centers())


@dataclasses.dataclass(frozen=True, eq=False)
class ChromaHead:
    """Decoding and loss of one head. ``centers`` [Q, 2] (a*b* units) and ``class_weights``
    [Q] are used by the classification head only."""

    kind: str = "regression"
    depth: int = 7  # the generator's downsamplings: it pads inputs to multiples of 2**depth
    temperature: float = colorbins.TEMPERATURE
    centers: np.ndarray | None = None
    class_weights: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in choices(Head):
            raise ValueError(f"unknown head {self.kind!r} (model.head); valid: {choices(Head)}")
        if self.kind == "classification":
            if self.centers is None:
                object.__setattr__(self, "centers", colorbins.bin_centers())
            if self.class_weights is None:
                object.__setattr__(self, "class_weights", np.ones(len(self.centers), np.float32))

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    @functools.cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """The soft-encoding lookup table of ``centers`` (built on first use: training only)."""
        return colorbins.encoding_table(self.centers)

    def decode(self, output: jax.Array, height: int, width: int) -> jax.Array:
        """Network a*b* [B, height, width, 2] (float32) from the generator's ``output`` for an
        input of ``height`` x ``width``."""
        if not self.classification:
            return output.astype(jnp.float32)
        ab = colorbins.annealed_mean(output, self.centers, self.temperature)
        padded = [-(-side // 2**self.depth) * 2**self.depth for side in (height, width)]
        full = jax.image.resize(ab, (ab.shape[0], *padded, 2), "bilinear")
        top, left = ((p - s) // 2 for p, s in zip(padded, (height, width), strict=True))
        return full[:, top : top + height, left : left + width]

    def reconstruction_loss(
        self, output: jax.Array, decoded: jax.Array, target: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The loss that ties the output to the ground-truth network a*b* ``target``
        [B, H, W, 2] (L1 or rebalanced cross-entropy), and metrics: ``g_l1`` of the decoded
        a*b* for both heads, ``g_ce`` for classification."""
        l1 = l1_loss(decoded, target)
        if not self.classification:
            return l1, {"g_l1": l1}
        indices, weights = colorbins.soft_encode(half_resolution(target, self.depth), self.table)
        ce = colorbins.cross_entropy(output, indices, weights, self.class_weights)
        return ce, {"g_l1": l1, "g_ce": ce}


def half_resolution(ab: jax.Array, depth: int) -> jax.Array:
    """Network a*b* [B, H, W, 2] reflect-padded as the generator pads its input, then averaged
    over 2x2 blocks: the grid of the classification logits."""
    padded, _ = reflect_pad_to_multiple(ab, 2**depth)
    batch, height, width, channels = padded.shape
    blocks = padded.reshape(batch, height // 2, 2, width // 2, 2, channels)
    return blocks.mean(axis=(2, 4))


def l1_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error, computed in float32."""
    return jnp.mean(jnp.abs(prediction.astype(jnp.float32) - target.astype(jnp.float32)))
