"""Exponential moving average (EMA) of the generator's weights, and the choice of weights to use.

With ``train.ema.decay`` > 0 the state carries ``{"params": .., "state": ..}``: after each
update, before step ``train.ema.start`` a copy of the generator's weights, from it on
``decay * ema + (1 - decay) * weights``. The norm statistics (BatchNorm's running means and
variances) are averaged the same way, so the averaged weights come with statistics of their
own. With EMA off the state carries ``{}``. Validation, sample grids, the best checkpoint,
export and colorizing a workdir use the EMA weights when there are some (``weights="raw"``
selects the trained ones).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

EMA, RAW = "ema", "raw"
WEIGHTS = (EMA, RAW)


def init_ema(decay: float, params: Any, state: dict) -> dict:
    """The EMA's initial value: the weights themselves, or ``{}`` when ``decay`` is 0 (off)."""
    return {"params": params, "state": state} if decay > 0 else {}


def update_ema(
    ema: dict, params: Any, state: dict, step: jax.Array, *, decay: float, start: int
) -> dict:
    """The EMA after the update of ``step`` produced ``params`` and ``state``."""
    if not ema:
        return ema

    def average(old: jax.Array, new: jax.Array) -> jax.Array:
        return jnp.where(step < start, new, decay * old + (1.0 - decay) * new).astype(new.dtype)

    return {
        "params": jax.tree.map(average, ema["params"], params),
        "state": jax.tree.map(average, ema["state"], state),
    }


def resolve_weights(has_ema: bool, weights: str | None, source: str = "the run") -> str:
    """Which weights to use: ``weights`` ("ema" or "raw"), by default EMA when ``has_ema``."""
    if weights is None:
        return EMA if has_ema else RAW
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if weights == EMA and not has_ema:
        raise ValueError(
            f"{source} has no EMA weights (trained with train.ema.decay=0); use weights 'raw'"
        )
    return weights


def generator_weights(
    ema: dict, params: Any, state: dict, weights: str | None = None, source: str = "the run"
) -> tuple[Any, dict]:
    """(params, norm statistics) to colorize with: the EMA's or the trained ones
    (``resolve_weights``)."""
    if resolve_weights(bool(ema), weights, source) == EMA:
        return ema["params"], ema["state"]
    return params, state
