"""The one normalisation factory both networks use: ``make_norm(kind, train=...)``.

Every norm acts on NHWC feature maps with a per-channel affine (scale, bias), computes its
statistics in float32 and returns the compute ``dtype``, so a bfloat16 network keeps float32
statistics and parameters.

    batch     BatchNorm over (N, H, W); running averages with PyTorch's momentum 0.1
              (flax momentum 0.9) in the ``batch_stats`` collection, used when ``train=False``.
    instance  per sample and channel over (H, W), with a per-channel affine.
    group     per sample over (H, W, channels of a group); see ``fitting_group_count``.
    layer     per sample over (H, W, C), with a per-channel affine (= one group).
    none      identity.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

NORM_KINDS = ("batch", "instance", "group", "layer", "none")
BATCH_NORM_MOMENTUM = 0.9  # flax keeps 0.9 of the old average: PyTorch's momentum=0.1
EPSILON = 1e-5  # PyTorch's default

Initializer = Callable[..., jax.Array]


def fitting_group_count(channels: int, num_groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``num_groups``.

    GroupNorm needs the group count to divide the channel count; rather than fail on a width
    such as 12 channels with 8 groups, the nearest smaller count that fits is used (6 here).
    """
    if num_groups < 1:
        raise ValueError(f"num_groups must be at least 1, got {num_groups}")
    return next(g for g in range(min(num_groups, channels), 0, -1) if channels % g == 0)


class GroupNorm(nn.Module):
    """Group normalisation of NHWC maps with a per-channel affine.

    ``num_groups=None`` makes every channel its own group (instance norm); ``num_groups`` that
    does not divide the channel count is lowered with ``fitting_group_count``.
    """

    num_groups: int | None = 32
    scale_init: Initializer = nn.initializers.ones
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        groups = (
            channels if self.num_groups is None else fitting_group_count(channels, self.num_groups)
        )
        grouped = x.astype(jnp.float32).reshape(batch, height, width, groups, -1)
        mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
        var = grouped.var(axis=(1, 2, 4), keepdims=True)
        normed = ((grouped - mean) * jax.lax.rsqrt(var + EPSILON)).reshape(x.shape)
        scale = self.param("scale", self.scale_init, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        return (normed * scale + bias).astype(self.dtype)


def identity(x: jax.Array) -> jax.Array:
    """The ``none`` norm."""
    return x


def make_norm(
    kind: str,
    *,
    train: bool,
    num_groups: int = 32,
    scale_init: Initializer = nn.initializers.ones,
    dtype: str = "float32",
    name: str | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """A norm layer of ``kind`` (one of ``NORM_KINDS``) to call on NHWC maps.

    ``train`` selects batch statistics (and updates the running averages) for ``batch``;
    the other kinds behave the same in both modes. ``scale_init`` initialises the per-channel
    scale; ``dtype`` is the output (compute) dtype, statistics and parameters stay float32.
    """
    if kind == "batch":
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=BATCH_NORM_MOMENTUM,
            epsilon=EPSILON,
            scale_init=scale_init,
            dtype=dtype,
            param_dtype=jnp.float32,
            name=name,
        )
    groups_by_kind = {"instance": None, "group": num_groups, "layer": 1}
    if kind in groups_by_kind:
        return GroupNorm(groups_by_kind[kind], scale_init=scale_init, dtype=dtype, name=name)
    if kind == "none":
        return identity
    raise ValueError(f"unknown norm {kind!r}; valid norms: {', '.join(NORM_KINDS)}")
