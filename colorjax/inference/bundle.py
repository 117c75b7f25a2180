"""A generator as a folder: its weights (``generator.msgpack``) and what rebuilds it
(``generator.json``), written by ``export_bundle`` and read by ``load_bundle``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from colorjax.config import from_dict
from colorjax.inference.colorizer import Colorizer

BUNDLE_CONFIG = "generator.json"
BUNDLE_WEIGHTS = "generator.msgpack"


def export_bundle(
    colorizer: Colorizer, out: str | Path, *, dtype: str = "float32", metadata: dict | None = None
) -> Path:
    """Write the generator's weights (``generator.msgpack``) and what rebuilds it
    (``generator.json``) to ``out``; ``dtype="float16"`` halves the file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variables = {"params": colorizer.params, **colorizer.state}
    stored = jax.tree.map(lambda x: np.asarray(x).astype(dtype), variables)
    (out / BUNDLE_WEIGHTS).write_bytes(flax.serialization.msgpack_serialize(stored))
    description = {
        "model": dataclasses.asdict(colorizer.model),
        "render_size": colorizer.render_size,
        "storage_dtype": dtype,
        **(metadata or {}),
    }
    if colorizer.head.classification:
        description["bins"] = np.asarray(colorizer.head.centers).tolist()
    (out / BUNDLE_CONFIG).write_text(json.dumps(description, indent=2) + "\n")
    return out


def load_bundle(path: str | Path) -> Colorizer:
    """A Colorizer from a folder written by ``export_bundle``."""
    path = Path(path)
    if not (path / BUNDLE_CONFIG).is_file() or not (path / BUNDLE_WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{path} is not a colorjax model folder (needs {BUNDLE_CONFIG} and {BUNDLE_WEIGHTS})"
        )
    description = json.loads((path / BUNDLE_CONFIG).read_text())
    model = from_dict({"model": description["model"]}).model
    variables = flax.serialization.msgpack_restore((path / BUNDLE_WEIGHTS).read_bytes())
    variables = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), variables)
    params = variables.pop("params")
    bins = np.asarray(description["bins"], np.float32) if "bins" in description else None
    return Colorizer(model, params, variables, int(description["render_size"]), bins=bins)
