"""Shared fixtures (CPU only, quiet TensorFlow, tiny configurations) and run-file helpers."""

import collections
import errno
import os
from pathlib import Path

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


@pytest.fixture(scope="session", autouse=True)
def extension_cache(tmp_path_factory) -> None:
    """C++ extensions built once per session, into a directory of its own (inherited by the
    tests' subprocesses)."""
    os.environ["COLORJAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("extensions"))


@pytest.fixture(scope="session")
def tiny_config() -> Config:
    """A configuration small enough to train a few steps on a CPU in seconds."""
    return apply_overrides(Config(), TINY)


@pytest.fixture(scope="module")
def colorizer():
    """A random tiny generator (depth 3, 4 features) as a Colorizer rendering at 32 px."""
    import jax
    import numpy as np

    from colorjax import inference
    from colorjax.config import ModelConfig
    from colorjax.heads import generator_from_config

    model = ModelConfig(depth=3, features=4, norm="batch", dropout=0.0, upsample="resize_conv")
    variables = generator_from_config(model).init(
        jax.random.PRNGKey(0), np.zeros((1, 16, 16, 1), np.float32), train=False
    )
    params = variables.pop("params")
    return inference.Colorizer(model, params, dict(variables), render_size=32)


@pytest.fixture(scope="module")
def fast_compilation():
    """Skip most XLA optimisations in a module where compile time matters more than speed."""
    import jax

    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def tensorboard_scalars(workdir: Path) -> collections.Counter:
    """How often each (tag, step, value rounded to 4 places) is in ``workdir``'s TensorBoard
    event files, as TensorFlow reads them."""
    import tensorflow as tf

    counts = collections.Counter()
    for path in (workdir / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                counts[value.tag, event.step, round(value.simple_value, 4)] += 1
    return counts


def fail_last_checkpoint_write(monkeypatch, checkpoints_dir: Path, written: list[Path]) -> None:
    """Make the last write of every save under ``checkpoints_dir`` (the state's tree metadata,
    after its arrays) fail as on a full disk, noting the files the save had written by then."""
    from etils import epath

    path_class = type(epath.Path("/"))
    original = path_class.write_text

    def write_text(self, *args, **kwargs):
        path = Path(str(self))
        in_a_save = path.parent.name.startswith("state.orbax-checkpoint-tmp")
        if path.name == "_METADATA" and in_a_save and checkpoints_dir in path.parents:
            written.extend(p for p in checkpoints_dir.rglob("*") if p.is_file())
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(path_class, "write_text", write_text)


def truncate_largest_file(step_dir: Path) -> Path:
    """Cut a checkpoint's biggest file (array data) in half, as a partial sync would."""
    files = [p for p in step_dir.rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    os.truncate(largest, largest.stat().st_size // 2)
    return largest
