"""Colorize photos of any size with a trained generator.

The full-resolution lightness L of the input is kept; the chroma ab is predicted at a modest
render size (where the network saw its training statistics), upsampled bilinearly to full size
and recombined with L. This keeps fine detail from L and avoids the colour patches a network
trained on 128 px crops paints when run directly on a large photo.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from colorjax import heads
from colorjax.color import full_resolution_l
from colorjax.config import ModelConfig
from colorjax.heads.generate import make_generate
from colorjax.imaging.decoding import as_rgb
from colorjax.inference.render import network_input, recombine, resize_plane
from colorjax.inference.shapes import batches_by_shape

RENDER_SCALE = 2  # default render size: this many times the training size


@dataclasses.dataclass
class Colorizer:
    """A generator ready to colorize: its module, variables and default render size; ``origin``
    says where the weights came from (``load_workdir``: workdir, step, "ema" or "raw"), ``bins``
    are the classification head's colour-bin centres (None: derived, ``colorbins``)."""

    model: ModelConfig
    params: Any
    state: dict
    render_size: int
    origin: dict = dataclasses.field(default_factory=dict)
    bins: np.ndarray | None = None

    def __post_init__(self):
        self.generator = heads.generator_from_config(self.model)
        self.head = heads.ChromaHead(
            self.model.head,
            depth=self.model.depth,
            temperature=self.model.temperature,
            centers=self.bins,
        )
        self._generate = make_generate(self.generator, self.head)

    def with_temperature(self, temperature: float | None) -> Colorizer:
        """This colorizer decoding at ``temperature`` (classification head; None: unchanged)."""
        if temperature is None or temperature == self.model.temperature:
            return self
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        model = dataclasses.replace(self.model, temperature=float(temperature))
        return dataclasses.replace(self, model=model)

    @property
    def multiple(self) -> int:
        """Render sizes are multiples of this (the generator's total downsampling)."""
        return 2**self.model.depth

    def render_shape(self, height: int, width: int, render_size: int | None = None) -> tuple:
        """Shape at which ab is predicted: longer side ``render_size`` (never above the photo's
        own size), both sides rounded to multiples of ``2**depth``."""
        size = render_size or self.render_size
        scale = min(1.0, size / max(height, width))
        return tuple(
            max(self.multiple, round(side * scale / self.multiple) * self.multiple)
            for side in (height, width)
        )

    def predict_ab(self, gray: np.ndarray, flip: bool = False) -> np.ndarray:
        """Network ab [B,h,w,2] in [-1, 1] for network L [B,h,w,1]; ``flip`` averages the
        prediction with that of the mirrored input."""
        ab = np.asarray(self._generate(self.params, self.state, gray))
        if flip:
            mirrored = np.asarray(self._generate(self.params, self.state, gray[:, :, ::-1]))
            ab = 0.5 * (ab + mirrored[:, :, ::-1])
        return ab

    def colorize(
        self,
        image: np.ndarray | Image.Image,
        *,
        render_size: int | None = None,
        flip: bool = False,
        chroma: float = 1.0,
    ) -> np.ndarray:
        """RGB uint8 [H,W,3] colorization of ``image`` (any size, mode or bit depth);
        ``chroma`` multiplies the predicted a*b* (0: gray, above 1: more colourful)."""
        return self.colorize_many([image], render_size=render_size, flip=flip, chroma=chroma)[0]

    def colorize_many(
        self,
        images: Sequence[np.ndarray | Image.Image],
        *,
        render_size: int | None = None,
        flip: bool = False,
        batch_size: int = 8,
        chroma: float = 1.0,
    ) -> list[np.ndarray]:
        """Colorize several images, batching those that share a render shape."""
        lightness = [full_resolution_l(as_rgb(image)) for image in images]
        shapes = ((i, self.render_shape(*l.shape, render_size)) for i, l in enumerate(lightness))
        results: list[np.ndarray | None] = [None] * len(images)
        for shape, chunk in batches_by_shape(shapes, batch_size):
            small = [resize_plane(lightness[i], shape) for i in chunk]
            ab = self.predict_ab(network_input(small), flip)
            for i, ab_small in zip(chunk, ab, strict=True):
                results[i] = recombine(lightness[i], ab_small, chroma)
        return results


def default_render_size(model: ModelConfig, image_size: int) -> int:
    """The training size scaled up modestly, as a multiple of ``2**depth``."""
    multiple = 2**model.depth
    return math.ceil(RENDER_SCALE * image_size / multiple) * multiple
