"""Starting a run from an exported model folder or another run (``train.init_from``)."""

import jax
import numpy as np
import pytest
from conftest import TINY

from colorjax import inference
from colorjax.config import Config, ConfigError, apply_overrides
from colorjax.training.checkpoint import Checkpoints
from colorjax.training.loop import train_and_evaluate

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _generator_leaves(workdir, config, step=None):
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    state = checkpoints.restore(step=step)
    checkpoints.close()
    return [np.asarray(x) for x in jax.tree.leaves(state["g_params"])]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished tiny run and its exported model folder."""
    root = tmp_path_factory.mktemp("source")
    config = apply_overrides(Config(), [*TINY, "train.steps=3", "model.norm=group"])
    train_and_evaluate(config, root / "run")
    bundle = inference.export_bundle(inference.load_workdir(root / "run"), root / "bundle")
    return config, root / "run", bundle


def _starting_leaves(config, workdir):
    train_and_evaluate(apply_overrides(config, ["train.steps=1"]), workdir, stop_at=0)
    return _generator_leaves(workdir, config, step=0)


def test_a_run_starts_from_a_model_folder(source_run, tmp_path):
    config, _, bundle = source_run
    started = apply_overrides(config, [f"train.init_from={bundle}", "train.seed=7"])
    leaves = _starting_leaves(started, tmp_path / "new")
    exported = inference.load_bundle(bundle).params
    for a, b in zip(leaves, jax.tree.leaves(exported), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_a_run_starts_from_a_workdir_step_with_its_discriminator(source_run, tmp_path):
    config, run, _ = source_run
    started = apply_overrides(
        config, [f"train.init_from={run}:3", "train.init_discriminator=true", "train.seed=7"]
    )
    train_and_evaluate(apply_overrides(started, ["train.steps=1"]), tmp_path / "new", stop_at=0)
    checkpoints = Checkpoints(tmp_path / "new" / "checkpoints", config.ckpt)
    new = checkpoints.restore(step=0)
    checkpoints.close()
    checkpoints = Checkpoints(run / "checkpoints", config.ckpt)
    old = checkpoints.restore(step=3)
    checkpoints.close()
    pairs = zip(jax.tree.leaves(new["d_params"]), jax.tree.leaves(old["d_params"]), strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    assert int(new["step"]) == 0  # the optimizers and the step start fresh
    assert all(float(np.abs(m).max()) == 0 for m in jax.tree.leaves(new["g_opt"]) if np.ndim(m))


def test_another_architecture_is_an_error_naming_the_fields(source_run, tmp_path):
    _, _, bundle = source_run
    config = apply_overrides(Config(), [*TINY, "model.features=6", f"train.init_from={bundle}"])
    with pytest.raises(ConfigError, match=r"model.features \(source 4, this run 6\)"):
        train_and_evaluate(config, tmp_path / "new", stop_at=0)


def test_a_folder_that_is_neither_is_named(tmp_path):
    config = apply_overrides(Config(), [*TINY, f"train.init_from={tmp_path / 'nothing'}"])
    with pytest.raises(FileNotFoundError, match="nothing is neither a model folder"):
        train_and_evaluate(config, tmp_path / "new", stop_at=0)


def test_an_interrupted_fine_tune_resumes_exactly_from_its_own_checkpoints(source_run, tmp_path):
    config, _, bundle = source_run
    started = apply_overrides(config, [f"train.init_from={bundle}", "train.steps=4"])
    train_and_evaluate(started, tmp_path / "straight")
    train_and_evaluate(started, tmp_path / "resumed", stop_at=2)
    assert train_and_evaluate(started, tmp_path / "resumed")["step"] == 4
    straight = _generator_leaves(tmp_path / "straight", config, step=4)
    resumed = _generator_leaves(tmp_path / "resumed", config, step=4)
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(a, b)
