"""Shared fixtures: CPU only, quiet TensorFlow, tiny configurations."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from colorjax.config import Config, apply_overrides

TINY = [
    "data.source=sample",
    "data.image_size=32",
    "data.batch_size=4",
    "model.depth=3",
    "model.features=4",
    "model.num_groups=2",
    "model.dropout=0.5",
    "model.dropout_blocks=1",
    "disc.layers=1",
    "disc.features=4",
    "disc.num_groups=2",
    "train.steps=6",
    "train.pretrain_steps=2",
    "train.real_label=0.9",
    "train.clip_norm=1.0",
    "log.every=2",
    "log.sample_every=3",
    "log.eval_every=3",
    "log.eval_images=4",
    "ckpt.every=3",
    "ckpt.minutes=0",
    "ckpt.keep=2",
]


@pytest.fixture(scope="session")
def tiny_config() -> Config:
    """A configuration small enough to train a few steps on a CPU in seconds."""
    return apply_overrides(Config(), TINY)


@pytest.fixture(scope="module")
def fast_compilation():
    """Skip most XLA optimisations in a module where compile time matters more than speed."""
    import jax

    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
