import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.gan import augment


def test_policy_parsing():
    assert augment.parse_policy("") == ()
    assert augment.parse_policy("translation, cutout") == ("translation", "cutout")
    with pytest.raises(ValueError, match=r"train\.diffaug"):
        augment.parse_policy("color")


def test_same_key_augments_real_and_fake_identically():
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 16, 16, 3))
    key = jax.random.PRNGKey(7)
    policy = ("translation", "cutout")
    a, b = augment.augment(x, key, policy), augment.augment(x, key, policy)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(x))


def test_translation_shifts_with_zero_fill_and_cutout_zeroes_a_block():
    x = jnp.ones((8, 16, 16, 3))
    shifted = np.asarray(augment.translate(x, jax.random.PRNGKey(1)))
    assert shifted.shape == x.shape and set(np.unique(shifted)) <= {0.0, 1.0}
    cut = np.asarray(augment.cutout(x, jax.random.PRNGKey(2)))
    zero_fraction = (cut == 0).mean(axis=(1, 2, 3))
    assert np.all(zero_fraction > 0) and np.all(zero_fraction <= 0.25 + 1e-6)


def test_augmentation_is_differentiable():
    x = jnp.ones((2, 8, 8, 3))
    grad = jax.grad(
        lambda v: augment.augment(v, jax.random.PRNGKey(3), ("translation", "cutout")).sum()
    )(x)
    assert np.asarray(grad).sum() > 0
