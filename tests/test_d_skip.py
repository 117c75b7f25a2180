"""Adaptive balance: a discriminator that wins on the fakes skips its update, and it is logged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config import apply_overrides
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _unchanged(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


def test_a_winning_discriminator_is_left_alone_and_the_skips_are_counted(tiny_config):
    config = apply_overrides(tiny_config, ["train.d_skip_above=0.7", "train.pretrain_steps=0"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    step = make_train_step(gan, donate=False)
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)

    updated, metrics = step(state, {"rgb": rgb})  # nothing measured yet: D updates
    assert not _unchanged(updated.d_params, state.d_params)
    assert float(metrics["d_skipped"]) == 0.0 and float(metrics["d_skip_fraction"]) == 0.0
    assert float(updated.balance["acc_fake"]) == pytest.approx(float(metrics["d_acc_fake"]))

    winning = updated.replace(balance={**updated.balance, "acc_fake": jnp.float32(0.9)})
    skipped, metrics = step(winning, {"rgb": rgb})
    for part in ("d_params", "d_state", "d_opt"):
        assert _unchanged(getattr(skipped, part), getattr(winning, part)), part
    assert not _unchanged(skipped.g_params, winning.g_params)
    assert float(metrics["d_skipped"]) == 1.0 and int(skipped.balance["skipped"]) == 1
    assert float(metrics["d_skip_fraction"]) == pytest.approx(0.5)  # 1 of 2 GAN steps
    assert np.isfinite(float(metrics["d_loss"]))  # still measured


def test_balance_off_keeps_no_state_and_the_threshold_is_checked(tiny_config):
    gan = build_gan(tiny_config)
    assert init_state(gan, jax.random.PRNGKey(0), 32).balance == {}
    with pytest.raises(ValueError, match=r"train\.d_skip_above"):
        build_gan(apply_overrides(tiny_config, ["train.d_skip_above=1.5"]))


def test_lr_d_is_the_rate_of_the_discriminator_updates_made(tiny_config):
    """With a decaying schedule, ``lr_d`` is the rate of the last discriminator update that
    was applied: a skipped update does not advance it, two updates per step advance it twice."""
    decaying = ["train.schedule=linear_decay", "train.decay_start=0", "train.pretrain_steps=0"]
    config = apply_overrides(tiny_config, [*decaying, "train.d_skip_above=0.7"])
    gan = build_gan(config)
    step = make_train_step(gan, donate=False)
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    state, metrics = step(init_state(gan, jax.random.PRNGKey(0), 32), {"rgb": rgb})
    assert float(metrics["lr_d"]) == pytest.approx(float(gan.schedule_d(0)))
    winning = state.replace(balance={**state.balance, "acc_fake": jnp.float32(0.9)})
    _, metrics = step(winning, {"rgb": rgb})  # skipped: still one update made
    assert float(metrics["lr_d"]) == pytest.approx(float(gan.schedule_d(0)))

    twice = build_gan(apply_overrides(tiny_config, [*decaying, "train.d_steps=2"]))
    state = init_state(twice, jax.random.PRNGKey(0), 32)
    _, metrics = make_train_step(twice, donate=False)(state, {"rgb": rgb})
    assert float(metrics["lr_d"]) == pytest.approx(float(twice.schedule_d(1)))
    assert float(twice.schedule_d(1)) < float(twice.schedule_d(0))
