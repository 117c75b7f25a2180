"""Generator, discriminator and norm factory: shapes, parameter counts, train/eval behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import PatchDiscriminator, UNetGenerator, layers, make_norm
from colorjax.models.norms import NORM_KINDS, fitting_group_count
from colorjax.models.patchgan import receptive_field
from colorjax.models.unet import reflect_pad_to_multiple

TINY_G = dict(depth=3, features=4, dropout_blocks=2)
TINY_D = dict(layers=1, features=4)
BATCH_SHAPE = (3, 37, 53, 1)  # odd sizes, padded to 40 x 56 inside the generator


pytestmark = pytest.mark.usefixtures("fast_compilation")


def random_images(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


def abstract_variables(model, shape: tuple[int, ...]) -> dict:
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def count_params(variables: dict) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))


class Compiled:
    """A model with initialised variables and jitted train/eval apply functions."""

    def __init__(self, model, init_shape: tuple[int, ...]):
        self.model = model
        self.variables = jax.jit(lambda key, x: model.init(key, x, train=False))(
            jax.random.key(0), jnp.zeros(init_shape)
        )
        self.train = jax.jit(
            lambda variables, x, key: model.apply(
                variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
            )
        )
        self.eval = jax.jit(lambda variables, x: model.apply(variables, x, train=False))


@pytest.fixture(scope="module")
def generators():
    """One compiled tiny generator per (norm, upsample), built on first use."""
    cache = {}

    def get(norm: str, upsample: str = "transpose") -> Compiled:
        if (norm, upsample) not in cache:
            model = UNetGenerator(**TINY_G, norm=norm, num_groups=3, upsample=upsample)
            cache[norm, upsample] = Compiled(model, (1, 8, 8, 1))
        return cache[norm, upsample]

    return get


@pytest.fixture(scope="module")
def spectral_disc() -> Compiled:
    model = PatchDiscriminator(**TINY_D, norm="batch", spectral=True, dropout=0.3)
    return Compiled(model, (1, 16, 16, 3))


# ---- parameter counts (abstract init, no compilation) ----


def test_unet_128_has_pix2pix_parameter_count():
    variables = abstract_variables(UNetGenerator(), (1, 128, 128, 1))
    assert count_params(variables) == 41_825_474


def test_70x70_patchgan_has_pix2pix_parameter_count():
    variables = abstract_variables(PatchDiscriminator(), (1, 70, 70, 3))
    assert count_params(variables) == 2_765_633
    assert receptive_field(3) == 70


def test_convs_have_bias_only_without_a_following_norm():
    with_norm = abstract_variables(UNetGenerator(**TINY_G, norm="batch"), (1, 8, 8, 1))["params"]
    without = abstract_variables(UNetGenerator(**TINY_G, norm="none"), (1, 8, 8, 1))["params"]
    biased = {name for name, block in with_norm.items() if "bias" in block["conv"]}
    assert biased == {"down_0", "down_2", "final"}  # outermost, innermost, output
    assert all("bias" in block["conv"] and "norm" not in block for block in without.values())


def test_parameters_are_float32_and_outputs_float32_in_bfloat16():
    model = UNetGenerator(**TINY_G, dtype="bfloat16")
    variables = abstract_variables(model, (1, 8, 8, 1))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype("float32")}
    out = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False), variables, jnp.zeros((2, 9, 11, 1))
    )
    assert out.shape == (2, 9, 11, 2) and out.dtype == jnp.float32


def test_every_convolution_goes_through_conv_module_in_compute_dtype(monkeypatch):
    calls = []

    def recording(function):
        def wrapper(x, kernel, *, impl, **kwargs):
            calls.append((impl, x.dtype, kernel.dtype))
            return function(x, kernel, impl="auto", **kwargs)

        return wrapper

    monkeypatch.setattr(layers, "conv2d", recording(layers.conv2d))
    monkeypatch.setattr(layers, "conv_transpose2d", recording(layers.conv_transpose2d))
    generator = UNetGenerator(**TINY_G, conv_impl="probe", dtype="bfloat16")
    abstract_variables(generator, (1, 8, 8, 1))
    abstract_variables(PatchDiscriminator(**TINY_D, conv_impl="probe"), (1, 16, 16, 3))
    bf16, f32 = jnp.dtype("bfloat16"), jnp.dtype("float32")
    generator_convs = 2 * TINY_G["depth"]  # encoder, decoder and output
    # the input in the compute dtype; the kernel as the float32 parameter, which the
    # convolution casts (and whose gradient it returns in float32)
    assert calls == [("probe", bf16, f32)] * generator_convs + [("probe", f32, f32)] * 3


# ---- generator behaviour ----


def test_generator_any_size_and_batch_one_in_tanh_range(generators):
    compiled = generators("batch")
    for shape in [(1, 37, 53, 1), (1, 1, 1, 1), (1, 3, 5, 1)]:
        out = compiled.eval(compiled.variables, random_images(shape))
        assert out.shape == (*shape[:3], 2)
        assert bool(jnp.all(jnp.abs(out) <= 1.0)) and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("mode", ["transpose", "resize_conv", "subpixel"])
def test_upsample_modes_run_on_odd_sizes(generators, mode):
    compiled = generators("batch", mode)
    out, _ = compiled.train(compiled.variables, random_images((1, 37, 53, 1)), jax.random.key(1))
    assert out.shape == (1, 37, 53, 2)
    assert float(jnp.std(out)) > 0


def test_decoder_concatenates_skip_before_upsampled_features(generators):
    """With the output conv blind to its upsampled half only the outermost skip remains, which
    sees a 3x3 input window: pixel (5, 5) must not reach output (0, 0), pixel (0, 0) must."""
    compiled = generators("none")
    params = compiled.variables["params"]
    final = params["final"]["conv"]
    skip_only = final["kernel"].at[:, :, TINY_G["features"] :].set(0.0)
    variables = {"params": {**params, "final": {"conv": {**final, "kernel": skip_only}}}}
    x = random_images((1, 16, 16, 1))
    out = compiled.eval(variables, x)
    far = compiled.eval(variables, x.at[0, 5, 5, 0].add(1.0))
    near = compiled.eval(variables, x.at[0, 0, 0, 0].add(1.0))
    np.testing.assert_array_equal(far[0, 0, 0], out[0, 0, 0])
    assert not np.allclose(near[0, 0, 0], out[0, 0, 0])


def test_unknown_upsample_mode_is_rejected():
    with pytest.raises(ValueError, match="resize_conv"):
        abstract_variables(UNetGenerator(**TINY_G, upsample="pixelshuffle"), (1, 8, 8, 1))


@pytest.mark.parametrize(
    ("norm", "independent"), [("instance", True), ("group", True), ("batch", False)]
)
def test_train_mode_sample_independence(generators, norm, independent):
    compiled = generators(norm)
    batch = random_images(BATCH_SHAPE, seed=1)
    others_changed = batch.at[1:].set(random_images((2, *BATCH_SHAPE[1:]), seed=2))
    key = jax.random.key(3)
    out, _ = compiled.train(compiled.variables, batch, key)
    out_changed, _ = compiled.train(compiled.variables, others_changed, key)
    assert np.allclose(out[0], out_changed[0], atol=1e-6) == independent


def test_eval_mode_is_deterministic_and_uses_running_statistics(generators):
    compiled = generators("batch")
    batch = random_images(BATCH_SHAPE, seed=1)
    first, second = (
        compiled.eval(compiled.variables, batch),
        compiled.eval(compiled.variables, batch),
    )
    np.testing.assert_array_equal(first, second)
    trained, _ = compiled.train(compiled.variables, batch, jax.random.key(0))
    assert not np.allclose(first, trained, atol=1e-4)
    others_changed = batch.at[1:].set(0.0)
    np.testing.assert_allclose(
        compiled.eval(compiled.variables, others_changed)[0], first[0], atol=1e-6
    )


def test_dropout_is_active_in_training_only(generators):
    compiled = generators("instance")
    batch = random_images(BATCH_SHAPE, seed=1)
    out_a, _ = compiled.train(compiled.variables, batch, jax.random.key(0))
    out_b, _ = compiled.train(compiled.variables, batch, jax.random.key(1))
    assert not np.allclose(out_a, out_b, atol=1e-4)


def test_batch_norm_statistics_update_in_training(generators):
    compiled = generators("batch")
    _, updates = compiled.train(compiled.variables, random_images(BATCH_SHAPE), jax.random.key(0))
    before = jax.tree.leaves(compiled.variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert all(not np.allclose(b, a) for b, a in zip(before, after, strict=True))


def test_reflect_padding_handles_images_smaller_than_the_padding():
    x = jnp.arange(15.0).reshape(1, 3, 5, 1)
    padded, (top, left) = reflect_pad_to_multiple(x, 8)
    assert padded.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(padded[:, top : top + 3, left : left + 5], x)


# ---- discriminator ----


def test_disc_output_shape_on_non_square_input(spectral_disc):
    logits, _ = spectral_disc.train(
        spectral_disc.variables, random_images((2, 40, 36, 3)), jax.random.key(0)
    )
    assert logits.shape == (2, 18, 16, 1) and logits.dtype == jnp.float32


def test_disc_rejects_input_smaller_than_receptive_field():
    with pytest.raises(ValueError, match=r"70x70 receptive field.*69x100"):
        abstract_variables(PatchDiscriminator(), (1, 69, 100, 3))
    abstract_variables(PatchDiscriminator(), (1, 70, 70, 3))


def test_disc_rejects_unknown_norm():
    with pytest.raises(ValueError, match="spectral"):
        abstract_variables(PatchDiscriminator(**TINY_D, norm="weight"), (1, 16, 16, 3))


def test_spectral_norm_option_keeps_parameters_and_adds_state(spectral_disc):
    plain = PatchDiscriminator(**TINY_D, norm="batch", dropout=0.3)
    plain_variables = jax.jit(lambda key, x: plain.init(key, x, train=False))(
        jax.random.key(0), jnp.zeros((1, 16, 16, 3))
    )
    jax.tree.map(
        np.testing.assert_array_equal, plain_variables["params"], spectral_disc.variables["params"]
    )
    spectral_state = {
        name: set(block["conv"]["spectral"])
        for name, block in spectral_disc.variables["batch_stats"].items()
    }
    assert spectral_state == {name: {"u", "sigma"} for name in ("conv_0", "conv_1", "logits")}


def test_spectral_norm_kind_means_no_activation_norm():
    variables = abstract_variables(PatchDiscriminator(**TINY_D, norm="spectral"), (1, 16, 16, 3))
    assert all("norm" not in block for block in variables["params"].values())
    assert all("bias" in block["conv"] for block in variables["params"].values())
    assert set(variables["batch_stats"]) == {"conv_0", "conv_1", "logits"}


def test_spectral_state_updates_in_train_mode_only(spectral_disc):
    variables = spectral_disc.variables
    x = random_images((2, 16, 16, 3))
    eval_with_state = jax.jit(
        lambda v, x: spectral_disc.model.apply(v, x, train=False, mutable=["batch_stats"])
    )
    _, train_updates = spectral_disc.train(variables, x, jax.random.key(0))
    _, eval_updates = eval_with_state(variables, x)

    def spectral_state(variables: dict, block: str) -> dict:
        return variables["batch_stats"][block]["conv"]["spectral"]

    for block in ("conv_0", "conv_1", "logits"):
        old, new = spectral_state(variables, block), spectral_state(train_updates, block)
        assert new["sigma"] != old["sigma"]
    assert not np.allclose(
        spectral_state(train_updates, "conv_1")["u"], spectral_state(variables, "conv_1")["u"]
    )
    jax.tree.map(
        np.testing.assert_array_equal, eval_updates, {"batch_stats": variables["batch_stats"]}
    )


def test_spectral_normalizer_converges_to_largest_singular_value():
    kernel = 0.02 * jax.random.normal(jax.random.key(0), (4, 4, 8, 16))
    normalizer = layers.SpectralNormalizer()
    state = normalizer.init(jax.random.key(1), kernel, update=False)
    step = jax.jit(lambda state: normalizer.apply(state, kernel, update=True, mutable=True))
    for _ in range(200):
        normalized, state = step(state)
    largest = np.linalg.norm(np.asarray(kernel).reshape(-1, 16), ord=2)
    np.testing.assert_allclose(state["batch_stats"]["sigma"], largest, rtol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(normalized).reshape(-1, 16), ord=2), 1.0, rtol=1e-4
    )


def test_disc_eval_is_deterministic_and_dropout_trains(spectral_disc):
    variables = spectral_disc.variables
    x = random_images((2, 16, 16, 3))
    np.testing.assert_array_equal(
        spectral_disc.eval(variables, x), spectral_disc.eval(variables, x)
    )
    out_a, _ = spectral_disc.train(variables, x, jax.random.key(0))
    out_b, _ = spectral_disc.train(variables, x, jax.random.key(1))
    assert not np.allclose(out_a, out_b, atol=1e-5)


# ---- norm factory ----


def apply_norm(kind: str, x: jax.Array, *, train: bool = True, **kwargs):
    norm = make_norm(kind, train=train, **kwargs)
    variables = norm.init(jax.random.key(0), x)
    return norm.apply(variables, x, mutable=["batch_stats"]), variables


def reference_group_norm(x: np.ndarray, groups: int) -> np.ndarray:
    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, groups, c // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    return ((grouped - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)


def test_unknown_norm_lists_the_valid_ones():
    with pytest.raises(ValueError, match=", ".join(NORM_KINDS)):
        make_norm("weight", train=True)


def test_group_count_falls_back_to_largest_divisor():
    assert fitting_group_count(12, 8) == 6
    assert fitting_group_count(7, 32) == 7
    assert fitting_group_count(64, 32) == 32
    with pytest.raises(ValueError, match="num_groups"):
        fitting_group_count(8, 0)


@pytest.mark.parametrize(
    ("kind", "kwargs", "groups"),
    [
        ("group", {"num_groups": 8}, 6),
        ("instance", {}, 12),
        ("layer", {}, 1),
    ],
)
def test_per_sample_norms_match_reference(kind, kwargs, groups):
    x = random_images((2, 5, 7, 12)) * 3 + 1
    (out, _), _ = apply_norm(kind, x, **kwargs)
    np.testing.assert_allclose(out, reference_group_norm(np.asarray(x), groups), atol=1e-5)


def test_batch_norm_momentum_and_running_average_in_eval():
    x = random_images((4, 3, 3, 2)) + 2
    (_, updates), variables = apply_norm("batch", x)
    batch_mean = np.asarray(x).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * batch_mean, rtol=1e-5)
    eval_norm = make_norm("batch", train=False)
    out = eval_norm.apply({**variables, **updates}, x)
    stats = updates["batch_stats"]
    expected = (np.asarray(x) - stats["mean"]) / np.sqrt(stats["var"] + 1e-5)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_none_norm_is_identity():
    x = random_images((1, 2, 2, 3))
    assert make_norm("none", train=True)(x) is x
