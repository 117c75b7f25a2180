"""The one image decoder of the project (numpy + Pillow): bytes -> uint8 H x W x 3 RGB.

The input pipeline and inference both decode through ``decode_image``, so a photo reaches the
network the same way in training and in use. Every way an image can fail is reported as an
``ImageDecodeError`` whose ``reason`` is a short fixed string (see ``REASONS``).

Conversions: EXIF orientation is applied (``load_photo`` also returns the rest of the EXIF,
for outputs); CMYK, palette (with or without transparency), YCbCr and the like go through
Pillow's RGB conversion; alpha is dropped; grayscale becomes RGB with zero chroma; 16-bit
grayscale is scaled by 255/65535 (16-bit colour PNGs are read by Pillow as their high byte).
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

EMPTY, NOT_AN_IMAGE, CORRUPT, TOO_LARGE = (
    "empty file",
    "not an image",
    "truncated/corrupt",
    "too large",
)
REASONS = (EMPTY, NOT_AN_IMAGE, CORRUPT, TOO_LARGE)

GRAY_CHROMA = 2.0  # mean max(R,G,B) - min(R,G,B) in 0..255 levels at or below which it is gray
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA", "P")  # P: only when it has transparency
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_PROBE_SIDE = 128  # probe_image decodes JPEGs at about this size (DCT scaling)
# Tags that describe the stored pixels (layout, orientation, colour profile), not the photo:
# a decoded photo no longer has them, so they are not carried over to what is made of it.
_PIXEL_LAYOUT_TAGS = frozenset(
    ExifTags.Base[name]
    for name in (
        "NewSubfileType",
        "ImageWidth",
        "ImageLength",
        "BitsPerSample",
        "Compression",
        "PhotometricInterpretation",
        "StripOffsets",
        "Orientation",
        "SamplesPerPixel",
        "RowsPerStrip",
        "StripByteCounts",
        "PlanarConfiguration",
        "Predictor",
        "ColorMap",
        "TileWidth",
        "TileLength",
        "TileOffsets",
        "TileByteCounts",
        "ExtraSamples",
        "SampleFormat",
        "JpegIFOffset",
        "JpegIFByteCount",
        "YCbCrCoefficients",
        "YCbCrSubSampling",
        "YCbCrPositioning",
        "InterColorProfile",
    )
)


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; ``reason`` is one of ``REASONS``, ``name`` the file."""

    def __init__(self, name: str, reason: str, detail: str = "") -> None:
        self.name, self.reason = name, reason
        message = f"{name or '<bytes>'}: {reason}"
        super().__init__(f"{message} ({detail})" if detail else message)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What ``probe_image`` learns: displayed size and mean chroma (0..255 levels)."""

    width: int
    height: int
    chroma: float

    @property
    def gray(self) -> bool:
        """True when the image carries no colour worth learning from."""
        return self.chroma <= GRAY_CHROMA


def open_image(data: bytes, name: str = "") -> Image.Image:
    """``data`` opened lazily (the header read, the pixels not yet decoded); raises
    ``ImageDecodeError`` for an empty file, no picture, a damaged header or a decompression
    bomb."""
    if not data:
        raise ImageDecodeError(name, EMPTY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(name, NOT_AN_IMAGE) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(name, TOO_LARGE, str(err)) from None
    except Exception as err:  # Pillow raises many kinds for a damaged header
        raise ImageDecodeError(name, CORRUPT, f"{type(err).__name__}: {err}") from None


def _sixteen_bit_to_rgb(img: Image.Image) -> np.ndarray:
    levels = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
    gray = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES and (img.mode != "P" or "transparency" in img.info)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Load ``img``, orient it and convert it to uint8 RGB (alpha dropped)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(img)
    if _has_alpha(img):
        img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _decode(img: Image.Image, name: str) -> np.ndarray:
    try:
        return pil_to_rgb(img)
    except ImageDecodeError:
        raise
    except Exception as err:  # truncated data surfaces as OSError, SyntaxError, zlib errors...
        raise ImageDecodeError(name, CORRUPT, f"{type(err).__name__}: {err}") from None


def decode_image(data: bytes, name: str = "") -> np.ndarray:
    """Encoded image bytes -> uint8 array [H, W, 3] RGB; ``name`` only labels errors."""
    with open_image(data, name) as img:
        return _decode(img, name)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """The image file at ``path`` as uint8 [H, W, 3] RGB."""
    return decode_image(Path(path).read_bytes(), name=str(path))


def photo_exif(img: Image.Image) -> bytes | None:
    """The EXIF block of ``img`` (date, camera, ...) for a picture made from its decoded
    pixels: without orientation (already applied) and the stored-pixel layout tags; None when
    nothing is left or the block cannot be read. Call it after decoding: it edits the image's
    EXIF in place."""
    try:
        exif = img.getexif()
        for tag in _PIXEL_LAYOUT_TAGS:
            exif.pop(tag, None)
        return exif.tobytes() if len(exif) else None
    except Exception:  # damaged metadata never costs the photo itself
        return None


def load_photo(path: str | os.PathLike) -> tuple[np.ndarray, bytes | None]:
    """The image file at ``path`` as uint8 [H, W, 3] RGB, and its ``photo_exif``."""
    with open_image(Path(path).read_bytes(), str(path)) as img:
        return _decode(img, str(path)), photo_exif(img)


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean of max(R, G, B) - min(R, G, B) over pixels of a uint8 RGB array, in 0..255 levels."""
    rgb = rgb.astype(np.int16)
    return float(np.mean(rgb.max(axis=-1) - rgb.min(axis=-1)))


def _displayed_size(img: Image.Image, stored_size: tuple[int, int]) -> tuple[int, int]:
    width, height = stored_size
    if img.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def probe_image(data: bytes, name: str = "") -> ImageInfo:
    """Check that ``data`` decodes and measure it, fast: JPEGs decode at reduced size.

    Raises the same ``ImageDecodeError`` that ``decode_image`` would (a reduced JPEG decode
    still reads every byte of the file, so truncation is caught).
    """
    with open_image(data, name) as img:
        stored_size = img.size
        img.draft(img.mode, (_PROBE_SIDE, _PROBE_SIDE))
        rgb = _decode(img, name)
        width, height = _displayed_size(img, stored_size)
    stride = max(1, max(rgb.shape[:2]) // _PROBE_SIDE)
    return ImageInfo(width, height, mean_chroma(rgb[::stride, ::stride]))


def as_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """uint8 RGB [H,W,3] from a PIL image or an array (gray [H,W] or [H,W,1], RGB, RGBA)."""
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
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
