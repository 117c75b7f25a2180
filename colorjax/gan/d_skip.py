"""Adaptive balance of the two networks: skip the discriminator's update while it is winning.

With ``train.d_skip_above`` > 0 the state carries ``{"acc_fake", "skipped"}``: the
discriminator's accuracy on the fakes of the last GAN step (measured before its update, on what
it saw) and the number of skipped updates. A step whose last measured accuracy is above the
threshold leaves the discriminator (weights, norm statistics, optimizer) as it was; its
losses, accuracies and gradient norm are still measured and logged. The run logs ``d_skipped``
(this step) and ``d_skip_fraction`` (of all GAN steps so far). With the balance off the state
carries ``{}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax.config import TrainConfig


def init_balance(train: TrainConfig) -> dict:
    """No measurement yet (so the first GAN step updates), or ``{}`` when the balance is off."""
    if train.d_skip_above <= 0:
        return {}
    return {"acc_fake": jnp.zeros((), jnp.float32), "skipped": jnp.zeros((), jnp.int32)}


def skip_discriminator(balance: dict, threshold: float) -> jax.Array:
    """Whether this step leaves the discriminator alone."""
    return balance["acc_fake"] > threshold


def update_balance(balance: dict, skipped: jax.Array, acc_fake: jax.Array) -> dict:
    """Count a skipped update and remember this step's accuracy on fakes."""
    return {
        "acc_fake": acc_fake.astype(jnp.float32),
        "skipped": balance["skipped"] + skipped.astype(jnp.int32),
    }


def skip_metrics(balance: dict, skipped: jax.Array, gan_steps: jax.Array) -> dict[str, jax.Array]:
    """``d_skipped`` of this step and ``d_skip_fraction`` over ``gan_steps`` steps (with it)."""
    return {
        "d_skipped": skipped.astype(jnp.float32),
        "d_skip_fraction": balance["skipped"] / jnp.maximum(gan_steps, 1),
    }
