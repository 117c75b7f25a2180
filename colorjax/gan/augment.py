"""Differentiable augmentation of discriminator inputs (translation, cutout, horizontal flip).

DiffAugment (``train.diffaug``, ``augment``) applies its policy to every image, with the same
draw for the real and the fake (L, ab) pairs, so the discriminator judges colours, never the
augmentation. ADA (colorjax/ada.py) applies each augmentation to each image with a probability
(``augment_randomly``). Colour jitter is deliberately absent: it would change the very thing
being judged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ("translation", "cutout"); unknown names are a ValueError."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown augmentation {unknown[0]!r} (train.diffaug); "
            f"valid: {', '.join(AUGMENTATIONS)}"
        )
    return names


def translate(x: jax.Array, key: jax.Array, ratio: float = 0.125) -> jax.Array:
    """Shift each image by up to ``ratio`` of its size, filling with zeros."""
    batch, height, width, _ = x.shape
    pad_h, pad_w = max(int(height * ratio), 1), max(int(width * ratio), 1)
    key_y, key_x = jax.random.split(key)
    dy = jax.random.randint(key_y, (batch,), 0, 2 * pad_h + 1)
    dx = jax.random.randint(key_x, (batch,), 0, 2 * pad_w + 1)
    padded = jnp.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))

    def crop(image, y, x_):
        return jax.lax.dynamic_slice(image, (y, x_, 0), (height, width, image.shape[-1]))

    return jax.vmap(crop)(padded, dy, dx)


def cutout(x: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Zero a random rectangle of ``ratio`` times the image size in each image."""
    batch, height, width, _ = x.shape
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    key_y, key_x = jax.random.split(key)
    top = jax.random.randint(key_y, (batch, 1, 1), -(cut_h // 2), height - cut_h // 2)
    left = jax.random.randint(key_x, (batch, 1, 1), -(cut_w // 2), width - cut_w // 2)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
    return x * (~inside)[..., None].astype(x.dtype)


def flip(x: jax.Array, key: jax.Array) -> jax.Array:
    """Mirror each image horizontally with probability 1/2."""
    mirrored = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    return jnp.where(mirrored, x[:, :, ::-1], x)


TRANSFORMS = {"translation": translate, "cutout": cutout, "flip": flip}


def augment(x: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
    """Apply the augmentations in ``policy`` to a batch [B,H,W,C]."""
    for name, subkey in zip(policy, jax.random.split(key, max(len(policy), 1)), strict=False):
        x = TRANSFORMS[name](x, subkey)
    return x


def augment_randomly(
    x: jax.Array, key: jax.Array, probability: jax.Array, policy: tuple[str, ...]
) -> jax.Array:
    """Apply each augmentation in ``policy`` to each image of [B,H,W,C] with ``probability``,
    drawn independently per image and augmentation."""
    for name, subkey in zip(policy, jax.random.split(key, max(len(policy), 1)), strict=False):
        key_apply, key_transform = jax.random.split(subkey)
        chosen = jax.random.bernoulli(key_apply, probability, (x.shape[0], 1, 1, 1))
        x = jnp.where(chosen, TRANSFORMS[name](x, key_transform), x)
    return x
