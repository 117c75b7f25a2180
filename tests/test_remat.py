"""model.remat: the same parameters, losses and gradients whether blocks or whole networks are
rematerialised or not, so switching it on a resumed run changes no number."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config import apply_overrides
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.models.apply import apply_network

pytestmark = pytest.mark.usefixtures("fast_compilation")

MODES = ("none", "blocks", "full")


def _batch():
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256)
    return {"rgb": rgb.astype(jnp.uint8)}


def _gan_and_state(tiny_config, mode, extra=()):
    config = apply_overrides(tiny_config, [f"model.remat={mode}", *extra])
    gan = build_gan(config)
    return gan, init_state(gan, jax.random.PRNGKey(0), 32)


def _assert_trees_close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra", [(), ("model.norm=group", "disc.norm=spectral")])
def test_gan_step_has_the_same_losses_and_updates_in_every_mode(tiny_config, extra):
    """One GAN step (dropout on in both networks) from the same state and batch."""
    extra = (*extra, "disc.dropout=0.2")
    results = {}
    for mode in MODES:
        gan, state = _gan_and_state(tiny_config, mode, extra)
        results[mode] = make_train_step(gan, donate=False)(state, _batch())
    reference_state, reference_metrics = results["none"]
    for mode in ("blocks", "full"):
        state, metrics = results[mode]
        _assert_trees_close(metrics, reference_metrics)
        _assert_trees_close(state, reference_state)


def test_generator_gradients_are_the_same_in_every_mode(tiny_config):
    gray = jax.random.uniform(jax.random.PRNGKey(2), (4, 32, 32, 1), minval=-1, maxval=1)
    grads = {}
    for mode in MODES:
        gan, state = _gan_and_state(tiny_config, mode)

        def loss(params, gan=gan, state=state):
            out, _ = apply_network(
                gan.generator, params, state.g_state, gray, train=True, rng=jax.random.PRNGKey(3)
            )
            return jnp.mean(out**2)

        grads[mode] = jax.jit(jax.value_and_grad(loss))(state.g_params)
    for mode in ("blocks", "full"):
        _assert_trees_close(grads[mode], grads["none"])
