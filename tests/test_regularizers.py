"""The lazy R1 penalty: its value against a hand computation, its schedule, its place in a step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config import apply_overrides
from colorjax.gan import regularizers
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step

pytestmark = pytest.mark.usefixtures("fast_compilation")


def test_r1_penalty_of_a_quadratic_judge_matches_the_hand_computation():
    # judge(x) = sum over pixels of w * x^2 per image, so grad = 2 w x and the penalty is
    # the batch mean of sum((2 w x)^2).
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2, 2, 2)), jnp.float32)
    w = jnp.asarray([0.5, -2.0], jnp.float32)

    def judge(images):
        return jnp.sum(w * images**2, axis=(1, 2, 3)), "aux"

    penalty, logits, aux = regularizers.r1_penalty(judge, x)
    xs, ws = np.asarray(x, np.float64), np.asarray(w, np.float64)
    expected = np.mean(np.sum((2 * ws * xs) ** 2, axis=(1, 2, 3)))
    assert float(penalty) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(logits, np.sum(ws * xs**2, axis=(1, 2, 3)), rtol=1e-5)
    assert aux == "aux"


def test_patch_logits_are_summed_before_the_gradient():
    # Two patch logits per image, linear in x: grad of their sum is the sum of their weights.
    x = jnp.ones((2, 3))
    a, b = jnp.asarray([1.0, 0.0, 2.0]), jnp.asarray([0.0, 3.0, -1.0])

    def judge(images):
        return jnp.stack([images @ a, images @ b], axis=-1), None

    penalty, _, _ = regularizers.r1_penalty(judge, x)
    assert float(penalty) == pytest.approx(float(jnp.sum((a + b) ** 2)))


def test_lazy_schedule_and_weight(tiny_config):
    config = apply_overrides(tiny_config, ["train.r1.weight=10", "train.r1.every=4"]).train
    assert [s for s in range(10) if regularizers.r1_due(config, s)] == [0, 4, 8]
    assert regularizers.lazy_r1_weight(config) == pytest.approx(10 / 2 * 4)
    assert not any(regularizers.r1_due(tiny_config.train, s) for s in range(10))
    with pytest.raises(ValueError, match=r"train\.r1\.every"):
        build_gan(apply_overrides(tiny_config, ["train.r1.every=0"]))


def test_r1_step_penalises_only_the_discriminator_update(tiny_config):
    config = apply_overrides(tiny_config, ["train.r1.weight=100", "train.r1.every=2"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    plain, plain_metrics = make_train_step(gan, donate=False)(state, {"rgb": rgb})
    with_r1, r1_metrics = make_train_step(gan, r1=True, donate=False)(state, {"rgb": rgb})
    assert "d_r1" not in plain_metrics and float(r1_metrics["d_r1"]) > 0
    assert float(r1_metrics["d_loss"]) == pytest.approx(float(plain_metrics["d_loss"]), rel=1e-5)
    differs = [
        not np.allclose(a, b)
        for a, b in zip(
            jax.tree.leaves(plain.d_params), jax.tree.leaves(with_r1.d_params), strict=True
        )
    ]
    assert any(differs)
