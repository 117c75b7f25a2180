import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.gan import losses
from colorjax.heads.chroma import l1_loss

REAL = jnp.array([[2.0, -1.0], [0.5, 3.0]])
FAKE = jnp.array([[-2.0, 1.0], [-0.5, 0.2]])


def _bce(logits, target):
    p = 1 / (1 + np.exp(-np.asarray(logits)))
    return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))


def test_vanilla_matches_binary_cross_entropy():
    real, fake = losses.discriminator_loss("vanilla", REAL, FAKE)
    assert float(real) == pytest.approx(_bce(REAL, 1.0), rel=1e-5)
    assert float(fake) == pytest.approx(_bce(FAKE, 0.0), rel=1e-5)
    assert float(losses.generator_adversarial_loss("vanilla", FAKE)) == pytest.approx(
        _bce(FAKE, 1.0), rel=1e-5
    )


def test_lsgan_and_hinge():
    real, fake = losses.discriminator_loss("lsgan", REAL, FAKE)
    assert float(real) == pytest.approx(float(np.mean((np.asarray(REAL) - 1) ** 2)), rel=1e-6)
    assert float(fake) == pytest.approx(float(np.mean(np.asarray(FAKE) ** 2)), rel=1e-6)
    real, fake = losses.discriminator_loss("hinge", REAL, FAKE)
    assert float(real) == pytest.approx(float(np.mean(np.maximum(0, 1 - np.asarray(REAL)))))
    assert float(fake) == pytest.approx(float(np.mean(np.maximum(0, 1 + np.asarray(FAKE)))))
    assert float(losses.generator_adversarial_loss("hinge", FAKE)) == pytest.approx(
        -float(np.mean(np.asarray(FAKE)))
    )
    assert float(losses.discriminator_total("hinge", real, fake)) == pytest.approx(
        float(real + fake)
    )
    assert float(losses.discriminator_total("vanilla", real, fake)) == pytest.approx(
        0.5 * float(real + fake)
    )


@pytest.mark.parametrize("kind", losses.GAN_LOSSES)
def test_label_smoothing_changes_real_target_only(kind):
    real_1, fake_1 = losses.discriminator_loss(kind, REAL, FAKE, real_label=1.0)
    real_9, fake_9 = losses.discriminator_loss(kind, REAL, FAKE, real_label=0.9)
    assert float(real_1) != pytest.approx(float(real_9))
    assert float(fake_1) == pytest.approx(float(fake_9))


def test_smoothed_vanilla_target_is_the_label():
    real, _ = losses.discriminator_loss("vanilla", REAL, FAKE, real_label=0.9)
    assert float(real) == pytest.approx(_bce(REAL, 0.9), rel=1e-5)


def test_accuracy_and_l1():
    acc_real, acc_fake = losses.discriminator_accuracy("vanilla", REAL, FAKE)
    assert float(acc_real) == pytest.approx(0.75) and float(acc_fake) == pytest.approx(0.5)
    assert float(l1_loss(jnp.ones(4), jnp.zeros(4))) == pytest.approx(1.0)


def test_unknown_loss():
    with pytest.raises(ValueError, match="vanilla, lsgan, hinge"):
        losses.discriminator_loss("wgan", REAL, FAKE)
