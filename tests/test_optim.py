import jax
import jax.numpy as jnp
import optax
import pytest

from colorjax.config import Config, apply_overrides
from colorjax.gan import optim


def test_constant_schedule():
    schedule = optim.make_schedule(1e-3, "constant", 100)
    assert float(schedule(0)) == float(schedule(99)) == pytest.approx(1e-3)


def test_linear_decay_is_flat_then_falls_to_zero():
    schedule = optim.make_schedule(1.0, "linear_decay", 100, decay_start=0.5)
    assert float(schedule(0)) == pytest.approx(1.0)
    assert float(schedule(50)) == pytest.approx(1.0)
    assert float(schedule(75)) == pytest.approx(0.5)
    assert float(schedule(100)) == pytest.approx(0.0)


def test_warmup_cosine_rises_then_decays():
    schedule = optim.make_schedule(1.0, "warmup_cosine", 100, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert 0.0 < float(schedule(55)) < 1.0
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)


def test_unknown_schedule_names_option():
    with pytest.raises(ValueError, match=r"train\.schedule: unknown value 'cyclic'.*linear_decay"):
        apply_overrides(Config(), ["train.schedule=cyclic"])
    with pytest.raises(ValueError, match=r"cyclic.*linear_decay"):
        optim.make_schedule(1.0, "cyclic", 10)


def test_clipping_bounds_the_gradient_norm():
    train = apply_overrides(Config(), ["train.clip_norm=0.5"]).train
    sgd_like = optax.chain(optax.clip_by_global_norm(train.clip_norm))
    clipped, _ = sgd_like.update({"w": jnp.full(4, 10.0)}, sgd_like.init(None))
    assert float(optax.global_norm(clipped)) == pytest.approx(0.5, rel=1e-5)
    chain = optim.make_optimizer(optax.constant_schedule(1.0), train)
    assert isinstance(chain, optax.GradientTransformation)
    # Adam normalises the step size, so clipping shows in its moment estimates:
    params = {"w": jnp.zeros(4)}
    _, state_clipped = chain.update({"w": jnp.full(4, 10.0)}, chain.init(params), params)
    adam_state = jax.tree.leaves(state_clipped[1])
    first_moment = next(x for x in adam_state if getattr(x, "shape", ()) == (4,))
    assert float(jnp.max(jnp.abs(first_moment))) <= 0.5 * (1 - train.b1) + 1e-6


def test_unclipped_moments_follow_raw_gradient():
    train = apply_overrides(Config(), ["train.clip_norm=0"]).train
    chain = optim.make_optimizer(optax.constant_schedule(1.0), train)
    params = {"w": jnp.zeros(4)}
    _, state = chain.update({"w": jnp.full(4, 10.0)}, chain.init(params), params)
    first_moment = next(x for x in jax.tree.leaves(state) if getattr(x, "shape", ()) == (4,))
    assert float(first_moment[0]) == pytest.approx(10.0 * (1 - train.b1))
