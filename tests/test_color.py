"""Colour math: agreement with scikit-image, round trips, clipping, scaling."""

import numpy as np
import pytest
import skimage.color

from colorjax import color
from colorjax.imaging import visual


def rgb_cube(steps: int = 33) -> np.ndarray:
    """A dense grid of the RGB cube (its 8 corners included), shape [steps**3, 3]."""
    axis = np.linspace(0.0, 1.0, steps)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


CORNERS = np.array([[r, g, b] for r in (0, 1) for g in (0, 1) for b in (0, 1)], np.float64)


def test_rgb_cube_includes_the_corners():
    cube = {tuple(p) for p in rgb_cube()}
    assert all(tuple(c) in cube for c in CORNERS)


def test_rgb_to_lab_matches_skimage_in_float32():
    rgb = rgb_cube()
    lab = np.asarray(color.rgb_to_lab(rgb.astype(np.float32)))
    assert lab.dtype == np.float32
    assert np.abs(lab - skimage.color.rgb2lab(rgb)).max() < 0.01


def test_lab_to_rgb_matches_skimage_inside_and_outside_the_gamut():
    rng = np.random.default_rng(0)
    lab = np.stack(
        [rng.uniform(0, 100, 4000), rng.uniform(-120, 120, 4000), rng.uniform(-120, 120, 4000)],
        axis=-1,
    )
    with pytest.warns(UserWarning):  # skimage warns about negative Z values
        expected = skimage.color.lab2rgb(lab)
    assert np.abs(np.asarray(color.lab_to_rgb(lab.astype(np.float32))) - expected).max() < 1e-4


def test_round_trip_stays_within_one_level():
    rgb = rgb_cube().astype(np.float32)
    back = np.asarray(color.lab_to_rgb(color.rgb_to_lab(rgb)))
    assert np.abs(back - rgb).max() < 1 / 255


def test_known_values_and_leading_shapes():
    lab = np.asarray(color.rgb_to_lab(CORNERS.reshape(2, 2, 2, 3)))
    assert lab.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(lab[0, 0, 0], [0, 0, 0], atol=1e-4)  # black
    np.testing.assert_allclose(lab[1, 1, 1], [100, 0, 0], atol=0.01)  # white
    gray = np.asarray(color.rgb_to_lab(np.full((5, 3), 0.5, np.float32)))
    np.testing.assert_allclose(gray[:, 1:], 0, atol=0.01)


def test_out_of_gamut_lab_is_clipped_to_the_unit_cube():
    lab = np.array(
        [[50, 127, -127], [100, -128, 128], [0, 80, 80], [120, 0, 0], [-5, 0, 0]], np.float32
    )
    rgb = np.asarray(color.lab_to_rgb(lab))
    assert np.isfinite(rgb).all() and rgb.min() >= 0.0 and rgb.max() <= 1.0
    np.testing.assert_allclose(rgb[3], [1, 1, 1])
    np.testing.assert_allclose(rgb[4], [0, 0, 0])


def test_normalisation_helpers():
    np.testing.assert_allclose(color.normalize_l(np.array([0.0, 50.0, 100.0])), [-1, 0, 1])
    np.testing.assert_allclose(color.denormalize_l(np.array([-1.0, 0.0, 1.0])), [0, 50, 100])
    np.testing.assert_allclose(
        color.normalize_ab(np.array([-55.0, 110.0, 300.0, -300.0])), [-0.5, 1, 1, -1]
    )
    np.testing.assert_allclose(color.denormalize_ab(np.array([-0.5, 1.0])), [-55, 110])


def test_network_round_trip_and_ranges():
    rgb = rgb_cube(9).reshape(9, 81, 3).astype(np.float32)
    l, ab = color.rgb_to_network(rgb)
    assert l.shape == (9, 81, 1) and ab.shape == (9, 81, 2)
    assert float(np.min(l)) >= -1 and float(np.max(l)) <= 1
    assert float(np.min(ab)) >= -1 and float(np.max(ab)) <= 1
    np.testing.assert_allclose(color.network_to_rgb(l, ab), rgb, atol=1 / 255)


def test_uint8_batches_convert_like_float_rgb():
    rgb8 = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    l8, ab8 = color.rgb8_to_network(rgb8)
    l, ab = color.rgb_to_network(rgb8 / 255.0)
    assert l8.dtype == ab8.dtype == np.float32 and l8.shape == (2, 5, 7, 1)
    np.testing.assert_allclose(l8, l, atol=1e-6)
    np.testing.assert_allclose(ab8, ab, atol=1e-6)


def test_visuals_of_network_values():
    gray = visual.ab_to_visual(np.zeros((4, 5, 2), np.float32))
    assert gray.dtype == np.uint8 and gray.shape == (4, 5, 3)
    assert np.ptp(gray.astype(int), axis=-1).max() <= 1  # zero chroma is neutral
    assert abs(int(gray[0, 0, 0]) - 171) <= 1  # L = 70 is sRGB level 171
    red = visual.ab_to_visual(np.array([[[0.6, 0.4]]], np.float32))[0, 0].astype(int)
    assert red[0] > red[1] + 60
    np.testing.assert_array_equal(
        visual.l_to_visual(np.array([[[-1.0]], [[1.0]]]))[..., 0], [[0], [255]]
    )


def test_image_grid_pads_promotes_gray_and_titles_columns():
    color_cell = np.zeros((6, 8, 3), np.uint8)
    rows = [[np.ones((6, 4), np.float32), color_cell], [np.zeros((3, 4, 1), np.uint8)]]
    grid = visual.image_grid(rows)
    assert grid.shape == (6 + 3 + 3 * visual.PAD, 4 + 8 + 3 * visual.PAD, 3)
    assert (grid[visual.PAD : visual.PAD + 6, visual.PAD : visual.PAD + 4] == 255).all()
    titled = visual.image_grid(rows, column_titles=["gray", "generated"])
    assert titled.shape[0] == grid.shape[0] + visual.TITLE_HEIGHT
    assert (titled[: visual.TITLE_HEIGHT] < 128).any()  # some title text was drawn
