"""Colorization quality metrics on RGB images in [0, 1] (float arrays [H, W, 3]).

PSNR and SSIM compare a colorized image with the ground truth (both share the ground-truth L
when they come from this codebase); colorfulness is Hasler & Susstrunk (2003) on 0-255 sRGB:
rg = R - G, yb = (R + G) / 2 - B, M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2),
with signed (not absolute) opponent values, so a gray image scores exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from skimage import color as skcolor
from skimage.metrics import structural_similarity

AB_RANGE = 110.0
HISTOGRAM_BINS = 32


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


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean CIE Lab chroma sqrt(a^2 + b^2)."""
    lab = _lab(rgb)
    return float(np.mean(np.hypot(lab[..., 1], lab[..., 2])))


def chroma_ratio(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean chroma of the prediction over that of the ground truth (1 = as saturated)."""
    reference = mean_chroma(target)
    return mean_chroma(prediction) / reference if reference > 0 else math.nan


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
    return {
        "psnr": psnr(prediction, target),
        "ssim": ssim(prediction, target),
        "colorfulness": colorfulness(prediction),
        "chroma_ratio": chroma_ratio(prediction, target),
        "ab_hist_intersection": ab_histogram_intersection(prediction, target),
        "ciede2000": ciede2000(prediction, target),
        "mean_a": mean_a,
        "mean_b": mean_b,
    }


def quick_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The cheap metrics used for validation during training."""
    return {"psnr": psnr(prediction, target), "colorfulness": colorfulness(prediction)}


def mean_metrics(per_image: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images; PSNR's infinities (identical images) are left out."""
    keys = per_image[0].keys() if per_image else ()
    means = {}
    for key in keys:
        values = [v[key] for v in per_image if math.isfinite(v[key])]
        means[key] = float(np.mean(values)) if values else math.inf
    return means
