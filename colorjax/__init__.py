"""colorjax: automatic colorization of grayscale photographs with a conditional GAN.

Sub-packages, lowest layer first (no module imports from a layer above its own): ``config``;
``color`` and ``imaging``; ``data`` and ``models``; ``heads``; ``gan``; ``training``;
``inference``; ``evaluation``; ``ablation``. ``metrics`` (pure functions on images) sits with
``color``.
"""

import importlib
import warnings

__version__ = "0.1.0"

# Modules that moved into sub-packages, importable under their old names for existing code.
_MOVED = {
    "ada": "colorjax.gan.ada",
    "augment": "colorjax.gan.augment",
    "balance": "colorjax.gan.d_skip",
    "batch_colorize": "colorjax.inference.batch_colorize",
    "binprior": "colorjax.heads.binprior",
    "checkpoint": "colorjax.training.checkpoint",
    "colorbins": "colorjax.heads.colorbins",
    "ema": "colorjax.gan.ema",
    "encode": "colorjax.imaging.writing",
    "hostmem": "colorjax.training.hostmem",
    "imageio": "colorjax.imaging.decoding",
    "lock": "colorjax.training.lock",
    "losses": "colorjax.gan.losses",
    "optim": "colorjax.gan.optim",
    "output_plan": "colorjax.imaging.output_plan",
    "parallel": "colorjax.training.parallel",
    "regularizers": "colorjax.gan.regularizers",
    "report": "colorjax.training.progress",
    "train": "colorjax.training.loop",
    "viz": "colorjax.imaging.visual",
}


def __getattr__(name: str):
    """``colorjax.<old name>`` (and ``from colorjax import <old name>``) for a moved module,
    with a DeprecationWarning naming its new place."""
    if name not in _MOVED:
        raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
    warnings.warn(f"colorjax.{name} moved to {_MOVED[name]}", DeprecationWarning, stacklevel=2)
    return importlib.import_module(_MOVED[name])
