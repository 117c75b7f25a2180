"""Validation during training: a fixed set of held-out images, its gray baseline, and the
metrics of the generator (its EMA weights when the run keeps some) on it."""

from __future__ import annotations

import dataclasses

import numpy as np

from colorjax import color, data, metrics
from colorjax.config import Config
from colorjax.gan import ema
from colorjax.gan.state import GANState


@dataclasses.dataclass
class Validation:
    """A fixed validation set: network inputs, the ground truth and the gray baseline."""

    gray: np.ndarray  # L [N,H,W,1] in [-1, 1]
    real_rgb: np.ndarray  # [N,H,W,3] in [0, 1]
    gray_rgb: np.ndarray
    baseline: dict[str, float]
    sources: list[str]  # each image's source name (a mix: the sources take turns)


def source_means(per_image: list[dict[str, float]], sources: list[str]) -> dict[str, float]:
    """Mean metrics of a validation set. A mix: each source's means as ``<source>/<metric>``,
    and as ``<metric>`` the mean of the sources' means (every source counts the same)."""
    names = list(dict.fromkeys(sources))
    if len(names) == 1:
        return metrics.mean_metrics(per_image)
    by_source = {
        name: metrics.mean_metrics(
            [m for m, s in zip(per_image, sources, strict=True) if s == name]
        )
        for name in names
    }
    means = metrics.mean_metrics(list(by_source.values()))
    for name, values in by_source.items():
        means |= {f"{name}/{key}": value for key, value in values.items()}
    return means


def load_validation(config: Config) -> Validation:
    """The first ``log.eval_images`` images of each source's eval split, with their gray
    baseline."""
    rgb8, sources = data.validation_images(config.data, config.log.eval_images)
    gray, target = map(np.asarray, color.rgb8_to_network(rgb8))
    real_rgb = np.asarray(color.network_to_rgb(gray, target))
    gray_rgb = np.asarray(color.network_to_rgb(gray, np.zeros_like(target)))
    per_image = [metrics.quick_metrics(g, r) for g, r in zip(gray_rgb, real_rgb, strict=True)]
    return Validation(gray, real_rgb, gray_rgb, source_means(per_image, sources), sources)


def validate(generate, state: GANState, validation: Validation) -> tuple[np.ndarray, dict]:
    """Colorize the validation set (with the EMA weights if the run keeps some); return the RGB
    outputs and the mean ``quick_metrics`` (per source too for a mix, ``source_means``)."""
    params, norm_state = ema.generator_weights(state.ema, state.g_params, state.g_state)
    ab = np.asarray(generate(params, norm_state, validation.gray))
    rgb = np.asarray(color.network_to_rgb(validation.gray, ab))
    per_image = [metrics.quick_metrics(p, r) for p, r in zip(rgb, validation.real_rgb, strict=True)]
    return rgb, source_means(per_image, validation.sources)
