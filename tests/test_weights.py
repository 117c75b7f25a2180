"""The generator shipped in weights/ (and a next one staged in weights/next/, when there is
one) loads and colorizes."""

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorjax import color, inference
from experiments.colorize import SHIPPED_WEIGHTS

pytestmark = pytest.mark.usefixtures("fast_compilation")


# The shipped model, and the one in training staged beside it when there is one.
FOLDERS = [Path(SHIPPED_WEIGHTS), *[p for p in [Path(SHIPPED_WEIGHTS) / "next"] if p.is_dir()]]


@pytest.fixture(scope="module", params=FOLDERS, ids=lambda p: p.name)
def folder(request) -> Path:
    return request.param


@pytest.fixture(scope="module")
def shipped(folder):
    return inference.load_bundle(folder)


def test_shipped_bundle_is_small_float16(shipped, folder):
    files = {path.name: path.stat().st_size for path in folder.iterdir() if path.is_file()}
    assert {"generator.json", "generator.msgpack"} <= files.keys()
    assert files["generator.msgpack"] < 30 * 2**20
    assert json.loads((folder / "generator.json").read_text())["storage_dtype"] == "float16"
    assert shipped.model.features > 0 and shipped.render_size % shipped.multiple == 0


def test_shipped_model_colorizes_a_gray_photo(shipped):
    photo = Image.fromarray(skimage.data.coffee()).resize((120, 80)).convert("L")
    rgb = shipped.colorize(photo)
    assert rgb.shape == (80, 120, 3) and rgb.dtype == np.uint8
    lab = np.asarray(color.rgb_to_lab(rgb / 255.0))
    assert np.isfinite(lab).all()
    gray = np.repeat(np.asarray(photo)[..., None], 3, axis=-1) / 255.0
    lightness = np.asarray(color.rgb_to_lab(gray))[..., 0]
    assert np.median(np.abs(lab[..., 0] - lightness)) < 1.0  # the photo's own lightness
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    assert chroma.mean() > 3.0  # colour, not gray
