"""The jitted GAN train step.

One step: generator forward (kept as a VJP), ``train.d_steps`` discriminator updates on that
fake batch, then the generator update against the updated discriminator, its gradient pulled
back through the saved forward pass instead of a second forward. Random keys come from
``fold_in(state.rng, state.step)``, so a resumed run continues on the same random stream.

The remedies of a GAN in trouble are state or step variants, each off by default: the
generator's EMA (ema.py), adaptive augmentation (ada.py), the R1 penalty on the steps that
``regularizers.r1_due`` picks (a separate jitted variant, ``r1=True``) and skipping the
discriminator's update while it wins (d_skip.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from colorjax import color
from colorjax.gan import ada, augment, d_skip, ema, loss_scale, losses, optim, regularizers
from colorjax.gan.build import GAN
from colorjax.gan.state import DISCRIMINATOR_PARTS, GANState
from colorjax.models.apply import apply_network

Batch = dict[str, jax.Array]  # {"rgb": uint8 [B, H, W, 3]}, as the pipeline yields it
Metrics = dict[str, jax.Array]


def _pair(batch_l: jax.Array, ab: jax.Array) -> jax.Array:
    return jnp.concatenate([batch_l.astype(ab.dtype), ab], axis=-1)


def _augmenters(gan: GAN, state: GANState, key: jax.Array) -> tuple[Callable, Callable]:
    """How real and fake pairs are augmented for the discriminator: ADA's own draw per image
    with probability p, or DiffAugment's one draw for both (the identity without a policy)."""
    if ada.enabled(gan.config.train):
        key_real, key_fake = jax.random.split(key)
        p = state.ada["p"]
        return (
            lambda x: ada.augment_images(x, key_real, p),
            lambda x: ada.augment_images(x, key_fake, p),
        )

    def same_draw(x):
        return augment.augment(x, key, gan.diffaug)

    return same_draw, same_draw


def _discriminator_losses(
    gan: GAN,
    state: GANState,
    d_params: Any,
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    r1: bool,
) -> tuple[jax.Array, dict, Metrics]:
    """The discriminator's loss on (augmented) real and fake pairs, plus the lazy R1 penalty
    when ``r1``; its updated norm statistics; metrics (``d_loss`` without the penalty)."""
    train = gan.config.train
    key_aug, key_real, key_fake = jax.random.split(key, 3)
    augment_real, augment_fake = _augmenters(gan, state, key_aug)
    gray, real_ab = real[..., :1], real[..., 1:]

    def judge_real(ab):
        pair = augment_real(_pair(gray, ab))
        return apply_network(
            gan.discriminator, d_params, state.d_state, pair, train=True, rng=key_real
        )

    if r1:
        penalty, real_logits, d_state = regularizers.r1_penalty(judge_real, real_ab)
    else:
        real_logits, d_state = judge_real(real_ab)
    fake_logits, d_state = apply_network(
        gan.discriminator, d_params, d_state, augment_fake(fake), train=True, rng=key_fake
    )
    kind = train.gan_loss
    loss_real, loss_fake = losses.discriminator_loss(
        kind, real_logits, fake_logits, train.real_label
    )
    acc_real, acc_fake = losses.discriminator_accuracy(kind, real_logits, fake_logits)
    loss = losses.discriminator_total(kind, loss_real, loss_fake)
    metrics = {
        "d_real": loss_real,
        "d_fake": loss_fake,
        "d_acc_real": acc_real,
        "d_acc_fake": acc_fake,
        "d_sign_real": ada.real_sign(kind, real_logits),
        "d_loss": loss,
    }
    if r1:
        metrics["d_r1"] = penalty
        loss = loss + regularizers.lazy_r1_weight(train) * penalty
    return loss, d_state, metrics


def _discriminator_update(
    gan: GAN, state: GANState, real: jax.Array, fake: jax.Array, key: jax.Array, r1: bool
) -> tuple[GANState, Metrics, jax.Array]:
    """One discriminator update on this step's pairs; also whether its gradient was finite
    (float16 skips the update otherwise)."""

    def loss_fn(d_params):
        loss, d_state, metrics = _discriminator_losses(gan, state, d_params, real, fake, key, r1)
        return loss * state.loss_scale, (d_state, metrics)

    (_, (d_state, metrics)), scaled = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
    grads, finite = loss_scale.unscale(scaled, state.loss_scale)
    d_params, d_opt = _optimizer_step(gan, gan.tx_d, state.d_params, state.d_opt, grads, finite)
    state = state.replace(d_params=d_params, d_state=d_state, d_opt=d_opt)
    return state, {**metrics, "d_grad_norm": optax.global_norm(grads)}, finite


def _discriminator_updates(
    gan: GAN, state: GANState, real: jax.Array, fake: jax.Array, key: jax.Array, r1: bool
) -> tuple[GANState, Metrics, jax.Array]:
    """``train.d_steps`` updates on this step's pairs, with the metrics of the first."""
    metrics: Metrics = {}
    all_finite = jnp.array(True)
    for i, d_key in enumerate(jax.random.split(key, gan.config.train.d_steps)):
        state, d_metrics, finite = _discriminator_update(gan, state, real, fake, d_key, r1)
        metrics = d_metrics if i == 0 else metrics
        all_finite = all_finite & finite
    return state, metrics, all_finite


def _train_discriminator(
    gan: GAN, state: GANState, real: jax.Array, fake: jax.Array, key: jax.Array, r1: bool
) -> tuple[GANState, Metrics, jax.Array]:
    """The discriminator's part of a GAN step, skipped while it wins (d_skip.py).

    A skipped update is computed and discarded rather than branched around: on CPU the
    update inside a ``lax.cond`` ran 5x slower (demo preset: 467 against 85 ms a step)."""
    train = gan.config.train
    updated, metrics, finite = _discriminator_updates(gan, state, real, fake, key, r1)
    if not state.balance:
        return updated, metrics, finite
    skipped = d_skip.skip_discriminator(state.balance, train.d_skip_above)
    kept = {k: _where(skipped, getattr(state, k), getattr(updated, k)) for k in DISCRIMINATOR_PARTS}
    counts = d_skip.update_balance(state.balance, skipped, metrics["d_acc_fake"])
    gan_steps = state.step - train.pretrain_steps + 1
    metrics = {**metrics, **d_skip.skip_metrics(counts, skipped, gan_steps)}
    return updated.replace(balance=counts, **kept), metrics, finite


def _generator_loss(
    gan: GAN, state: GANState, gray: jax.Array, target: jax.Array, key: jax.Array, adversarial: bool
) -> Callable:
    """Loss of the generator as a function of its output (for the pulled-back gradient)."""
    train = gan.config.train
    key_aug, key_drop = jax.random.split(key)
    _, augment_fake = _augmenters(gan, state, key_aug)
    weight = train.ce_weight if gan.head.classification else train.l1_weight

    def loss_fn(output):
        fake = gan.head.decode(output, *gray.shape[1:3])
        reconstruction, metrics = gan.head.reconstruction_loss(output, fake, target)
        if not adversarial:
            return reconstruction, metrics
        fake_in = augment_fake(_pair(gray, fake.astype(output.dtype)))
        logits, _ = apply_network(
            gan.discriminator, state.d_params, state.d_state, fake_in, train=True, rng=key_drop
        )
        adv = losses.generator_adversarial_loss(train.gan_loss, logits)
        return adv + weight * reconstruction, {**metrics, "g_adv": adv}

    return loss_fn


def _optimizer_step(
    gan: GAN,
    tx: optax.GradientTransformation,
    params: Any,
    opt: Any,
    grads: Any,
    finite: jax.Array,
) -> tuple[Any, Any]:
    """Apply ``tx``; with float16 compute a non-finite gradient leaves params and state as
    they were (dynamic loss scaling then lowers the scale)."""
    updates, new_opt = tx.update(grads, opt, params)
    new_params = optax.apply_updates(params, updates)
    if gan.config.model.dtype == "float16":
        return _where(finite, new_params, params), _where(finite, new_opt, opt)
    return new_params, new_opt


def _where(condition: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(condition, n, o), new, old)


def train_step(
    gan: GAN, state: GANState, batch: Batch, *, adversarial: bool = True, r1: bool = False
) -> tuple[GANState, Metrics]:
    """One GAN step (or, with ``adversarial=False``, one L1-only generator step); ``r1`` adds
    the lazy R1 penalty to the discriminator's loss."""
    key = jax.random.fold_in(state.rng, state.step)
    key_g, key_d, key_loss = jax.random.split(key, 3)
    gray, target = color.rgb8_to_network(batch["rgb"])

    def forward(g_params):
        return apply_network(gan.generator, g_params, state.g_state, gray, train=True, rng=key_g)

    output, pullback, g_state = jax.vjp(forward, state.g_params, has_aux=True)
    state = state.replace(g_state=g_state)
    metrics: Metrics = {}
    all_finite = jnp.array(True)
    if adversarial:
        fake = jax.lax.stop_gradient(gan.head.decode(output, *gray.shape[1:3]))
        real_pair = _pair(gray, target.astype(output.dtype))
        fake_pair = _pair(gray, fake.astype(output.dtype))
        state, metrics, all_finite = _train_discriminator(
            gan, state, real_pair, fake_pair, key_d, r1
        )
    loss_fn = _generator_loss(gan, state, gray, target, key_loss, adversarial)
    (g_loss, g_metrics), grad_output = jax.value_and_grad(loss_fn, has_aux=True)(output)
    scale = state.loss_scale
    (scaled,) = pullback((grad_output * scale).astype(output.dtype))
    grads, finite = loss_scale.unscale(scaled, scale)
    g_params, g_opt = _optimizer_step(gan, gan.tx_g, state.g_params, state.g_opt, grads, finite)
    state = state.replace(g_params=g_params, g_opt=g_opt)
    state = state.replace(ema=_next_ema(gan, state))
    all_finite = all_finite & finite
    metrics = {
        **metrics,
        **g_metrics,
        "g_loss": g_loss,
        "g_grad_norm": optax.global_norm(grads),
        "lr_g": gan.schedule_g(jnp.maximum(optim.update_count(state.g_opt) - 1, 0)),
        "lr_d": gan.schedule_d(jnp.maximum(optim.update_count(state.d_opt) - 1, 0)),
        "g_param_norm": optax.global_norm(state.g_params),
        "loss_scale": scale,
    }
    if adversarial and state.ada:
        metrics["ada_p"] = state.ada["p"]
        state = state.replace(ada=_next_ada(gan, state, metrics["d_sign_real"]))
    if gan.config.model.dtype == "float16":
        scale, finite_steps = loss_scale.next_scale(scale, state.finite_steps, all_finite)
        state = state.replace(loss_scale=scale, finite_steps=finite_steps)
    state = state.replace(step=state.step + 1)
    return state, metrics


def _next_ema(gan: GAN, state: GANState) -> dict:
    """The EMA after the generator update of ``state.step``."""
    train = gan.config.train
    return ema.update_ema(
        state.ema,
        state.g_params,
        state.g_state,
        state.step,
        decay=train.ema.decay,
        start=train.ema.start,
    )


def _next_ada(gan: GAN, state: GANState, sign: jax.Array) -> dict:
    """ADA's state after a GAN step whose real logits had mean sign ``sign``."""
    return ada.update_ada(state.ada, sign, gan.config.train, gan.config.data.batch_size)


def make_train_step(
    gan: GAN, *, adversarial: bool = True, r1: bool = False, donate: bool = True, **jit_kwargs
) -> Callable[[GANState, Batch], tuple[GANState, Metrics]]:
    """``train_step`` bound to ``gan``, jitted with the state donated."""

    def step(state: GANState, batch: Batch) -> tuple[GANState, Metrics]:
        return train_step(gan, state, batch, adversarial=adversarial, r1=r1)

    return jax.jit(step, donate_argnums=(0,) if donate else (), **jit_kwargs)
