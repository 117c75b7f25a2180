"""The EfficientNet-encoder U-Net: shapes, heads, the encoder's own rate and frozen warm-up,
frozen BatchNorm statistics, and its config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from colorjax.config import Config, ConfigError, apply_overrides
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.heads import colorbins, generator_from_config
from colorjax.models.encoder_unet import ENCODER_NAME, gray_rgb255

pytestmark = pytest.mark.usefixtures("fast_compilation")

ENCODER = [
    "model.encoder=efficientnet_lite0",
    "model.depth=5",
    "model.features=8",
    "model.norm=group",
    "model.num_groups=4",
    "model.pretrained=false",
    "model.conv_impl=native",
]


def _config(*extra: str) -> Config:
    return apply_overrides(Config(), [*TINY, *ENCODER, *extra])


def _batch(size=32, n=4):
    rgb = jax.random.randint(jax.random.PRNGKey(0), (n, size, size, 3), 0, 256)
    return {"rgb": rgb.astype(jnp.uint8)}


@pytest.mark.parametrize(
    ("head", "height", "width"), [("regression", 37, 50), ("classification", 33, 70)]
)
def test_any_size_gives_the_heads_output(head, height, width):
    model = _config(f"model.head={head}").model
    generator = generator_from_config(model)
    gray = jnp.zeros((2, height, width, 1))
    variables = generator.init(jax.random.PRNGKey(0), gray, train=False)
    out = generator.apply(variables, gray, train=False)
    if head == "regression":
        assert out.shape == (2, height, width, 2)
        assert float(jnp.abs(out).max()) <= 1.0
    else:
        padded = [-(-side // 32) * 32 for side in (height, width)]
        assert out.shape == (2, padded[0] // 2, padded[1] // 2, len(colorbins.bin_centers()))


def test_the_encoder_sees_the_gray_image_of_the_lightness():
    l_network = jnp.array([-1.0, 0.0, 1.0]).reshape(1, 1, 3, 1)
    gray = gray_rgb255(l_network)
    assert gray.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(gray[0, 0, 0], 0.0, atol=0.5)  # L=0: black
    np.testing.assert_allclose(gray[0, 0, 2], 255.0, atol=0.5)  # L=100: white
    np.testing.assert_allclose(gray[0, 0, 1], 119.0, atol=1.5)  # L=50: sRGB 119
    assert float(gray[0, 0, 1].std()) < 1e-3  # the same value in R, G and B


def test_the_encoder_needs_depth_five():
    config = apply_overrides(Config(), [*ENCODER, "model.depth=6"])
    with pytest.raises(ConfigError, match=r"model\.depth must be 5"):
        generator_from_config(config.model)


def _moved(before, after) -> bool:
    pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    return any(not np.array_equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("knob", ["train.freeze_encoder_steps=5", "train.encoder_lr_mult=0"])
def test_a_frozen_encoder_stays_while_the_decoder_moves(knob):
    gan = build_gan(_config(knob))
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    new, _ = make_train_step(gan, adversarial=False, donate=False)(state, _batch())
    assert not _moved(state.g_params[ENCODER_NAME], new.g_params[ENCODER_NAME])
    decoder = {k: v for k, v in state.g_params.items() if k != ENCODER_NAME}
    assert _moved(decoder, {k: new.g_params[k] for k in decoder})


def test_the_encoder_trains_after_its_warm_up():
    gan = build_gan(_config("train.freeze_encoder_steps=1"))
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    step = make_train_step(gan, adversarial=False, donate=False)
    first, _ = step(state, _batch())
    second, _ = step(first, _batch())
    assert not _moved(state.g_params[ENCODER_NAME], first.g_params[ENCODER_NAME])
    assert _moved(first.g_params[ENCODER_NAME], second.g_params[ENCODER_NAME])


@pytest.mark.parametrize(("encoder_bn", "moves"), [("frozen", False), ("train", True)])
def test_encoder_batchnorm_statistics_frozen_or_trained(encoder_bn, moves):
    gan = build_gan(_config(f"model.encoder_bn={encoder_bn}"))
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    new, _ = make_train_step(gan, adversarial=False, donate=False)(state, _batch())
    stats = state.g_state["batch_stats"][ENCODER_NAME]
    assert _moved(stats, new.g_state["batch_stats"][ENCODER_NAME]) == moves
