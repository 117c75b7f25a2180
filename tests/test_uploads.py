"""Uploads: each file colorized through the CLI's pipeline or refused with a plain reason;
model cards read for their title, summary and limitations."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from test_decoding import colorful, decodable_cases

from colorjax.imaging import writing
from colorjax.inference import batch_colorize, uploads
from colorjax.inference.model_card import parse_model_card, read_model_card

pytestmark = pytest.mark.usefixtures("fast_compilation")
ROOT = Path(__file__).parents[1]
DATE = "1931:05:17 10:20:30"


def dated_photo(path: Path, height: int = 48, width: int = 64) -> Path:
    """A colourful JPEG with a date in its EXIF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(colorful(height, width))
    exif = image.getexif()
    exif[ExifTags.Base.DateTime] = DATE
    image.save(path, quality=95, exif=exif)
    return path


def _bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def awkward_uploads() -> dict[str, tuple[bytes, str, bool]]:
    """File name -> (content, what the person is told, whether it is colorized)."""
    jpeg = _bytes(Image.fromarray(colorful(48, 64)), "JPEG")
    frames = [Image.fromarray(np.full((40, 60, 3), 80 * i, np.uint8)) for i in range(3)]
    gray16 = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)
    return {
        "notes.jpg": (b"a text file, not a picture\n" * 8, "not an image", False),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt", False),
        "empty.jpg": (b"", "the file is empty", False),
        "dot.png": (_bytes(Image.new("RGB", (1, 1)), "PNG"), "1x1 pixels: too small", False),
        "cmyk.tif": (
            _bytes(Image.fromarray(colorful(40, 60)).convert("CMYK"), "TIFF"),
            "CMYK: converted to RGB",
            True,
        ),
        "scan16.tif": (
            _bytes(Image.fromarray(gray16), "TIFF"),
            "16 bits per sample: reduced to 8",
            True,
        ),
        "animated.gif": (
            _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
            "3 frames: the first one is colorized",
            True,
        ),
    }


def write_uploads(folder: Path, names) -> list[uploads.Upload]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in names:
        (folder / name).write_bytes(awkward_uploads()[name][0])
        files.append(uploads.Upload(folder / name, name))
    return files


def test_every_upload_gets_an_outcome_in_order(colorizer, tmp_path):
    good = uploads.Upload(dated_photo(tmp_path / "in" / "old.jpg"), "old.jpg")
    files = [*write_uploads(tmp_path / "in", awkward_uploads()), good]
    outcomes = uploads.colorize_uploads(
        colorizer, files, tmp_path / "out", fmt=writing.OutputFormat("jpg")
    )
    assert [o.upload for o in outcomes] == files
    for outcome in outcomes[:-1]:
        _, told, colorized = awkward_uploads()[outcome.upload.name]
        message = " ".join(outcome.notes) if colorized else outcome.error
        assert told in message, outcome
        assert (outcome.output is not None) == colorized
    last = outcomes[-1]
    assert last.error is None and last.output == tmp_path / "out" / "old.jpg"
    with Image.open(last.output) as result:
        assert result.size == (64, 48) and result.getexif()[ExifTags.Base.DateTime] == DATE


def test_uploads_go_through_the_cli_pipeline(colorizer, tmp_path, monkeypatch):
    calls = []
    real = batch_colorize.colorize_files

    def spy(colorizer, jobs, **options):
        calls.append([job.source for job in jobs])
        return real(colorizer, jobs, **options)

    monkeypatch.setattr(batch_colorize, "colorize_files", spy)
    files = write_uploads(tmp_path / "in", ["notes.jpg", "cmyk.tif"])
    uploads.colorize_uploads(colorizer, files, tmp_path / "out", chroma=1.5)
    assert calls == [[tmp_path / "in" / "cmyk.tif"]]


def test_uploads_with_one_name_get_distinct_outputs(colorizer, tmp_path):
    files = [uploads.Upload(dated_photo(tmp_path / folder / "x.jpg"), "x.jpg") for folder in "ab"]
    outcomes = uploads.colorize_uploads(colorizer, files, tmp_path / "out")
    outputs = [o.output for o in outcomes]
    assert len(set(outputs)) == 2 and all(p.is_file() and p.suffix == ".png" for p in outputs)


@pytest.mark.parametrize(
    "name, notes",
    [
        ("photo.jpg", ()),
        ("deep16.png", ("16 bits per sample: reduced to 8",)),
        ("rgba.png", ("transparency dropped",)),
        ("palette.png", ("transparency dropped",)),
        ("cmyk.jpg", ("CMYK: converted to RGB",)),
    ],
)
def test_conversion_notes_name_what_reading_changes(name, notes):
    with Image.open(io.BytesIO(decodable_cases()[name][0])) as image:
        assert uploads.conversion_notes(image) == notes


CARD = """# A colorizer

A small U-Net that colours faces. It was trained for an hour.

| table | row |
|---|---|

## Known limitations

- Skies go green
  on cloudy days.
- Nothing else is known.

## Figures

- not a limitation
"""


def test_model_card_summary_is_the_first_sentence_and_limitations_the_list():
    card = parse_model_card(CARD)
    assert card.title == "A colorizer"
    assert card.summary == "A small U-Net that colours faces."
    assert card.limitations == ("Skies go green on cloudy days.", "Nothing else is known.")


def test_generator_json_fields_come_before_the_readme(tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    (tmp_path / "generator.json").write_text(json.dumps({"summary": "Colours old scans."}))
    card = read_model_card(tmp_path)
    assert card.summary == "Colours old scans." and card.title == "A colorizer"
    assert len(card.limitations) == 2
    assert read_model_card(tmp_path / "nothing") == parse_model_card("")


def test_the_shipped_model_has_a_card():
    card = read_model_card(ROOT / "weights")
    assert card.title and card.summary and card.limitations
    assert all("\n" not in item for item in (card.summary, *card.limitations))
