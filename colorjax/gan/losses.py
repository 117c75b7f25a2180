"""Adversarial losses (vanilla BCE, LSGAN, hinge) with one-sided label smoothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from colorjax.config import GanLoss, choices

GAN_LOSSES = choices(GanLoss)


def discriminator_loss(
    kind: str, real_logits: jax.Array, fake_logits: jax.Array, real_label: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """(loss on real, loss on fake); ``real_label`` < 1 is one-sided label smoothing.

    The discriminator minimises ``0.5 * (real + fake)`` (vanilla, lsgan) or ``real + fake`` (hinge,
    whose margin for real patches is ``real_label``).
    """
    real_logits = real_logits.astype(jnp.float32)
    fake_logits = fake_logits.astype(jnp.float32)
    if kind == "vanilla":
        real = optax.sigmoid_binary_cross_entropy(real_logits, real_label).mean()
        fake = optax.sigmoid_binary_cross_entropy(fake_logits, 0.0).mean()
    elif kind == "lsgan":
        real = jnp.mean((real_logits - real_label) ** 2)
        fake = jnp.mean(fake_logits**2)
    elif kind == "hinge":
        real = jnp.mean(jax.nn.relu(real_label - real_logits))
        fake = jnp.mean(jax.nn.relu(1.0 + fake_logits))
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")
    return real, fake


def discriminator_total(kind: str, real: jax.Array, fake: jax.Array) -> jax.Array:
    """The quantity the discriminator minimises from its real and fake parts."""
    return real + fake if kind == "hinge" else 0.5 * (real + fake)


def generator_adversarial_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
    """The generator's adversarial loss: its fakes should be judged real (target 1, unsmoothed)."""
    fake_logits = fake_logits.astype(jnp.float32)
    if kind == "vanilla":
        return optax.sigmoid_binary_cross_entropy(fake_logits, 1.0).mean()
    if kind == "lsgan":
        return jnp.mean((fake_logits - 1.0) ** 2)
    if kind == "hinge":
        return -jnp.mean(fake_logits)
    raise ValueError(f"unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")


def decision_threshold(kind: str) -> float:
    """Logit above which the discriminator calls a patch real."""
    return 0.5 if kind == "lsgan" else 0.0


def discriminator_accuracy(
    kind: str, real_logits: jax.Array, fake_logits: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Fraction of real patches called real and of fake patches called fake."""
    threshold = decision_threshold(kind)
    return jnp.mean(real_logits > threshold), jnp.mean(fake_logits <= threshold)
