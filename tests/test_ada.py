"""Adaptive discriminator augmentation: the probability's controller and the augmentations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config import apply_overrides
from colorjax.gan import ada, augment
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step

pytestmark = pytest.mark.usefixtures("fast_compilation")


@pytest.fixture
def ada_train(tiny_config):
    overrides = ["train.ada.target=0.6", "train.ada.interval=2", "train.ada.images=80"]
    return apply_overrides(tiny_config, overrides).train


def _run_controller(train, logits, steps_, p=0.0):
    state = {**ada.init_ada(train), "p": jnp.asarray(p, jnp.float32)}
    history = []
    for _ in range(steps_):
        state = ada.update_ada(state, ada.real_sign(train.gan_loss, logits), train, 4)
        history.append(float(state["p"]))
    return history


def test_p_rises_when_real_logits_are_all_positive(ada_train):
    speed = 4 * ada_train.ada.interval / ada_train.ada.images  # batch 4: 0.1 per adjustment
    history = _run_controller(ada_train, jnp.full((4, 3, 3, 1), 2.5), 6)
    np.testing.assert_allclose(history, [0.0, speed, speed, 2 * speed, 2 * speed, 3 * speed])


def test_p_falls_when_real_logits_are_mixed(ada_train):
    mixed = jnp.asarray([-1.0, 1.0, 2.0, -3.0]).reshape(4, 1, 1, 1)  # r_t = 0 < target
    history = _run_controller(ada_train, mixed, 4, p=0.5)
    np.testing.assert_allclose(history, [0.5, 0.4, 0.4, 0.3], rtol=1e-6)
    assert _run_controller(ada_train, mixed, 4)[-1] == 0.0  # never below 0


def test_p_stays_below_one(ada_train):
    history = _run_controller(ada_train, jnp.ones((2, 2)), 30, p=0.9)
    assert history[-1] == ada.MAX_P and ada.MAX_P < 1.0


def test_augmentations_apply_per_image_with_probability():
    x = jax.random.uniform(jax.random.PRNGKey(0), (64, 8, 8, 3))
    key = jax.random.PRNGKey(1)
    np.testing.assert_array_equal(ada.augment_images(x, key, jnp.float32(0.0)), x)
    flipped = augment.augment_randomly(x, key, jnp.float32(0.5), ("flip",))
    same = np.all(np.asarray(flipped) == np.asarray(x), axis=(1, 2, 3))
    mirrored = np.all(np.asarray(flipped) == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and 0 < mirrored.sum() < 32  # p / 2 of the images


def test_ada_in_a_step_logs_p_and_refuses_diffaug(tiny_config):
    config = apply_overrides(tiny_config, ["train.ada.target=0.6", "train.ada.interval=1"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    new, metrics = make_train_step(gan, donate=False)(state, {"rgb": rgb})
    assert float(metrics["ada_p"]) == 0.0 and -1 <= float(metrics["d_sign_real"]) <= 1
    step_size = config.data.batch_size / config.train.ada.images
    assert float(new.ada["p"]) == pytest.approx(step_size if metrics["d_sign_real"] > 0.6 else 0)
    with pytest.raises(ValueError, match=r"train\.diffaug"):
        build_gan(apply_overrides(config, ["train.diffaug=translation"]))
