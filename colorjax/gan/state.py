"""The GAN train state: one pytree holding everything a run needs to continue."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from colorjax.gan import ada, d_skip, ema
from colorjax.gan.build import GAN

DISCRIMINATOR_PARTS = ("d_params", "d_state", "d_opt")  # what a skipped D update keeps


@flax.struct.dataclass
class GANState:
    """Everything a run needs to continue: both networks, their optimizers, the step and key."""

    step: jax.Array
    rng: jax.Array
    g_params: Any
    g_state: Any  # non-parameter collections (BatchNorm statistics), possibly empty
    g_opt: Any
    d_params: Any
    d_state: Any
    d_opt: Any
    loss_scale: jax.Array  # float16 dynamic loss scale; 1 for other dtypes
    finite_steps: jax.Array  # float16: consecutive finite steps since the scale last changed
    ema: dict  # the generator's EMA weights and norm statistics (ema.py); {} when off
    ada: dict  # ADA's augmentation probability and sign accumulator (ada.py); {} when off
    balance: dict  # the discriminator's last accuracy on fakes, skipped updates; {} when off


def split_variables(variables: dict) -> tuple[Any, dict]:
    """A network's variables as (params, the other collections)."""
    params = variables["params"]
    return params, {k: v for k, v in variables.items() if k != "params"}


def init_state(gan: GAN, rng: jax.Array, image_size: int) -> GANState:
    """A fresh state: parameters from ``rng``, optimizer states at zero."""
    key_g, key_d, key_run = jax.random.split(rng, 3)
    gray = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    pair = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    g_params, g_state = split_variables(gan.generator.init(key_g, gray, train=False))
    d_params, d_state = split_variables(gan.discriminator.init(key_d, pair, train=False))
    train = gan.config.train
    scale = train.loss_scale if gan.config.model.dtype == "float16" else 1.0
    return GANState(
        step=jnp.zeros((), jnp.int32),
        rng=key_run,
        g_params=g_params,
        g_state=g_state,
        g_opt=gan.tx_g.init(g_params),
        d_params=d_params,
        d_state=d_state,
        d_opt=gan.tx_d.init(d_params),
        loss_scale=jnp.asarray(scale, jnp.float32),
        finite_steps=jnp.zeros((), jnp.int32),
        ema=ema.init_ema(train.ema.decay, g_params, g_state),
        ada=ada.init_ada(train),
        balance=d_skip.init_balance(train),
    )
