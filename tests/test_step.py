import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import color
from colorjax.config import apply_overrides
from colorjax.gan import loss_scale
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.heads.generate import make_generate
from colorjax.models import conv
from colorjax.models.apply import apply_network

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _batch(size=32, n=4, seed=0):
    rgb = jax.random.randint(jax.random.PRNGKey(seed), (n, size, size, 3), 0, 256)
    return {"rgb": rgb.astype(jnp.uint8)}


def _gray(size=32, n=4, seed=0):
    return color.rgb8_to_network(_batch(size, n, seed)["rgb"])[0]


@pytest.fixture(scope="module")
def gan_and_state(tiny_config):
    gan = build_gan(tiny_config)
    return gan, init_state(gan, jax.random.PRNGKey(0), 32)


def _copy(state):
    return jax.tree.map(jnp.array, state)


def test_gan_step_updates_both_networks_and_reports(gan_and_state):
    gan, state = gan_and_state
    step = make_train_step(gan, adversarial=True, donate=False)
    new, metrics = step(_copy(state), _batch())
    assert int(new.step) == 1
    for name in (
        "d_real",
        "d_fake",
        "g_adv",
        "g_l1",
        "d_acc_real",
        "d_acc_fake",
        "g_grad_norm",
        "d_grad_norm",
        "lr_g",
        "lr_d",
    ):
        assert np.isfinite(float(metrics[name])), name
    changed = lambda a, b: any(  # noqa: E731
        not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    assert changed(new.g_params, state.g_params) and changed(new.d_params, state.d_params)


def test_pretrain_step_leaves_discriminator_idle(gan_and_state):
    gan, state = gan_and_state
    step = make_train_step(gan, adversarial=False, donate=False)
    new, metrics = step(_copy(state), _batch())
    assert "g_adv" not in metrics and "d_real" not in metrics
    for a, b in zip(jax.tree.leaves(new.d_params), jax.tree.leaves(state.d_params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pulled_back_gradient_equals_direct_gradient(gan_and_state):
    """Reusing the forward pass (jax.vjp) gives the gradient of L1 w.r.t. the parameters."""
    gan, state = gan_and_state
    gray, target = color.rgb8_to_network(_batch()["rgb"])
    grads_direct = jax.grad(
        lambda p: jnp.mean(
            jnp.abs(
                apply_network(
                    gan.generator,
                    p,
                    state.g_state,
                    gray,
                    train=True,
                    rng=jax.random.split(jax.random.fold_in(state.rng, 0), 3)[0],
                )[0]
                - target
            )
        )
    )(state.g_params)
    fake, pullback, _ = jax.vjp(
        lambda p: apply_network(
            gan.generator,
            p,
            state.g_state,
            gray,
            train=True,
            rng=jax.random.split(jax.random.fold_in(state.rng, 0), 3)[0],
        ),
        state.g_params,
        has_aux=True,
    )
    (grads_vjp,) = pullback(jax.grad(lambda f: jnp.mean(jnp.abs(f - target)))(fake))
    for a, b in zip(jax.tree.leaves(grads_direct), jax.tree.leaves(grads_vjp), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", ["lsgan", "hinge"])
def test_other_losses_and_discriminator_steps_run(tiny_config, loss):
    config = apply_overrides(
        tiny_config,
        [f"train.gan_loss={loss}", "train.d_steps=2", "train.diffaug=translation,cutout"],
    )
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(1), 32)
    new, metrics = make_train_step(gan)(state, _batch())
    assert np.isfinite(float(metrics["g_loss"])) and np.isfinite(float(metrics["d_loss"]))
    assert int(new.step) == 1


def test_steps_are_deterministic(gan_and_state):
    gan, state = gan_and_state
    step = make_train_step(gan, donate=False)
    a, _ = step(_copy(state), _batch())
    b, _ = step(_copy(state), _batch())
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_generate_is_deterministic_and_in_range(gan_and_state):
    gan, state = gan_and_state
    generate = make_generate(gan.generator, gan.head)
    gray = _gray(size=40)[:1, :37, :29]
    ab = np.asarray(generate(state.g_params, state.g_state, gray))
    assert ab.shape == (1, 37, 29, 2) and np.all(np.abs(ab) <= 1)
    np.testing.assert_array_equal(ab, generate(state.g_params, state.g_state, gray))


def test_bad_choices_are_rejected_by_the_config(tiny_config):
    with pytest.raises(ValueError, match=r"train\.gan_loss: unknown value 'wgan'.*hinge"):
        apply_overrides(tiny_config, ["train.gan_loss=wgan"])


def _run_steps(config, count=3):
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    step = make_train_step(gan)
    history = []
    for i in range(count):
        state, metrics = step(state, _batch(seed=i))
        history.append({k: float(v) for k, v in metrics.items()})
    return state, history


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_is_finite_and_close_to_float32(tiny_config, dtype):
    _assert_finite_and_close_to_float32(tiny_config, dtype)


def test_bfloat16_matrix_products_train_close_to_float32(tiny_config, monkeypatch):
    """The bfloat16 matrix-product passes (which the tiny widths would not choose) in a
    whole GAN step."""
    monkeypatch.setattr(conv, "BF16_TAPS_MIN_CHANNEL_PRODUCT", 0)
    monkeypatch.setattr(conv, "BF16_TAPS_MIN_PIXELS", dict.fromkeys(conv.PASSES, 0))
    monkeypatch.setattr(conv, "BF16_TAPS_MIN_COUT", dict.fromkeys(conv.PASSES, 0))
    _assert_finite_and_close_to_float32(tiny_config, "bfloat16")


def _assert_finite_and_close_to_float32(tiny_config, dtype):
    """Three steps in ``dtype`` track float32's losses and outputs; parameters stay float32."""
    reference, ref_history = _run_steps(tiny_config)
    half, history = _run_steps(apply_overrides(tiny_config, [f"model.dtype={dtype}"]))
    for metrics, ref in zip(history, ref_history, strict=True):
        assert np.isfinite(metrics["g_loss"]) and np.isfinite(metrics["d_loss"])
        assert metrics["g_l1"] == pytest.approx(ref["g_l1"], rel=0.05)
        assert metrics["d_loss"] == pytest.approx(ref["d_loss"], rel=0.05)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(half.g_params))
    gray = _gray(seed=9)
    reference_ab = _generate(tiny_config)(reference.g_params, reference.g_state, gray)
    half_config = apply_overrides(tiny_config, [f"model.dtype={dtype}"])
    half_ab = _generate(half_config)(half.g_params, half.g_state, gray)
    assert float(jnp.max(jnp.abs(half_ab - reference_ab))) < 0.05
    expected_scale = tiny_config.train.loss_scale if dtype == "float16" else 1.0
    assert history[0]["loss_scale"] == expected_scale


def _generate(config):
    gan = build_gan(config)
    return make_generate(gan.generator, gan.head)


def test_float16_overflow_skips_the_update_and_lowers_the_scale(tiny_config):
    config = apply_overrides(tiny_config, ["model.dtype=float16", "train.loss_scale=1e30"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    new, _ = make_train_step(gan, donate=False)(state, _batch())
    assert float(new.loss_scale) < 1e30
    for a, b in zip(jax.tree.leaves(new.g_params), jax.tree.leaves(state.g_params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_float16_scale_doubles_after_consecutive_finite_steps_only(tiny_config, monkeypatch):
    """The scale grows after ``GROWTH_STEPS`` finite steps in a row, counted from its last
    change, whatever the global step (an overflow restarts the count)."""
    monkeypatch.setattr(loss_scale, "GROWTH_STEPS", 3)
    config = apply_overrides(tiny_config, ["model.dtype=float16", "train.loss_scale=256"])
    gan = build_gan(config)
    step = make_train_step(gan, donate=False)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    # global step 2 with 0 finite steps since the last change: no growth at steps 3 or 6
    state = state.replace(step=jnp.int32(2))
    scales = []
    for i in range(4):
        state, _ = step(state, _batch(seed=i))
        scales.append((float(state.loss_scale), int(state.finite_steps)))
    assert scales == [(256.0, 1), (256.0, 2), (512.0, 0), (512.0, 1)]
