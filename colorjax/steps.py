"""The GAN train state (one pytree) and the jitted train and generation steps.

One step: generator forward (kept as a VJP), ``train.d_steps`` discriminator updates on that
fake batch, then the generator update against the updated discriminator, its gradient pulled
back through the saved forward pass instead of a second forward. Random keys come from
``fold_in(state.rng, state.step)``, so a resumed run continues on the same random stream.

The remedies of a GAN in trouble are state or step variants, each off by default: the
generator's EMA (ema.py), adaptive augmentation (ada.py), the R1 penalty on the steps that
``regularizers.r1_due`` picks (a separate jitted variant, ``r1=True``) and skipping the
discriminator's update while it wins (balance.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from colorjax import ada, augment, balance, color, ema, heads, losses, optim, regularizers
from colorjax.config import Config
from colorjax.models import PatchDiscriminator
from colorjax.models.unet import generator_from_config

Batch = dict[str, jax.Array]  # {"rgb": uint8 [B, H, W, 3]}, as the pipeline yields it
Metrics = dict[str, jax.Array]
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
    ema: dict  # the generator's EMA weights and norm statistics (ema.py); {} when off
    ada: dict  # ADA's augmentation probability and sign accumulator (ada.py); {} when off
    balance: dict  # the discriminator's last accuracy on fakes, skipped updates; {} when off


@dataclasses.dataclass(frozen=True)
class GAN:
    """The networks, optimizers and settings a step closes over (no arrays)."""

    config: Config
    generator: nn.Module
    head: heads.ChromaHead
    discriminator: nn.Module
    schedule_g: optax.Schedule
    schedule_d: optax.Schedule
    tx_g: optax.GradientTransformation
    tx_d: optax.GradientTransformation
    diffaug: tuple[str, ...]


def build_gan(config: Config, class_weights: np.ndarray | None = None) -> GAN:
    """Networks and optimizers described by ``config``; bad choices raise clear errors now.

    ``class_weights`` [Q]: the classification head's rebalancing weights (``colorjax.binprior``);
    None weighs every colour bin alike.
    """
    losses.check_gan_loss(config.train.gan_loss)
    for module in (ema, regularizers, ada, balance):
        module.check_config(config.train)
    schedule_g = optim.generator_schedule(config.train)
    schedule_d = optim.discriminator_schedule(config.train)
    return GAN(
        config=config,
        generator=generator_from_config(config.model),
        head=make_head(config, class_weights),
        discriminator=PatchDiscriminator(
            **dataclasses.asdict(config.disc),
            dtype=config.model.dtype,
            conv_impl=config.model.conv_impl,
        ),
        schedule_g=schedule_g,
        schedule_d=schedule_d,
        tx_g=optim.make_optimizer(schedule_g, config.train),
        tx_d=optim.make_optimizer(schedule_d, config.train),
        diffaug=augment.parse_policy(config.train.diffaug),
    )


def make_head(config: Config, class_weights: np.ndarray | None = None) -> heads.ChromaHead:
    """The decoding and loss of ``config.model.head``."""
    return heads.ChromaHead(
        config.model.head,
        depth=config.model.depth,
        temperature=config.model.temperature,
        class_weights=class_weights,
    )


def _split_variables(variables: dict) -> tuple[Any, dict]:
    params = variables["params"]
    return params, {k: v for k, v in variables.items() if k != "params"}


def init_state(gan: GAN, rng: jax.Array, image_size: int) -> GANState:
    """A fresh state: parameters from ``rng``, optimizer states at zero."""
    key_g, key_d, key_run = jax.random.split(rng, 3)
    gray = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    pair = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    g_params, g_state = _split_variables(gan.generator.init(key_g, gray, train=False))
    d_params, d_state = _split_variables(gan.discriminator.init(key_d, pair, train=False))
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
        ema=ema.init_ema(train.ema_decay, g_params, g_state),
        ada=ada.init_ada(train),
        balance=balance.init_balance(train),
    )


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
    grads, finite = _unscale(scaled, state.loss_scale)
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
    """The discriminator's part of a GAN step, skipped while it wins (balance.py).

    A skipped update is computed and discarded rather than branched around: on CPU the
    update inside a ``lax.cond`` ran 5x slower (demo preset: 467 against 85 ms a step)."""
    train = gan.config.train
    updated, metrics, finite = _discriminator_updates(gan, state, real, fake, key, r1)
    if not state.balance:
        return updated, metrics, finite
    skipped = balance.skip_discriminator(state.balance, train.d_skip_above)
    kept = {k: _where(skipped, getattr(state, k), getattr(updated, k)) for k in DISCRIMINATOR_PARTS}
    counts = balance.update_balance(state.balance, skipped, metrics["d_acc_fake"])
    gan_steps = state.step - train.pretrain_steps + 1
    metrics = {**metrics, **balance.skip_metrics(counts, skipped, gan_steps)}
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


def _unscale(grads: Any, scale: jax.Array) -> tuple[Any, jax.Array]:
    """Gradients of a loss multiplied by ``scale``, back in float32; and whether all are finite."""
    grads = jax.tree.map(lambda g: g.astype(jnp.float32) / scale, grads)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    return grads, finite


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


def _next_loss_scale(gan: GAN, scale: jax.Array, finite: jax.Array, step: jax.Array) -> jax.Array:
    """Dynamic loss scaling for float16: halve on overflow, double every 2000 clean steps."""
    if gan.config.model.dtype != "float16":
        return scale
    grown = jnp.where((step + 1) % 2000 == 0, scale * 2.0, scale)
    return jnp.where(finite, grown, jnp.maximum(scale / 2.0, 1.0))


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
    grads, finite = _unscale(scaled, scale)
    g_params, g_opt = _optimizer_step(gan, gan.tx_g, state.g_params, state.g_opt, grads, finite)
    state = state.replace(g_params=g_params, g_opt=g_opt)
    state = state.replace(ema=_next_ema(gan, state))
    all_finite = all_finite & finite
    d_updates = jnp.maximum(state.step - gan.config.train.pretrain_steps, 0)
    metrics = {
        **metrics,
        **g_metrics,
        "g_loss": g_loss,
        "g_grad_norm": optax.global_norm(grads),
        "lr_g": gan.schedule_g(state.step),
        "lr_d": gan.schedule_d(d_updates),
        "g_param_norm": optax.global_norm(state.g_params),
        "loss_scale": scale,
    }
    if adversarial and state.ada:
        metrics["ada_p"] = state.ada["p"]
        state = state.replace(ada=_next_ada(gan, state, metrics["d_sign_real"]))
    state = state.replace(
        step=state.step + 1, loss_scale=_next_loss_scale(gan, scale, all_finite, state.step)
    )
    return state, metrics


def _next_ema(gan: GAN, state: GANState) -> dict:
    """The EMA after the generator update of ``state.step``."""
    train = gan.config.train
    return ema.update_ema(
        state.ema,
        state.g_params,
        state.g_state,
        state.step,
        decay=train.ema_decay,
        start=train.ema_start,
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


def make_generate(
    generator: nn.Module, head: heads.ChromaHead
) -> Callable[[Any, dict, jax.Array], jax.Array]:
    """Jitted eval-mode generator: (params, state, L [B,H,W,1]) -> ab [B,H,W,2] in float32,
    decoded by ``head``."""

    @jax.jit
    def generate(params: Any, state: dict, gray: jax.Array) -> jax.Array:
        output, _ = apply_network(generator, params, state, gray, train=False)
        return head.decode(output, *gray.shape[1:3])

    return generate
