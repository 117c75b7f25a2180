"""Colorize photos of any size with a trained generator.

The full-resolution lightness L of the input is kept; the chroma ab is predicted at a modest
render size (where the network saw its training statistics), upsampled bilinearly to full size
and recombined with L. This keeps fine detail from L and avoids the colour patches a network
trained on 128 px crops paints when run directly on a large photo.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from colorjax import color, ema, heads, imageio
from colorjax.config import ModelConfig, from_dict
from colorjax.models.unet import generator_from_config
from colorjax.steps import make_generate

BUNDLE_CONFIG = "generator.json"
BUNDLE_WEIGHTS = "generator.msgpack"
RENDER_SCALE = 2  # default render size: this many times the training size
T = TypeVar("T")


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
        self.generator = generator_from_config(self.model)
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


def batches_by_shape(
    items: Iterable[tuple[T, Hashable]], batch_size: int, max_pending: int | None = None
) -> Iterator[tuple[Hashable, list[T]]]:
    """(shape, items) batches of at most ``batch_size`` items sharing a shape, from
    (item, shape) pairs consumed lazily.

    A batch is yielded as soon as it is full; once more than ``max_pending`` items wait for
    their batch to fill, the largest partial batch goes early; the rest go at the end.
    """
    pending: dict[Hashable, list[T]] = {}
    waiting = 0
    for item, shape in items:
        pending.setdefault(shape, []).append(item)
        waiting += 1
        ready = shape
        if len(pending[shape]) < batch_size:
            if max_pending is None or waiting <= max_pending:
                continue
            ready = max(pending, key=lambda s: len(pending[s]))
        waiting -= len(pending[ready])
        yield ready, pending.pop(ready)
    yield from pending.items()


def network_input(lightness: Sequence[np.ndarray], pad_to: int = 0) -> np.ndarray:
    """The generator's input [B,h,w,1] for render-size L planes (0..100) of one shape; gray
    planes pad it to ``pad_to`` rows, so that every batch of a run has one compiled shape."""
    batch = np.asarray(color.normalize_l(np.stack(lightness)), np.float32)[..., None]
    if len(batch) >= pad_to:
        return batch
    return np.concatenate([batch, np.zeros((pad_to - len(batch), *batch.shape[1:]), np.float32)])


def as_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """uint8 RGB [H,W,3] from a PIL image or an array (gray [H,W] or [H,W,1], RGB, RGBA)."""
    if isinstance(image, Image.Image):
        return imageio.pil_to_rgb(image)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        high = 65535.0 if array.dtype == np.uint16 else 1.0
        array = np.clip(np.round(array.astype(np.float64) / high * 255.0), 0, 255)
        array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """sRGB curve as tables: uint8 -> linear, and linear (16-bit steps) -> uint8.

    Full-resolution photos go through these instead of per-pixel powers (tens of millions of
    pixels); both tables come from ``color``'s own curve, so the two paths agree.
    """
    to_linear = np.asarray(color.srgb_to_linear(np.arange(256) / 255.0), np.float32)
    steps = np.arange(LINEAR_STEPS + 1, dtype=np.float64) / LINEAR_STEPS
    to_srgb8 = np.round(np.asarray(color.linear_to_srgb(steps)) * 255.0).astype(np.uint8)
    return to_linear, to_srgb8


LINEAR_STEPS = 65535
LINEAR_FROM_SRGB8, SRGB8_FROM_LINEAR = _lookup_tables()
# Luminance contribution of each channel's 256 levels, so Y is three table look-ups.
_LUMINANCE_FROM_SRGB8 = (LINEAR_FROM_SRGB8[None, :] * color.XYZ_FROM_RGB[1][:, None]).astype(
    np.float32
)
_RGB_FROM_XYZ_WHITE = (color.RGB_FROM_XYZ * np.asarray(color.D65_WHITE)).T.astype(np.float32)
_F_THRESHOLD = np.float32(color.LAB_EPSILON ** (1 / 3))
ROWS_PER_CHUNK = 256  # full-resolution conversions run in bands of rows (cache, peak memory)


def full_resolution_l(rgb: np.ndarray) -> np.ndarray:
    """CIE L* [H,W] (0..100) of a uint8 RGB image: its luminance, whatever its tint."""
    lightness = np.empty(rgb.shape[:2], np.float32)
    for top in range(0, rgb.shape[0], ROWS_PER_CHUNK):
        band = rgb[top : top + ROWS_PER_CHUNK]
        y = sum(np.take(_LUMINANCE_FROM_SRGB8[c], band[..., c]) for c in range(3))
        f = np.where(y > color.LAB_EPSILON, np.cbrt(y), color.LAB_KAPPA * y + color.LAB_OFFSET)
        lightness[top : top + ROWS_PER_CHUNK] = 116.0 * f - 16.0
    return lightness


def _lab_f_inverse(f: np.ndarray) -> np.ndarray:
    return np.where(f > _F_THRESHOLD, f * f * f, (f - color.LAB_OFFSET) / color.LAB_KAPPA)


def lab_to_rgb8(lab: np.ndarray) -> np.ndarray:
    """CIE Lab [..., 3] float32 -> uint8 sRGB (out-of-gamut clipped), via the lookup table."""
    fy = (lab[..., 0] + np.float32(16.0)) / np.float32(116.0)
    f = np.stack(
        [
            fy + lab[..., 1] / np.float32(500.0),
            fy,
            np.maximum(fy - lab[..., 2] / np.float32(200.0), 0.0),
        ],
        -1,
    )
    linear = _lab_f_inverse(f) @ _RGB_FROM_XYZ_WHITE
    np.clip(linear, 0.0, 1.0, out=linear)
    return SRGB8_FROM_LINEAR[(linear * LINEAR_STEPS + 0.5).astype(np.int32)]


def resize_plane(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float [H,W] plane to ``shape`` (area averaging down, bilinear up)."""
    if plane.shape == tuple(shape):
        return plane.astype(np.float32)
    image = Image.fromarray(plane.astype(np.float32), mode="F")
    shrinking = shape[0] < plane.shape[0] or shape[1] < plane.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(image.resize((shape[1], shape[0]), method), np.float32)


def recombine(lightness: np.ndarray, ab_small: np.ndarray, chroma: float = 1.0) -> np.ndarray:
    """Full-size L with network ab (times ``chroma``) upsampled to it -> RGB uint8; colours
    outside the sRGB gamut are clipped."""
    shape = lightness.shape
    scale = np.float32(color.AB_SCALE * chroma)
    a, b = (resize_plane(ab_small[..., c] * scale, shape) for c in range(2))
    rgb = np.empty((*shape, 3), np.uint8)
    for top in range(0, shape[0], ROWS_PER_CHUNK):
        rows = slice(top, top + ROWS_PER_CHUNK)
        rgb[rows] = lab_to_rgb8(np.stack([lightness[rows], a[rows], b[rows]], axis=-1))
    return rgb


def default_render_size(model: ModelConfig, image_size: int) -> int:
    """The training size scaled up modestly, as a multiple of ``2**depth``."""
    multiple = 2**model.depth
    return math.ceil(RENDER_SCALE * image_size / multiple) * multiple


def load_workdir(
    workdir: str | Path, step: int | str | None = None, weights: str | None = None
) -> Colorizer:
    """The generator of a training run (``step``: None or "latest", "best", or a step number;
    ``weights``: "ema" or "raw", by default the EMA weights when the run keeps some).

    "latest" and "best" pass over damaged checkpoints with a warning (the files stay where
    they are); a damaged step asked for by number is a DamagedCheckpointError.
    """
    from colorjax.checkpoint import Checkpoints
    from colorjax.config import load_json

    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} is not a training workdir (no config.json)")
    config = load_json(workdir / "config.json")
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    try:
        chosen, state = _restore_chosen(checkpoints, step, workdir)
    finally:
        checkpoints.close()
    averaged = state.get("ema", {})
    used = ema.resolve_weights(bool(averaged), weights, f"{workdir} (step {chosen})")
    params, norm_state = ema.generator_weights(
        averaged, state["g_params"], state.get("g_state", {}), used
    )
    return Colorizer(
        config.model,
        params,
        norm_state,
        default_render_size(config.model, config.data.image_size),
        origin={"source_workdir": str(workdir), "source_step": chosen, "weights": used},
    )


def _restore_chosen(checkpoints, step: int | str | None, workdir: Path) -> tuple[int, dict]:
    """(step, state) of the checkpoint ``step`` names."""
    from colorjax.checkpoint import DamagedCheckpointError

    steps = checkpoints.all_steps()
    if not steps:
        raise FileNotFoundError(f"{workdir} has no checkpoints")
    if step in (None, "latest", "best"):
        restored = checkpoints.restore_newest(best=step == "best")
        note = restored.fallback_note("using")
        if note:
            warnings.warn(f"{workdir}: {note}", stacklevel=3)
        return restored.step, restored.state
    if not str(step).isdigit():
        raise ValueError(f"checkpoint step must be a number, 'best' or 'latest', got {step!r}")
    if int(step) not in steps:
        raise ValueError(f"{workdir} has no checkpoint at step {step}; saved steps: {steps}")
    try:
        return int(step), checkpoints.restore(step=int(step))
    except DamagedCheckpointError as err:
        raise DamagedCheckpointError(
            f"{err}; saved steps: {steps} ('latest' or 'best' pass over damaged checkpoints)"
        ) from err.__cause__


def export_bundle(
    colorizer: Colorizer, out: str | Path, *, dtype: str = "float32", metadata: dict | None = None
) -> Path:
    """Write the generator's weights (``generator.msgpack``) and what rebuilds it
    (``generator.json``) to ``out``; ``dtype="float16"`` halves the file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variables = {"params": colorizer.params, **colorizer.state}
    stored = jax.tree.map(lambda x: np.asarray(x).astype(dtype), variables)
    (out / BUNDLE_WEIGHTS).write_bytes(flax.serialization.msgpack_serialize(stored))
    description = {
        "model": dataclasses.asdict(colorizer.model),
        "render_size": colorizer.render_size,
        "storage_dtype": dtype,
        **(metadata or {}),
    }
    if colorizer.head.classification:
        description["bins"] = np.asarray(colorizer.head.centers).tolist()
    (out / BUNDLE_CONFIG).write_text(json.dumps(description, indent=2) + "\n")
    return out


def load_bundle(path: str | Path) -> Colorizer:
    """A Colorizer from a folder written by ``export_bundle``."""
    path = Path(path)
    if not (path / BUNDLE_CONFIG).is_file() or not (path / BUNDLE_WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{path} is not a colorjax model folder (needs {BUNDLE_CONFIG} and {BUNDLE_WEIGHTS})"
        )
    description = json.loads((path / BUNDLE_CONFIG).read_text())
    model = from_dict({"model": description["model"]}).model
    variables = flax.serialization.msgpack_restore((path / BUNDLE_WEIGHTS).read_bytes())
    variables = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), variables)
    params = variables.pop("params")
    bins = np.asarray(description["bins"], np.float32) if "bins" in description else None
    return Colorizer(model, params, variables, int(description["render_size"]), bins=bins)
