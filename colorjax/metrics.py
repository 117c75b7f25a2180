"""Colorization quality metrics on RGB images in [0, 1] (float arrays [H, W, 3]).

PSNR and SSIM compare a colorized image with the ground truth (both share the ground-truth L
when they come from this codebase); colorfulness is Hasler & Susstrunk (2003) on 0-255 sRGB:
rg = R - G, yb = (R + G) / 2 - B, M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2),
with signed (not absolute) opponent values, so a gray image scores exactly 0.

Two metrics see the failures of GAN colorizers, both in CIE Lab (D65), chroma = sqrt(a^2 + b^2):

- ``tint``: mean chroma of the output where the ground truth is neutral (chroma below
  ``NEUTRAL_CHROMA``: white, gray and black areas), the pink-on-white failure. Lower is better;
  the gray image scores 0 and the ground truth scores its own (small) value. An image without
  neutral pixels has nothing to measure: ``nan``, which ``mean_metrics`` leaves out.
- ``blob``: fraction of pixels whose output chroma is at least ``BLOB_CHROMA_EXCESS`` above the
  truth's and whose ab is more than ``BLOB_AB_DISTANCE`` from the truth's: spurious patches of
  colour. Lower is better; the gray image and the ground truth score 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from skimage import color as skcolor
from skimage.metrics import structural_similarity

AB_RANGE = 110.0
HISTOGRAM_BINS = 32
NEUTRAL_CHROMA = 5.0  # tint: ground-truth pixels below this chroma are neutral
BLOB_CHROMA_EXCESS = 20.0  # blob: output chroma at least this much above the truth's ...
BLOB_AB_DISTANCE = 30.0  # ... and ab more than this far from the truth's


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]; ``inf`` when they are identical."""
    mse = float(np.mean((np.asarray(prediction, np.float64) - np.asarray(target, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity of Wang et al. (2004): Gaussian window (sigma 1.5), mean over the
    RGB channels (scikit-image; the same numbers as dm-pix without a compile per image shape)."""
    return float(
        structural_similarity(
            np.asarray(target, np.float32),
            np.asarray(prediction, np.float32),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Susstrunk colorfulness of an image in [0, 1] (computed on the 0-255 scale)."""
    rgb = np.asarray(rgb, np.float64) * 255.0
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    spread = math.sqrt(rg.std() ** 2 + yb.std() ** 2)
    offset = math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return spread + 0.3 * offset


def _lab(rgb: np.ndarray) -> np.ndarray:
    return skcolor.rgb2lab(np.clip(np.asarray(rgb, np.float64), 0.0, 1.0))


def _chroma(lab: np.ndarray) -> np.ndarray:
    return np.hypot(lab[..., 1], lab[..., 2])


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean CIE Lab chroma sqrt(a^2 + b^2)."""
    return float(np.mean(_chroma(_lab(rgb))))


def chroma_ratio(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean chroma of the prediction over that of the ground truth (1 = as saturated)."""
    reference = mean_chroma(target)
    return mean_chroma(prediction) / reference if reference > 0 else math.nan


def _tint_of_lab(prediction: np.ndarray, target: np.ndarray) -> float:
    neutral = _chroma(target) < NEUTRAL_CHROMA
    return float(np.mean(_chroma(prediction)[neutral])) if neutral.any() else math.nan


def _blob_of_lab(prediction: np.ndarray, target: np.ndarray) -> float:
    excess = _chroma(prediction) - _chroma(target) >= BLOB_CHROMA_EXCESS
    difference = prediction[..., 1:] - target[..., 1:]
    off = np.hypot(difference[..., 0], difference[..., 1]) > BLOB_AB_DISTANCE
    return float(np.mean(excess & off))


def tint(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean chroma of ``prediction`` where ``target`` is neutral; ``nan`` if it has no neutral
    pixel (module docstring)."""
    return _tint_of_lab(_lab(prediction), _lab(target))


def blob(prediction: np.ndarray, target: np.ndarray) -> float:
    """Fraction of pixels painted far more colourful than ``target`` and off its ab (module
    docstring)."""
    return _blob_of_lab(_lab(prediction), _lab(target))


def ab_histogram(rgb: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Normalised 2-D histogram of the a*b* values over [-110, 110]^2."""
    lab = _lab(rgb)
    hist, _, _ = np.histogram2d(
        lab[..., 1].ravel(),
        lab[..., 2].ravel(),
        bins=bins,
        range=[[-AB_RANGE, AB_RANGE], [-AB_RANGE, AB_RANGE]],
    )
    return hist / max(hist.sum(), 1.0)


def ab_histogram_intersection(prediction: np.ndarray, target: np.ndarray) -> float:
    """Overlap of the a*b* distributions, 1 = identical, 0 = disjoint."""
    return float(np.minimum(ab_histogram(prediction), ab_histogram(target)).sum())


def ciede2000(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference (scikit-image's implementation)."""
    return float(np.mean(skcolor.deltaE_ciede2000(_lab(target), _lab(prediction))))


def mean_ab(rgb: np.ndarray) -> tuple[float, float]:
    """Mean a* and b*: a global colour cast shows as an offset from the ground truth's."""
    lab = _lab(rgb)
    return float(lab[..., 1].mean()), float(lab[..., 2].mean())


def image_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Every metric of one colorized image against its ground truth."""
    mean_a, mean_b = mean_ab(prediction)
    lab_prediction, lab_target = _lab(prediction), _lab(target)
    return {
        "psnr": psnr(prediction, target),
        "ssim": ssim(prediction, target),
        "colorfulness": colorfulness(prediction),
        "chroma_ratio": chroma_ratio(prediction, target),
        "ab_hist_intersection": ab_histogram_intersection(prediction, target),
        "ciede2000": ciede2000(prediction, target),
        "mean_a": mean_a,
        "mean_b": mean_b,
        "tint": _tint_of_lab(lab_prediction, lab_target),
        "blob": _blob_of_lab(lab_prediction, lab_target),
    }


def quick_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The cheap metrics used for validation during training."""
    lab_prediction, lab_target = _lab(prediction), _lab(target)
    return {
        "psnr": psnr(prediction, target),
        "colorfulness": colorfulness(prediction),
        "tint": _tint_of_lab(lab_prediction, lab_target),
        "blob": _blob_of_lab(lab_prediction, lab_target),
    }


def mean_metrics(per_image: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images, leaving out PSNR's infinities (identical images) and
    ``nan`` (nothing to measure); with no finite value: ``inf`` if any, else ``nan``."""
    keys = per_image[0].keys() if per_image else ()
    means = {}
    for key in keys:
        values = [v[key] for v in per_image]
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            means[key] = float(np.mean(finite))
        else:
            means[key] = math.inf if math.inf in values else math.nan
    return means
