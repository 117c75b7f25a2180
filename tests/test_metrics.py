import math

import numpy as np
import pytest

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
