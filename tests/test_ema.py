"""EMA of the generator: the update arithmetic, the train step, and which weights consumers use."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import inference
from colorjax.config import apply_overrides, save_json
from colorjax.gan import ema
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.training.checkpoint import Checkpoints
from experiments import export

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_update_copies_before_start_then_averages():
    old = {"params": {"w": jnp.array([0.0, 4.0])}, "state": {"mean": jnp.array(2.0)}}
    params, state = {"w": jnp.array([1.0, 2.0])}, {"mean": jnp.array(1.0)}
    copied = ema.update_ema(old, params, state, jnp.array(2), decay=0.9, start=3)
    np.testing.assert_array_equal(copied["params"]["w"], [1.0, 2.0])
    averaged = ema.update_ema(old, params, state, jnp.array(3), decay=0.9, start=3)
    np.testing.assert_allclose(averaged["params"]["w"], [0.1, 0.9 * 4 + 0.1 * 2], rtol=1e-6)
    np.testing.assert_allclose(averaged["state"]["mean"], 0.9 * 2 + 0.1 * 1, rtol=1e-6)
    assert ema.update_ema({}, params, state, jnp.array(5), decay=0.9, start=0) == {}


def test_train_step_keeps_the_average_of_the_generator(tiny_config):
    config = apply_overrides(tiny_config, ["train.ema.decay=0.75", "train.ema.start=1"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    step = make_train_step(gan, adversarial=False, donate=False)
    rgb = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    first, _ = step(state, {"rgb": rgb})
    for a, b in zip(_leaves(first.ema["params"]), _leaves(first.g_params), strict=True):
        np.testing.assert_array_equal(a, b)  # before ema_start: a copy
    second, _ = step(first, {"rgb": rgb})
    expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, first.g_params, second.g_params)
    for a, b in zip(_leaves(second.ema["params"]), _leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert jax.tree.structure(second.ema["state"]) == jax.tree.structure(second.g_state)
    assert init_state(build_gan(tiny_config), jax.random.PRNGKey(0), 32).ema == {}


def test_out_of_range_decay_is_rejected(tiny_config):
    with pytest.raises(ValueError, match=r"train\.ema\.decay"):
        build_gan(apply_overrides(tiny_config, ["train.ema.decay=1.0"]))


@pytest.fixture(scope="module")
def ema_workdir(tiny_config, tmp_path_factory):
    """A workdir whose one checkpoint has EMA weights different from the trained ones."""
    config = apply_overrides(tiny_config, ["train.ema.decay=0.9"])
    gan = build_gan(config)
    state = init_state(gan, jax.random.PRNGKey(0), 32)
    shifted = jax.tree.map(lambda x: x + 0.01, state.ema)
    workdir = tmp_path_factory.mktemp("ema_run")
    save_json(config, workdir / "config.json")
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    checkpoints.save(3, state.replace(ema=shifted), config)
    checkpoints.close()
    return workdir, state.g_params, shifted["params"]


def test_load_workdir_picks_ema_by_default_and_raw_on_request(ema_workdir):
    workdir, raw, averaged = ema_workdir
    default = inference.load_workdir(workdir)
    for a, b in zip(_leaves(default.params), _leaves(averaged), strict=True):
        np.testing.assert_array_equal(a, b)
    assert default.origin["weights"] == "ema"
    chosen = inference.load_workdir(workdir, weights="raw")
    for a, b in zip(_leaves(chosen.params), _leaves(raw), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="weights must be one of"):
        inference.load_workdir(workdir, weights="best")


def test_export_writes_ema_by_default_and_raw_on_request(ema_workdir, tmp_path):
    workdir, raw, averaged = ema_workdir
    for flags, expected, name in (([], averaged, "ema"), (["--weights", "raw"], raw, "raw")):
        out = tmp_path / name
        export.main(["--workdir", str(workdir), "--out", str(out), *flags])
        bundle = inference.load_bundle(out)
        for a, b in zip(_leaves(bundle.params), _leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)
        description = json.loads((out / inference.BUNDLE_CONFIG).read_text())
        assert description["weights"] == name and description["source_step"] == 3


def test_asking_for_ema_of_a_run_without_it_names_the_setting():
    params, state = {"w": jnp.ones(2)}, {}
    assert ema.generator_weights({}, params, state) == (params, state)
    with pytest.raises(ValueError, match=r"train\.ema\.decay=0.*'raw'"):
        ema.generator_weights({}, params, state, "ema", source="runs/x")
