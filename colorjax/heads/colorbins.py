"""Colour bins for the classification head (Zhang, Isola and Efros 2016, "Colorful Image
Colorization"): a*b* quantised on a grid, soft-encoded targets, class rebalancing and
annealed-mean decoding.

* Bins: the centres of a ``GRID``-unit a*b* grid (multiples of 10 by default) that are inside
  the sRGB gamut at some lightness L in [0, 100]. The sRGB gamut gives 228 such centres with
  grid 10 (Zhang et al. quote 313 from a looser gamut test; 262 cells are touched by some sRGB
  colour, but 34 of their centres are not themselves displayable).
* Soft encoding: a ground-truth a*b* value becomes a distribution over its ``NEIGHBORS``
  nearest bins with Gaussian weights (``SIGMA`` a*b* units), summing to 1.
* Rebalancing: the empirical bin prior p of the training set (the mean soft encoding over its
  pixels) is mixed with the uniform distribution, ``(1 - PRIOR_MIX) p + PRIOR_MIX / Q``; its
  inverse, normalised so that its mean under p is 1, weights each pixel by its nearest bin, so
  rare saturated colours are not drowned by the common desaturated ones.
* Decoding: the annealed mean, ``softmax(logits / T) @ centres``. T -> 0 gives the mode (vivid,
  possibly patchy), T = 1 the mean (smooth, muted); ``TEMPERATURE`` = 0.38 is the paper's.

Network a*b* values are a*b* / ``color.AB_SCALE``; bin centres are stored in a*b* units.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color

GRID = 10.0  # a*b* units between bin centres
NEIGHBORS = 5  # bins a soft-encoded target spreads over
SIGMA = 5.0  # a*b* units, Gaussian of the soft encoding
PRIOR_MIX = 0.5  # weight of the uniform distribution in the rebalancing prior
TEMPERATURE = 0.38  # annealed-mean decoding
GAMUT_L_STEPS = 401  # lightness levels at which a centre is tested against the gamut
AB_LIMIT = color.AB_SCALE  # centres lie in [-AB_LIMIT, AB_LIMIT]^2


def in_gamut_at_some_lightness(ab: np.ndarray, steps: int = GAMUT_L_STEPS) -> np.ndarray:
    """For a*b* pairs [N, 2]: whether some L in [0, 100] makes (L, a, b) a displayable sRGB
    colour."""
    ab = np.asarray(ab, np.float64)
    lightness = np.linspace(0.0, 100.0, steps)
    lab = np.concatenate(
        [
            np.broadcast_to(lightness[:, None, None], (steps, len(ab), 1)),
            np.broadcast_to(ab[None], (steps, len(ab), 2)),
        ],
        axis=-1,
    )
    rgb = color.lab_to_linear_rgb(lab)
    return np.any(np.all((rgb >= 0.0) & (rgb <= 1.0), axis=-1), axis=0)


@functools.cache
def _bin_centers(grid: float) -> np.ndarray:
    ticks = np.arange(-np.floor(AB_LIMIT / grid), np.floor(AB_LIMIT / grid) + 1) * grid
    a, b = np.meshgrid(ticks, ticks, indexing="ij")
    grid_points = np.stack([a.ravel(), b.ravel()], axis=-1)
    return grid_points[in_gamut_at_some_lightness(grid_points)].astype(np.float32)


def bin_centers(grid: float = GRID) -> np.ndarray:
    """a*b* centres [Q, 2] of the in-gamut bins, in a*b* units (a copy)."""
    return _bin_centers(float(grid)).copy()


TABLE_STEP = 1.0  # a*b* units between the points of the soft-encoding lookup table


def encoding_table(
    centers: np.ndarray, neighbors: int = NEIGHBORS, sigma: float = SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """The soft encoding of every point of a ``TABLE_STEP`` a*b* grid over
    [-AB_LIMIT, AB_LIMIT]^2: indices [S, S, k] of the ``neighbors`` nearest centres, nearest
    first, and their Gaussian weights [S, S, k] (``sigma`` a*b* units) summing to 1.

    ``soft_encode`` looks targets up here instead of searching the centres per pixel (a top-k
    over Q bins for every pixel costs more than the network's own step on a CPU).
    """
    ticks = np.arange(-AB_LIMIT, AB_LIMIT + TABLE_STEP / 2, TABLE_STEP)
    a, b = np.meshgrid(ticks, ticks, indexing="ij")
    points = np.stack([a.ravel(), b.ravel()], axis=-1)
    centers = np.asarray(centers, np.float64)
    squared = np.sum((points[:, None, :] - centers[None]) ** 2, axis=-1)
    indices = np.argsort(squared, axis=1, kind="stable")[:, :neighbors]
    nearest = np.take_along_axis(squared, indices, axis=1)
    weights = np.exp(-(nearest - nearest[:, :1]) / (2.0 * sigma**2))
    weights /= weights.sum(axis=1, keepdims=True)
    shape = (len(ticks), len(ticks), neighbors)
    return indices.reshape(shape).astype(np.int32), weights.reshape(shape).astype(np.float32)


def soft_encode(ab: jax.Array, table: tuple[np.ndarray, np.ndarray]) -> tuple[jax.Array, jax.Array]:
    """Soft-encoded targets of network a*b* [..., 2] from an ``encoding_table``: bin indices
    [..., k] and weights [..., k] of the table point nearest to each value."""
    indices, weights = (jnp.asarray(t) for t in table)
    size = indices.shape[0]
    position = jnp.round((jnp.asarray(ab, jnp.float32) * color.AB_SCALE + AB_LIMIT) / TABLE_STEP)
    position = jnp.clip(position, 0, size - 1).astype(jnp.int32)
    row, col = position[..., 0], position[..., 1]
    return indices[row, col], weights[row, col]


def soft_histogram(indices: jax.Array, weights: jax.Array, num_bins: int) -> jax.Array:
    """Sum of the soft encodings [..., k] over all pixels: mass per bin [Q]."""
    return jnp.zeros(num_bins, jnp.float32).at[indices.reshape(-1)].add(weights.reshape(-1))


def rebalancing_weights(prior: np.ndarray, mix: float = PRIOR_MIX) -> np.ndarray:
    """Per-bin loss weights [Q]: the inverse of the prior mixed with uniform, with mean 1
    under the prior."""
    if not 0.0 < mix <= 1.0:
        raise ValueError(f"prior mix (train.prior_mix) must be in (0, 1], got {mix}")
    prior = np.asarray(prior, np.float64)
    prior = prior / prior.sum()
    weights = 1.0 / ((1.0 - mix) * prior + mix / len(prior))
    return (weights / np.sum(prior * weights)).astype(np.float32)


def dense_targets(indices: jax.Array, weights: jax.Array, num_bins: int) -> jax.Array:
    """Soft encodings [..., k] spread out to distributions over all bins [..., Q]."""
    bins = jnp.arange(num_bins)
    return sum(
        jnp.where(indices[..., i : i + 1] == bins, weights[..., i : i + 1], 0.0)
        for i in range(indices.shape[-1])
    )


def cross_entropy(
    logits: jax.Array, indices: jax.Array, weights: jax.Array, class_weights: jax.Array
) -> jax.Array:
    """Mean over pixels of the rebalanced cross-entropy between soft targets (``indices``,
    ``weights`` from ``soft_encode``) and ``logits`` [..., Q]; each pixel weighs as its
    nearest bin (``class_weights[indices[..., 0]]``)."""
    logits = logits.astype(jnp.float32)
    targets = dense_targets(indices, weights, logits.shape[-1])
    per_pixel = jax.nn.logsumexp(logits, axis=-1) - jnp.sum(targets * logits, axis=-1)
    return jnp.mean(jnp.asarray(class_weights, jnp.float32)[indices[..., 0]] * per_pixel)


def annealed_mean(logits: jax.Array, centers: jax.Array, temperature: float) -> jax.Array:
    """Network a*b* [..., 2] decoded from ``logits`` [..., Q]: the mean of the centres under
    ``softmax(logits / temperature)``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    probs = jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    ab = probs @ (jnp.asarray(centers, jnp.float32) / color.AB_SCALE)
    return jnp.clip(ab, -1.0, 1.0)
