"""The classification head end to end: logits, decoding, loss, training, prior, bundles."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import color, heads, inference
from colorjax.config import Config, ModelConfig, apply_overrides
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.heads import binprior, colorbins, generator_from_config
from colorjax.training.loop import train_and_evaluate

pytestmark = pytest.mark.usefixtures("fast_compilation")
CLASSIFY = ["model.head=classification"]
MODEL = ModelConfig(depth=3, features=4, norm="group", num_groups=2, dropout=0.0)


def _classifier_variables(model: ModelConfig, size=(1, 16, 16, 1)):
    return generator_from_config(model).init(jax.random.PRNGKey(0), jnp.zeros(size), train=False)


def test_classification_generator_gives_half_resolution_logits_decoded_to_full_size():
    model = ModelConfig(**{**MODEL.__dict__, "head": "classification"})
    generator = generator_from_config(model)
    variables = _classifier_variables(model)
    gray = jax.random.uniform(jax.random.PRNGKey(1), (2, 20, 27, 1), minval=-1, maxval=1)
    logits = generator.apply(variables, gray, train=False)
    assert logits.shape == (2, 12, 16, len(colorbins.bin_centers()))  # padded to 24 x 32
    ab = heads.ChromaHead("classification", depth=3).decode(logits, 20, 27)
    assert ab.shape == (2, 20, 27, 2) and ab.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(ab))) <= 1.0


def test_unknown_head_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"model\.head"):
        heads.ChromaHead("mixture")
    with pytest.raises(ValueError, match=r"model\.head: unknown value 'mixture'.*classification"):
        apply_overrides(Config(), ["model.head=mixture"])


def test_decoding_logits_peaked_at_one_bin_gives_that_colour_everywhere():
    centers = colorbins.bin_centers()
    target = int(np.argmin(np.sum((centers - [40.0, 30.0]) ** 2, axis=-1)))
    logits = jnp.zeros((1, 4, 4, len(centers))).at[..., target].set(20.0)
    ab = heads.ChromaHead("classification", depth=3).decode(logits, 8, 8)
    expected = np.broadcast_to(centers[target] / color.AB_SCALE, ab.shape)
    np.testing.assert_allclose(ab, expected, rtol=1e-6)


def test_half_resolution_targets_average_2x2_blocks_of_the_padded_ground_truth():
    ab = jnp.arange(2 * 8 * 8 * 2, dtype=jnp.float32).reshape(2, 8, 8, 2)
    half = heads.half_resolution(ab, depth=2)
    assert half.shape == (2, 4, 4, 2)
    np.testing.assert_allclose(half[0, 0, 0], np.mean(np.asarray(ab)[0, :2, :2], axis=(0, 1)))
    padded = heads.half_resolution(jnp.ones((1, 6, 5, 2)), depth=3)  # padded to 8 x 8
    assert padded.shape == (1, 4, 4, 2)


def _fixed_batch(size=32, seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)}


def test_classification_steps_lower_the_cross_entropy_on_a_fixed_batch(tiny_config):
    config = apply_overrides(tiny_config, [*CLASSIFY, "train.lr_g=2e-3"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    pretrain = make_train_step(gan, adversarial=False, donate=False)
    batch = _fixed_batch()
    history = []
    for _ in range(8):
        state, metrics = pretrain(state, batch)
        history.append(float(metrics["g_ce"]))
    assert history[-1] < history[0]
    state, metrics = make_train_step(gan, donate=False)(state, batch)
    assert all(np.isfinite(float(metrics[k])) for k in ("g_ce", "g_adv", "g_l1", "d_loss"))


def test_training_caches_the_colour_prior_and_a_resumed_run_reads_it(tiny_config, tmp_path):
    config = apply_overrides(tiny_config, [*CLASSIFY, "train.steps=3", "log.eval_every=3"])
    train_and_evaluate(config, tmp_path, stop_at=2)
    cached = json.loads((tmp_path / binprior.PRIOR_FILE).read_text())
    prior = np.asarray(cached["prior"])
    assert prior.shape == (len(colorbins.bin_centers()),)
    assert prior.sum() == pytest.approx(1.0) and prior.min() >= 0
    assert cached["key"]["source"] == "sample"
    _, note = binprior.load_or_compute_prior(
        config, tmp_path, heads.ChromaHead("classification", depth=config.model.depth)
    )
    assert note.startswith("colour prior read from")
    summary = train_and_evaluate(config, tmp_path)
    assert summary["step"] == 3 and np.isfinite(summary["val"]["psnr"])
    other = apply_overrides(config, ["data.image_size=48"])
    _, note = binprior.load_or_compute_prior(other, tmp_path, heads.ChromaHead("classification"))
    assert "computed" in note


def test_a_classification_bundle_records_its_head_and_bins_and_colorizes_the_same(tmp_path):
    model = ModelConfig(**{**MODEL.__dict__, "head": "classification", "temperature": 0.5})
    variables = dict(_classifier_variables(model))
    params = variables.pop("params")
    colorizer = inference.Colorizer(model, params, variables, render_size=32)
    photo = np.random.default_rng(3).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    before = colorizer.colorize(photo)
    inference.export_bundle(colorizer, tmp_path)
    description = json.loads((tmp_path / inference.BUNDLE_CONFIG).read_text())
    assert description["model"]["head"] == "classification"
    np.testing.assert_array_equal(description["bins"], colorbins.bin_centers())
    loaded = inference.load_bundle(tmp_path)
    np.testing.assert_array_equal(loaded.colorize(photo), before)
    assert loaded.with_temperature(None) is loaded
    colder = loaded.with_temperature(0.05)
    assert colder.model.temperature == 0.05 and loaded.model.temperature == 0.5
    assert not np.array_equal(colder.colorize(photo), before)
