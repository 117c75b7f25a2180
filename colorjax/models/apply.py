"""Running a Flax network on the state pytree's parameters and norm statistics."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax


def apply_network(
    module: nn.Module,
    params: Any,
    state: dict,
    x: jax.Array,
    *,
    train: bool,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """Run ``module``; in train mode return its updated non-parameter collections too."""
    variables = {"params": params, **state}
    rngs = {"dropout": rng} if rng is not None else {}
    if train and state:
        return module.apply(variables, x, train=True, rngs=rngs, mutable=list(state))
    return module.apply(variables, x, train=train, rngs=rngs), state
