"""The colour-bin prior of a training source, for the classification head's rebalancing.

The prior is the mean soft encoding (``colorbins``) of the training crops' a*b* at the
resolution of the logits, over up to ``PRIOR_IMAGES`` crops drawn as training draws them. It is
computed once per data source and kept in ``WORKDIR/color_prior.json`` with what it was computed
from; a resumed run reads it back, so its loss weights are the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color, data, heads
from colorjax.config import Config
from colorjax.heads import colorbins

PRIOR_FILE = "color_prior.json"
PRIOR_IMAGES = 4096  # crops the prior is estimated from (at most one pass over the images)
PRIOR_SEED_OFFSET = 7919  # the crops differ from the first training batches


def prior_key(config: Config, num_bins: int) -> dict:
    """What a cached prior must have been computed from to be reused."""
    return {
        "source": config.data.source,
        "image_size": config.data.image_size,
        "depth": config.model.depth,
        "grid": colorbins.GRID,
        "bins": num_bins,
    }


def compute_prior(config: Config, head: heads.ChromaHead) -> tuple[np.ndarray, int]:
    """The bin prior [Q] of ``config.data``'s training crops and how many crops it saw."""
    pipeline = data.pipeline_from_config(
        config.data, train=True, seed=config.train.seed + PRIOR_SEED_OFFSET
    )
    batch_size = pipeline.local_batch_size
    images = min(PRIOR_IMAGES, max(pipeline.stats.train or 0, batch_size))
    num_bins = len(head.centers)

    @jax.jit
    def batch_histogram(rgb: jax.Array) -> jax.Array:
        _, ab = color.rgb8_to_network(rgb)
        indices, weights = colorbins.soft_encode(heads.half_resolution(ab, head.depth), head.table)
        return colorbins.soft_histogram(indices, weights, num_bins)

    total = jnp.zeros(num_bins, jnp.float32)
    stream = pipeline.as_numpy()
    for _ in range(math.ceil(images / batch_size)):
        total = total + batch_histogram(next(stream)["rgb"])
    counts = np.asarray(total, np.float64)
    return counts / counts.sum(), math.ceil(images / batch_size) * batch_size


def load_or_compute_prior(
    config: Config, workdir: str | Path, head: heads.ChromaHead
) -> tuple[np.ndarray, str]:
    """The prior cached in ``workdir`` if it matches ``config``, else computed and cached
    (by process 0); also a one-line note of which it was."""
    path = Path(workdir) / PRIOR_FILE
    key = prior_key(config, len(head.centers))
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return np.asarray(cached["prior"], np.float64), f"colour prior read from {path}"
    prior, crops = compute_prior(config, head)
    if jax.process_index() == 0:
        record = {"key": key, "crops": crops, "prior": prior.tolist()}
        path.write_text(json.dumps(record) + "\n")
    return prior, f"colour prior of {config.data.source} computed from {crops} crops: {path}"


def class_weights(config: Config, workdir: str | Path) -> tuple[np.ndarray, str]:
    """The classification head's rebalancing weights [Q] for a run, and the prior's note."""
    head = heads.ChromaHead("classification", depth=config.model.depth)
    prior, note = load_or_compute_prior(config, workdir, head)
    return colorbins.rebalancing_weights(prior, config.train.prior_mix), note
