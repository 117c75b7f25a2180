"""The jitted eval-mode generator, decoded by its head: L -> network a*b*."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from colorjax.heads.chroma import ChromaHead
from colorjax.models.apply import apply_network


def make_generate(
    generator: nn.Module, head: ChromaHead
) -> Callable[[Any, dict, jax.Array], jax.Array]:
    """Jitted eval-mode generator: (params, state, L [B,H,W,1]) -> ab [B,H,W,2] in float32,
    decoded by ``head``."""

    @jax.jit
    def generate(params: Any, state: dict, gray: jax.Array) -> jax.Array:
        output, _ = apply_network(generator, params, state, gray, train=False)
        return head.decode(output, *gray.shape[1:3])

    return generate
