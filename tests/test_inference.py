"""Any-size colorization, model loading and export."""

import numpy as np
import pytest
from PIL import Image

from colorjax import color, evaluation, inference
from colorjax.imaging import visual

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _photo(height=45, width=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_render_shape_is_a_multiple_and_keeps_aspect(colorizer):
    assert colorizer.render_shape(3000, 4000) == (24, 32)
    assert colorizer.render_shape(3000, 4000, 512) == (384, 512)
    assert colorizer.render_shape(5, 7) == (8, 8)


@pytest.mark.parametrize("shape", [(45, 70), (97, 131), (1, 1), (300, 17)])
def test_any_size_keeps_shape_and_lightness(colorizer, shape):
    rgb = _photo(*shape)
    out = colorizer.colorize(rgb)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8
    l_in = np.asarray(color.rgb_to_lab(rgb / 255.0))[..., 0]
    l_out = np.asarray(color.rgb_to_lab(out / 255.0))[..., 0]
    assert np.percentile(np.abs(l_in - l_out), 95) < 1.5


def test_pil_modes_and_arrays(colorizer):
    rgb = _photo()
    gray = Image.fromarray(rgb).convert("L")
    sepia = np.stack([np.asarray(gray) * f for f in (1.0, 0.85, 0.6)], -1).astype(np.uint8)
    inputs = [
        gray,
        Image.fromarray(rgb).convert("RGBA"),
        Image.fromarray(rgb).convert("P"),
        Image.fromarray(rgb).convert("CMYK"),
        np.asarray(gray),
        (np.asarray(gray).astype(np.uint16) * 257),
        sepia,
    ]
    for image in inputs:
        assert colorizer.colorize(image).shape == (45, 70, 3)
    # A toned photo is colorized from its lightness alone, like the gray image of equal L*.
    l_sepia = np.asarray(color.rgb_to_lab(sepia / 255.0))[..., :1]
    lab_gray = np.concatenate([l_sepia, np.zeros_like(l_sepia), np.zeros_like(l_sepia)], -1)
    gray_equal_l = np.round(np.asarray(color.lab_to_rgb(lab_gray)) * 255).astype(np.uint8)
    difference = colorizer.colorize(sepia).astype(int) - colorizer.colorize(gray_equal_l)
    assert np.abs(difference).max() <= 2


def test_flip_average_and_batching_agree(colorizer):
    photos = [_photo(seed=s) for s in range(3)] + [_photo(60, 40)]
    one_by_one = [colorizer.colorize(p) for p in photos]
    batched = colorizer.colorize_many(photos, batch_size=2)
    for a, b in zip(one_by_one, batched, strict=True):
        np.testing.assert_allclose(a, b, atol=1)
    assert colorizer.colorize(photos[0], flip=True).shape == photos[0].shape


def test_export_round_trip_gives_identical_output(colorizer, tmp_path):
    inference.export_bundle(colorizer, tmp_path / "model")
    loaded = inference.load_bundle(tmp_path / "model")
    photo = _photo()
    np.testing.assert_array_equal(colorizer.colorize(photo), loaded.colorize(photo))
    with pytest.raises(FileNotFoundError, match="not a colorjax model"):
        inference.load_bundle(tmp_path)


def test_full_resolution_fast_path_matches_color_module():
    rgb = np.random.default_rng(3).integers(0, 256, (300, 20, 3), dtype=np.uint8)
    lab = np.array(color.rgb_to_lab(rgb / 255.0))
    np.testing.assert_allclose(inference.full_resolution_l(rgb), lab[..., 0], atol=0.01)
    lab[..., 1:] *= 1.3  # some colours leave the gamut: both paths clip
    reference = np.round(np.asarray(color.lab_to_rgb(lab)) * 255)
    fast = inference.lab_to_rgb8(lab.astype(np.float32)).astype(int)
    assert np.abs(fast - reference).max() <= 1


def test_showcase_lays_out_input_beside_and_colorized(colorizer, tmp_path):
    from experiments import showcase

    inference.export_bundle(colorizer, tmp_path / "model")
    photos = [tmp_path / f"photo{i}.png" for i in range(3)]
    for i, path in enumerate(photos):
        Image.fromarray(_photo(40, 60 + 10 * i, seed=i)).save(path)
    other = tmp_path / "other.png"
    Image.fromarray(_photo(20, 30, seed=9)).save(other)
    out = tmp_path / "figure.png"
    argv = ["--model", str(tmp_path / "model"), "--out", str(out), "--height", "50"]
    showcase.main([*map(str, photos), *argv, "--per-row", "2", "--beside", *[str(other)] * 3])
    figure = np.asarray(Image.open(out))
    # columns: input, beside, colorized for two photos; widths at height 50 are the widest
    # photo of each column (photo2, 100 px, under photo0) and the 30x20 beside image (75 px)
    widths = [100, 75, 100, 88, 75, 88]
    assert figure.shape[1] == sum(widths) + visual.PAD * (len(widths) + 1)
    assert figure.shape[0] == visual.TITLE_HEIGHT + 2 * 50 + 3 * visual.PAD
    with pytest.raises(SystemExit):
        showcase.main([*map(str, photos), *argv, "--beside", str(other)])


def test_chroma_zero_is_the_gray_image_and_one_the_predicted_colour(colorizer):
    photo = _photo()
    lightness = inference.full_resolution_l(photo)
    small = inference.resize_plane(lightness, colorizer.render_shape(*lightness.shape))
    ab = colorizer.predict_ab(inference.network_input([small]))[0] * color.AB_SCALE
    upsampled = [inference.resize_plane(ab[..., c], lightness.shape) for c in range(2)]
    lab = np.stack([lightness, *upsampled], axis=-1)
    predicted = np.round(np.asarray(color.lab_to_rgb(lab)) * 255)
    assert np.abs(colorizer.colorize(photo, chroma=1.0) - predicted).max() <= 1
    gray = colorizer.colorize(photo, chroma=0.0).astype(int)
    assert np.abs(gray - evaluation.gray_baseline(photo)).max() <= 1
    assert np.abs(gray.max(axis=-1) - gray.min(axis=-1)).max() <= 1
    # the tiny network's colours are faint: scale them well above uint8 rounding to compare
    chroma = [np.hypot(*_ab_of(colorizer.colorize(photo, chroma=k))).mean() for k in (20, 40)]
    assert 1.8 < chroma[1] / chroma[0] < 2.2


def _ab_of(rgb: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(color.rgb_to_lab(rgb / 255.0))[..., 1:], -1, 0)


def test_batches_by_shape_fill_up_and_bound_what_waits():
    shapes = list("aabacab")
    batches = list(inference.batches_by_shape(zip(range(7), shapes, strict=True), batch_size=2))
    assert batches == [("a", [0, 1]), ("a", [3, 5]), ("b", [2, 6]), ("c", [4])]
    shapes = np.random.default_rng(0).choice(list("abcde"), 200).tolist()
    consumed = []

    def items():
        for i, shape in enumerate(shapes):
            consumed.append(i)
            yield i, shape

    done = []
    for shape, batch in inference.batches_by_shape(items(), 4, max_pending=6):
        assert len(batch) <= 4 and {shapes[i] for i in batch} == {shape}
        done += batch
        assert len(consumed) - len(done) <= 6  # what waits for its batch stays bounded
    assert sorted(done) == list(range(200))
