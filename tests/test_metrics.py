import math

import numpy as np
import pytest
from skimage import color as skcolor

from colorjax import metrics


def _random_image(seed=0, shape=(24, 32, 3)):
    return np.random.default_rng(seed).uniform(0, 1, shape)


def test_psnr_identical_is_inf_and_known_value():
    image = _random_image()
    assert metrics.psnr(image, image) == math.inf
    assert metrics.psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.1)) == pytest.approx(20.0)


def test_ssim_identical_is_one_and_drops_with_noise():
    image = _random_image()
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 0.2, image.shape), 0, 1)
    assert metrics.ssim(noisy, image) < 0.9


def test_colorfulness_of_gray_is_zero():
    gray = np.repeat(_random_image(shape=(16, 16, 1)), 3, axis=-1)
    assert metrics.colorfulness(gray) == pytest.approx(0.0, abs=1e-9)


def test_colorfulness_of_a_known_pattern():
    # Half pure red, half pure blue (0-255): rg = 255 | 0, yb = 127.5 | -255.
    image = np.zeros((2, 2, 3))
    image[0, :, 0] = 1.0
    image[1, :, 2] = 1.0
    std_rg, mean_rg = 127.5, 127.5
    std_yb, mean_yb = 191.25, -63.75
    expected = math.hypot(std_rg, std_yb) + 0.3 * math.hypot(mean_rg, mean_yb)
    assert metrics.colorfulness(image) == pytest.approx(expected)


def test_chroma_histogram_and_cast():
    image = _random_image()
    gray = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1)
    assert metrics.chroma_ratio(image, image) == pytest.approx(1.0)
    assert metrics.chroma_ratio(gray, image) == pytest.approx(0.0, abs=1e-3)
    assert metrics.ab_histogram_intersection(image, image) == pytest.approx(1.0)
    assert metrics.ab_histogram_intersection(gray, image) < 0.5
    assert metrics.ciede2000(image, image) == pytest.approx(0.0, abs=1e-6)
    mean_a, mean_b = metrics.mean_ab(gray)
    assert abs(mean_a) < 0.01 and abs(mean_b) < 0.01


def test_mean_metrics_skip_infinite_psnr():
    means = metrics.mean_metrics([{"psnr": math.inf}, {"psnr": 30.0}, {"psnr": 20.0}])
    assert means["psnr"] == pytest.approx(25.0)


def _chroma_of(rgb):
    lab = skcolor.rgb2lab(np.asarray(rgb, np.float64).reshape(1, 1, 3))
    return float(np.hypot(lab[0, 0, 1], lab[0, 0, 2]))


def _scene():
    """Left half white (neutral), right half saturated red (not neutral)."""
    image = np.ones((8, 8, 3))
    image[:, 4:] = (0.9, 0.1, 0.1)
    return image


def test_a_white_patch_painted_pink_has_the_pinks_chroma_as_tint():
    pink = (1.0, 0.7, 0.8)
    painted = _scene()
    painted[:, :4] = pink
    assert metrics.tint(painted, _scene()) == pytest.approx(_chroma_of(pink), rel=1e-6)
    assert _chroma_of(pink) > metrics.NEUTRAL_CHROMA
    assert metrics.tint(_scene(), _scene()) == pytest.approx(0.0, abs=0.01)  # sRGB white


def test_gray_output_has_no_tint_and_no_blob():
    image = _random_image(shape=(16, 16, 3))
    image[:8] = 0.5  # a neutral area to measure the tint on
    gray = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1)
    assert metrics.tint(gray, image) == pytest.approx(0.0, abs=0.01)
    assert metrics.blob(gray, image) == 0.0
    assert metrics.blob(image, image) == 0.0


def test_blob_counts_pixels_far_more_colourful_and_off_the_truth():
    truth = np.full((10, 10, 3), 0.5)
    output = truth.copy()
    output[:5, :4] = (0.1, 0.8, 0.1)  # 20 saturated green pixels: a blob
    output[6:, 6:] = (0.55, 0.5, 0.5)  # a faint cast: neither far nor colourful enough
    assert _chroma_of((0.1, 0.8, 0.1)) > metrics.BLOB_AB_DISTANCE + metrics.BLOB_CHROMA_EXCESS
    assert metrics.blob(output, truth) == pytest.approx(0.2)
    # As colourful as the truth but of another hue is off, not a blob (no chroma excess).
    red, green = np.full((4, 4, 3), (0.8, 0.2, 0.2)), np.full((4, 4, 3), (0.2, 0.6, 0.2))
    assert metrics.blob(green, red) == 0.0


def test_tint_without_neutral_pixels_is_nan_and_left_out_of_means():
    red = np.full((4, 4, 3), (0.9, 0.1, 0.1))
    assert math.isnan(metrics.tint(red, red))
    means = metrics.mean_metrics([{"tint": math.nan}, {"tint": 2.0}, {"tint": 4.0}])
    assert means["tint"] == pytest.approx(3.0)
    assert math.isnan(metrics.mean_metrics([{"tint": math.nan}])["tint"])


def test_quick_metrics_are_psnr_colorfulness_tint_and_blob():
    truth = _random_image()
    truth[:8] = 0.5
    output = _random_image(seed=1)
    quick = metrics.quick_metrics(output, truth)
    assert list(quick) == ["psnr", "colorfulness", "tint", "blob"]
    full = metrics.image_metrics(output, truth)
    assert all(quick[k] == full[k] for k in quick)
    assert quick["tint"] > 10 and 0 < quick["blob"] < 1
