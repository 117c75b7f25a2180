"""A generator as a folder: its weights (``generator.msgpack``) and what rebuilds it
(``generator.json``), written by ``export_bundle`` and read by ``load_bundle``
(format: ``colorjax.heads.bundle``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from colorjax.config import from_dict
from colorjax.heads.bundle import BUNDLE_CONFIG, BUNDLE_WEIGHTS, read_bundle, write_bundle
from colorjax.inference.colorizer import Colorizer

__all__ = ["BUNDLE_CONFIG", "BUNDLE_WEIGHTS", "export_bundle", "load_bundle"]


def export_bundle(
    colorizer: Colorizer, out: str | Path, *, dtype: str = "float32", metadata: dict | None = None
) -> Path:
    """Write the generator's weights (``generator.msgpack``) and what rebuilds it
    (``generator.json``) to ``out``; ``dtype="float16"`` halves the file."""
    description = {
        "model": dataclasses.asdict(colorizer.model),
        "render_size": colorizer.render_size,
        "storage_dtype": dtype,
        **(metadata or {}),
    }
    if colorizer.head.classification:
        description["bins"] = np.asarray(colorizer.head.centers).tolist()
    variables = {"params": colorizer.params, **colorizer.state}
    return write_bundle(out, description, variables, dtype)


def load_bundle(path: str | Path) -> Colorizer:
    """A Colorizer from a folder written by ``export_bundle``."""
    description, variables = read_bundle(path)
    model = from_dict({"model": description["model"]}).model
    params = variables.pop("params")
    bins = np.asarray(description["bins"], np.float32) if "bins" in description else None
    return Colorizer(model, params, variables, int(description["render_size"]), bins=bins)
