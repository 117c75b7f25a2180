"""Dynamic loss scaling for float16 compute: gradients of ``loss * scale`` are unscaled in
float32; an overflow skips the update and halves the scale, and ``GROWTH_STEPS`` consecutive
steps with finite gradients double it (the count restarts at every change)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

GROWTH_STEPS = 2000  # consecutive finite steps before the scale doubles
MIN_SCALE = 1.0


def unscale(grads: Any, scale: jax.Array) -> tuple[Any, jax.Array]:
    """Gradients of a loss multiplied by ``scale``, back in float32; and whether all are finite."""
    grads = jax.tree.map(lambda g: g.astype(jnp.float32) / scale, grads)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    return grads, finite


def next_scale(
    scale: jax.Array, finite_steps: jax.Array, finite: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(scale, consecutive finite steps) after a step whose gradients were ``finite`` or not."""
    clean = jnp.where(finite, finite_steps + 1, 0)
    grow = clean >= GROWTH_STEPS
    scale = jnp.where(
        finite, jnp.where(grow, 2.0 * scale, scale), jnp.maximum(scale / 2, MIN_SCALE)
    )
    return scale, jnp.where(grow, 0, clean).astype(finite_steps.dtype)
