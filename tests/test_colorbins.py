"""Colour bins of the classification head: gamut, soft encoding, rebalancing, decoding."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color as skcolor

from colorjax import color
from colorjax.heads import colorbins


@pytest.fixture(scope="module")
def centers():
    return colorbins.bin_centers()


@pytest.fixture(scope="module")
def table(centers):
    return colorbins.encoding_table(centers)


def _displayable_by_round_trip(ab: np.ndarray, lightness: np.ndarray) -> np.ndarray:
    """Whether (L, a, b) survives skimage's Lab -> sRGB (which clips) -> Lab unchanged, for
    some L: an independent test of gamut membership."""
    lab = np.stack(np.broadcast_arrays(lightness[:, None], ab[None, :, 0], ab[None, :, 1]), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lab2rgb warns about the colours it clips
        back = skcolor.rgb2lab(np.clip(skcolor.lab2rgb(lab), 0.0, 1.0))
    return np.any(np.max(np.abs(back - lab), axis=-1) < 1e-3, axis=0)


def test_bins_are_the_grid_points_displayable_at_some_lightness(centers):
    ticks = np.arange(-110, 111, 10.0)
    grid = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), -1).reshape(-1, 2)
    expected = grid[_displayable_by_round_trip(grid, np.linspace(0.0, 100.0, 401))]
    assert len(centers) == len(expected) == 228
    np.testing.assert_array_equal(centers, expected)
    assert colorbins.in_gamut_at_some_lightness(centers).all()
    assert np.all(centers % 10 == 0)
    assert [0.0, 0.0] in centers.tolist() and [100.0, -100.0] not in centers.tolist()


def test_soft_encoding_sums_to_one_and_peaks_at_the_true_bin(centers, table):
    ab = jnp.asarray(centers / color.AB_SCALE)
    indices, weights = colorbins.soft_encode(ab, table)
    assert indices.shape == weights.shape == (len(centers), colorbins.NEIGHBORS)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(indices[:, 0], np.arange(len(centers)))
    assert np.all(np.argmax(weights, axis=-1) == 0)
    assert len(np.unique(np.asarray(indices), axis=1)[0]) == colorbins.NEIGHBORS


def test_soft_encoding_weights_follow_the_gaussian_of_the_distances(centers, table):
    point = np.array([13.0, -26.0])  # a table point without ties among its neighbours
    indices, weights = colorbins.soft_encode(jnp.asarray(point / color.AB_SCALE), table)
    squared = np.sum((centers - point) ** 2, axis=-1)
    nearest = np.argsort(squared)[: colorbins.NEIGHBORS]
    gauss = np.exp(-squared[nearest] / (2 * colorbins.SIGMA**2))
    np.testing.assert_array_equal(indices, nearest)
    np.testing.assert_allclose(weights, gauss / gauss.sum(), rtol=1e-5)


def test_rebalancing_weights_average_to_one_under_the_prior():
    prior = np.array([0.7, 0.2, 0.09, 0.01])
    weights = colorbins.rebalancing_weights(prior, mix=0.5)
    assert np.sum(prior * weights) == pytest.approx(1.0, rel=1e-6)
    assert np.all(np.diff(weights) > 0)  # rarer bins weigh more
    np.testing.assert_allclose(colorbins.rebalancing_weights(prior, mix=1.0), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"train\.prior_mix"):
        colorbins.rebalancing_weights(prior, mix=0.0)


def test_annealed_mean_is_the_mode_when_cold_and_the_mean_at_one(centers):
    logits = jax.random.normal(jax.random.PRNGKey(0), (3, len(centers))) * 2.0
    probs = jax.nn.softmax(logits, axis=-1)
    mean = np.asarray(probs @ centers) / color.AB_SCALE
    mode = centers[np.argmax(logits, axis=-1)] / color.AB_SCALE
    np.testing.assert_allclose(colorbins.annealed_mean(logits, centers, 1.0), mean, atol=1e-5)
    np.testing.assert_allclose(colorbins.annealed_mean(logits, centers, 1e-3), mode, atol=1e-4)
    with pytest.raises(ValueError, match="temperature"):
        colorbins.annealed_mean(logits, centers, 0.0)


def test_cross_entropy_matches_a_hand_computation():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    indices = jnp.array([[0, 1], [2, 0]])
    weights = jnp.array([[0.75, 0.25], [0.6, 0.4]])
    class_weights = jnp.array([2.0, 1.0, 0.5])
    log_p = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    first = -(0.75 * log_p[0, 0] + 0.25 * log_p[0, 1]) * 2.0
    second = -(0.6 * log_p[1, 2] + 0.4 * log_p[1, 0]) * 0.5
    loss = colorbins.cross_entropy(logits, indices, weights, class_weights)
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-6)


def test_soft_histogram_adds_every_pixels_mass(table, centers):
    ab = jax.random.uniform(jax.random.PRNGKey(1), (4, 5, 2), minval=-0.6, maxval=0.6)
    indices, weights = colorbins.soft_encode(ab, table)
    histogram = colorbins.soft_histogram(indices, weights, len(centers))
    assert float(histogram.sum()) == pytest.approx(20.0, rel=1e-5)
    assert histogram.shape == (len(centers),) and float(histogram.min()) >= 0.0
