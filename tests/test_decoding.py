"""The one decoder: every awkward file kind decodes to uint8 RGB or fails with a reason."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from colorjax.imaging import decoding


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def colorful(height: int = 24, width: int = 32) -> np.ndarray:
    """A smooth image with strong chroma: red across, blue down."""
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / max(width - 1, 1)
    blue = 255 * y / max(height - 1, 1)
    return np.stack([red, np.full_like(red, 60.0), blue], axis=-1).astype(np.uint8)


def png_rgb16(rgb16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = rgb16.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (6, 4))
    image.putpalette([0, 0, 0, 200, 30, 30, 30, 30, 200] + [0] * (253 * 3))
    image.putdata([1, 2, 0] * 8)
    return encode(image, "PNG", transparency=0)


def exif_rotated_jpeg() -> bytes:
    """A 40 x 20 (w x h) JPEG whose EXIF says: rotate 90 degrees to display (orientation 6)."""
    image = Image.fromarray(colorful(20, 40))
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif)


def decodable_cases() -> dict[str, tuple[bytes, bool]]:
    """File name -> (bytes, gray) for every kind of image that must decode."""
    photo = Image.fromarray(colorful())
    gray16 = (np.arange(24 * 32).reshape(24, 32) * 80).astype(np.uint16)
    return {
        "photo.jpg": (encode(photo, "JPEG", quality=95), False),
        "photo.png": (encode(photo, "PNG"), False),
        "photo.webp": (encode(photo, "WEBP", lossless=True), False),
        "photo.tiff": (encode(photo, "TIFF"), False),
        "photo.bmp": (encode(photo, "BMP"), False),
        "cmyk.jpg": (encode(Image.new("CMYK", (16, 16), (10, 200, 30, 5)), "JPEG"), False),
        "deep16.png": (png_rgb16(colorful().astype(np.uint16) * 257), False),
        "gray16.png": (encode(Image.fromarray(gray16), "PNG"), True),
        "palette.png": (palette_png_with_transparency(), False),
        "rgba.png": (encode(Image.fromarray(colorful()).convert("RGBA"), "PNG"), False),
        "gray.png": (encode(photo.convert("L"), "PNG"), True),
        "tiny.png": (encode(Image.new("RGB", (1, 1), (250, 20, 20)), "PNG"), False),
        "rotated.jpg": (exif_rotated_jpeg(), False),
    }


def broken_cases() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, expected reason) for files that cannot decode."""
    jpeg = encode(Image.fromarray(colorful(64, 64)), "JPEG")
    return {
        "zero.jpg": (b"", decoding.EMPTY),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], decoding.CORRUPT),
        "notes.png": (b"this is a text file, not a picture\n" * 4, decoding.NOT_AN_IMAGE),
    }


@pytest.mark.parametrize("name", sorted(decodable_cases()))
def test_every_kind_decodes_to_uint8_rgb(name):
    data, gray = decodable_cases()[name]
    image = decoding.decode_image(data, name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    info = decoding.probe_image(data, name)
    assert (info.height, info.width) == image.shape[:2]
    assert info.gray == gray


@pytest.mark.parametrize("name", sorted(broken_cases()))
def test_broken_files_raise_with_reason_and_name(name):
    data, reason = broken_cases()[name]
    for decoder in (decoding.decode_image, decoding.probe_image):
        with pytest.raises(decoding.ImageDecodeError, match=name) as caught:
            decoder(data, name)
        assert caught.value.reason == reason
        assert isinstance(caught.value, ValueError)


def test_pixel_values_survive_conversion():
    cases = decodable_cases()
    expected = colorful()
    for name in ("photo.png", "photo.webp", "photo.tiff", "photo.bmp", "rgba.png"):
        np.testing.assert_array_equal(decoding.decode_image(cases[name][0]), expected, name)
    deep = decoding.decode_image(cases["deep16.png"][0]).astype(int)
    assert np.abs(deep - expected).max() <= 1
    cmyk = decoding.decode_image(cases["cmyk.jpg"][0]).astype(int)
    assert np.abs(cmyk[8, 8] - [240, 50, 220]).max() <= 6
    gray16 = decoding.decode_image(cases["gray16.png"][0])
    assert gray16.max() == round((24 * 32 - 1) * 80 * 255 / 65535)  # scaled, not clipped
    assert (gray16[..., 0] == gray16[..., 1]).all() and (gray16[..., 1] == gray16[..., 2]).all()
    palette = decoding.decode_image(cases["palette.png"][0])
    np.testing.assert_array_equal(palette[0, :3], [[200, 30, 30], [30, 30, 200], [0, 0, 0]])
    np.testing.assert_array_equal(decoding.decode_image(cases["tiny.png"][0]), [[[250, 20, 20]]])


def test_exif_orientation_is_applied():
    image = decoding.decode_image(exif_rotated_jpeg())
    assert image.shape == (40, 20, 3)
    info = decoding.probe_image(exif_rotated_jpeg())
    assert (info.width, info.height) == (20, 40)


def test_load_image_reads_files(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(decodable_cases()["photo.png"][0])
    np.testing.assert_array_equal(decoding.load_image(path), colorful())
    (tmp_path / "bad.jpg").write_bytes(b"")
    with pytest.raises(decoding.ImageDecodeError, match=r"bad\.jpg"):
        decoding.load_image(tmp_path / "bad.jpg")


def test_extensions_cover_the_supported_formats():
    assert set(decoding.IMAGE_EXTENSIONS) == {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
    }
