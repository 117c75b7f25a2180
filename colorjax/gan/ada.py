"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) for small data sets.

With ``train.ada.target`` > 0 every image the discriminator sees (real and fake, each with its
own draw, and the fakes of the generator's adversarial pass) gets each of ``PIPELINE`` with
probability ``p``. The state carries ``{"p", "sign_sum", "count"}``: each GAN step adds
``sign(D(real))`` averaged over its patches (relative to the loss's decision threshold), and
every ``train.ada.interval`` steps ``r_t``, the mean of those, moves
``p += sign(r_t - target) * batch_size * interval / train.ada.images``, clipped to [0, 1): a
discriminator that is too sure of the real images (overfitting) gets more augmentation. With ADA
off the state carries ``{}`` and ``train.diffaug`` works as before.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.config import ConfigError, TrainConfig
from colorjax.gan import augment, losses

PIPELINE = ("flip", "translation", "cutout")
MAX_P = float(np.nextafter(np.float32(1.0), np.float32(0.0)))  # p stays below 1


def enabled(train: TrainConfig) -> bool:
    """Whether ``train`` asks for ADA."""
    return train.ada.target > 0


def check_config(train: TrainConfig) -> None:
    """Raise a ConfigError naming the fields if ADA is on beside DiffAugment."""
    if enabled(train) and train.diffaug:
        raise ConfigError(
            f"train.ada.target={train.ada.target} and train.diffaug={train.diffaug!r}: ADA "
            f"applies its own augmentations ({', '.join(PIPELINE)}); set train.diffaug=''"
        )


def init_ada(train: TrainConfig) -> dict:
    """p = 0 and an empty sign accumulator, or ``{}`` when ADA is off."""
    if not enabled(train):
        return {}
    return {
        "p": jnp.zeros((), jnp.float32),
        "sign_sum": jnp.zeros((), jnp.float32),
        "count": jnp.zeros((), jnp.int32),
    }


def augment_images(x: jax.Array, key: jax.Array, p: jax.Array) -> jax.Array:
    """Each augmentation of ``PIPELINE`` applied to each image of ``x`` with probability ``p``."""
    return augment.augment_randomly(x, key, p, PIPELINE)


def real_sign(gan_loss: str, real_logits: jax.Array) -> jax.Array:
    """Mean sign of the discriminator's real logits about its decision threshold, in [-1, 1]."""
    threshold = losses.decision_threshold(gan_loss)
    return jnp.mean(jnp.sign(real_logits.astype(jnp.float32) - threshold))


def update_ada(ada: dict, sign: jax.Array, train: TrainConfig, batch_size: int) -> dict:
    """Add one step's ``real_sign``; every ``train.ada.interval`` steps adjust p and restart."""
    sign_sum, count = ada["sign_sum"] + sign, ada["count"] + 1
    due = count >= train.ada.interval
    r_t = sign_sum / count
    speed = batch_size * train.ada.interval / train.ada.images
    adjusted = jnp.clip(ada["p"] + jnp.sign(r_t - train.ada.target) * speed, 0.0, MAX_P)
    return {
        "p": jnp.where(due, adjusted, ada["p"]),
        "sign_sum": jnp.where(due, 0.0, sign_sum),
        "count": jnp.where(due, 0, count),
    }
