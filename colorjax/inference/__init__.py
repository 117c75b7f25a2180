"""Colorize photos of any size with a trained generator: ``Colorizer`` (``colorizer``), shape
batching (``shapes``), the full-resolution L and its recombination with the predicted a*b*
(``render``), model folders (``bundle``), a run's checkpoints (``workdir``) and folders of
photos decoded ahead and written behind (``batch_colorize``)."""

from colorjax.color import full_resolution_l, lab_to_rgb8
from colorjax.imaging.decoding import as_rgb
from colorjax.inference.bundle import BUNDLE_CONFIG, BUNDLE_WEIGHTS, export_bundle, load_bundle
from colorjax.inference.colorizer import RENDER_SCALE, Colorizer, default_render_size
from colorjax.inference.render import network_input, recombine, resize_plane
from colorjax.inference.shapes import batches_by_shape
from colorjax.inference.workdir import load_workdir

__all__ = [
    "BUNDLE_CONFIG",
    "BUNDLE_WEIGHTS",
    "RENDER_SCALE",
    "Colorizer",
    "as_rgb",
    "batches_by_shape",
    "default_render_size",
    "export_bundle",
    "full_resolution_l",
    "lab_to_rgb8",
    "load_bundle",
    "load_workdir",
    "network_input",
    "recombine",
    "resize_plane",
]
