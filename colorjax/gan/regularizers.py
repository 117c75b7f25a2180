"""The R1 gradient penalty on real data (Mescheder et al. 2018), applied lazily.

R1 = (gamma / 2) E_x ||grad_x D(x)||^2 over real images x, where for a PatchGAN D(x) is the sum
of its patch logits and the gradient is taken with respect to the real ab channels (D stays
free to use L, the condition). As in StyleGAN2's lazy regularisation it is added to the
discriminator's loss only every ``train.r1.every`` steps, multiplied by ``r1_every`` so its
strength does not depend on the interval. The training loop runs a separate jitted step
(``step.make_train_step(r1=True)``) on those steps, chosen on the host from the step number, so
the others pay nothing and a resumed run applies it on the same steps; a ``lax.cond`` would
have been one compile less, but on CPU a discriminator update inside one ran 5x slower.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from colorjax.config import TrainConfig


def r1_due(train: TrainConfig, step: int) -> bool:
    """Whether the step with index ``step`` (0-based) adds the R1 penalty."""
    return train.r1.weight > 0 and step % train.r1.every == 0


def lazy_r1_weight(train: TrainConfig) -> float:
    """The factor of E||grad||^2 in the loss on R1 steps: gamma / 2 times the interval."""
    return 0.5 * train.r1.weight * train.r1.every


def r1_penalty(
    judge: Callable[[jax.Array], tuple[jax.Array, Any]], x: jax.Array
) -> tuple[jax.Array, jax.Array, Any]:
    """E over the batch of ||grad_x sum(judge(x))||^2 (per image: summed over its pixels and
    channels), with ``judge``'s logits and auxiliary output from the same forward pass."""
    logits, pullback, aux = jax.vjp(judge, x, has_aux=True)
    (grad,) = pullback(jnp.ones_like(logits))
    squared = jnp.square(grad.astype(jnp.float32))
    return jnp.mean(jnp.sum(squared, axis=tuple(range(1, x.ndim)))), logits, aux
