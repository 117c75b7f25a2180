"""Optax chains: clip_by_global_norm (off when 0) -> Adam(b1, b2) with a learning-rate schedule;
a pretrained encoder's parameters get their own rate (``train.encoder_lr_mult``, zero for the
first ``train.freeze_encoder_steps`` updates)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from colorjax.config import Config, Schedule, TrainConfig, choices
from colorjax.models.encoder_unet import ENCODER_NAME

SCHEDULES = choices(Schedule)


def make_schedule(
    peak: float, kind: str, steps: int, *, warmup_steps: int = 0, decay_start: float = 0.5
) -> optax.Schedule:
    """Learning rate by update count.

    ``constant``; ``linear_decay``: flat for ``decay_start * steps`` then linearly to 0 at ``steps``
    (pix2pix); ``warmup_cosine``: linear warm-up over ``warmup_steps`` then cosine to 0.
    """
    if kind == "constant":
        return optax.constant_schedule(peak)
    if kind == "linear_decay":
        flat = int(decay_start * steps)
        return optax.join_schedules(
            [optax.constant_schedule(peak), optax.linear_schedule(peak, 0.0, max(steps - flat, 1))],
            [flat],
        )
    if kind == "warmup_cosine":
        warmup = min(warmup_steps, steps - 1)
        return optax.warmup_cosine_decay_schedule(
            0.0, peak, warmup_steps=max(warmup, 0), decay_steps=max(steps, warmup + 1)
        )
    raise ValueError(f"unknown schedule {kind!r}; valid: {', '.join(SCHEDULES)}")


def make_optimizer(schedule: optax.Schedule, train: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping (``train.clip_norm``, off when 0) followed by Adam."""
    return _clipped(optax.adam(schedule, b1=train.b1, b2=train.b2), train)


def _clipped(tx: optax.GradientTransformation, train: TrainConfig) -> optax.GradientTransformation:
    if train.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(train.clip_norm), tx)
    return tx


def generator_optimizer(schedule: optax.Schedule, config: Config) -> optax.GradientTransformation:
    """``make_optimizer`` for the generator; with a pretrained encoder, Adam on its parameters
    runs at ``encoder_schedule``'s rate (clipping sees all parameters at once)."""
    train = config.train
    if config.model.encoder == "unet":
        return make_optimizer(schedule, train)
    adams = {
        "decoder": optax.adam(schedule, b1=train.b1, b2=train.b2),
        ENCODER_NAME: optax.adam(encoder_schedule(schedule, train), b1=train.b1, b2=train.b2),
    }
    return _clipped(optax.multi_transform(adams, _encoder_labels), train)


def encoder_schedule(schedule: optax.Schedule, train: TrainConfig) -> optax.Schedule:
    """The encoder's rate: ``schedule`` times ``train.encoder_lr_mult``, zero for the first
    ``train.freeze_encoder_steps`` updates (Adam's update is then exactly zero)."""

    def rate(count: jax.Array) -> jax.Array:
        warm = (count >= train.freeze_encoder_steps).astype(jnp.float32)
        return schedule(count) * train.encoder_lr_mult * warm

    return rate


def _encoder_labels(params: Any) -> Any:
    """``ENCODER_NAME`` for the encoder's parameters, ``decoder`` for the others."""
    labels = {}
    for name, sub in params.items():
        label = ENCODER_NAME if name == ENCODER_NAME else "decoder"
        labels[name] = jax.tree.map(lambda _, label=label: label, sub)
    return labels


def generator_schedule(train: TrainConfig) -> optax.Schedule:
    """The generator's schedule over the run's ``train.steps`` updates."""
    return make_schedule(
        train.lr_g,
        train.schedule,
        train.steps,
        warmup_steps=train.warmup_steps,
        decay_start=train.decay_start,
    )


def discriminator_schedule(train: TrainConfig) -> optax.Schedule:
    """The discriminator's schedule over its updates in the GAN phase."""
    updates = max(train.steps - train.pretrain_steps, 1) * train.d_steps
    return make_schedule(
        train.lr_d,
        train.schedule,
        updates,
        warmup_steps=train.warmup_steps * train.d_steps,
        decay_start=train.decay_start,
    )


def update_count(opt_state: Any) -> jax.Array:
    """How many updates an optimizer made by ``make_optimizer`` has applied (its count; a
    skipped update leaves it unchanged)."""
    (_, count), *_ = optax.tree_utils.tree_get_all_with_path(opt_state, "count")
    return count
