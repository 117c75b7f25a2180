"""The exported-generator folder format: its weights (``generator.msgpack``) and what rebuilds
it (``generator.json``: the model config, render size, storage dtype, colour bins, metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

BUNDLE_CONFIG = "generator.json"
BUNDLE_WEIGHTS = "generator.msgpack"


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a folder with both bundle files."""
    path = Path(path)
    return (path / BUNDLE_CONFIG).is_file() and (path / BUNDLE_WEIGHTS).is_file()


def write_bundle(out: str | Path, description: dict, variables: dict, dtype: str) -> Path:
    """Write ``variables`` ({"params": .., other collections}) stored as ``dtype`` and
    ``description`` to the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stored = jax.tree.map(lambda x: np.asarray(x).astype(dtype), variables)
    (out / BUNDLE_WEIGHTS).write_bytes(flax.serialization.msgpack_serialize(stored))
    (out / BUNDLE_CONFIG).write_text(json.dumps(description, indent=2) + "\n")
    return out


def read_bundle(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """(description, variables in float32) of the bundle folder ``path``."""
    path = Path(path)
    if not is_bundle(path):
        raise FileNotFoundError(
            f"{path} is not a colorjax model folder (needs {BUNDLE_CONFIG} and {BUNDLE_WEIGHTS})"
        )
    description = json.loads((path / BUNDLE_CONFIG).read_text())
    variables = flax.serialization.msgpack_restore((path / BUNDLE_WEIGHTS).read_bytes())
    return description, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), variables)
