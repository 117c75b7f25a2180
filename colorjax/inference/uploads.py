"""Colorize the files a person hands over (a web page's uploads) and say what became of each.

    outcomes = colorize_uploads(colorizer, [Upload(Path("/tmp/x/old.jpg"), "old.jpg")], out)
    [(o.upload.name, o.output, o.error, o.notes) for o in outcomes]

Every file's header is checked first (``check_upload``): one that is no usable photo gets a
reason a person understands, and what will be converted on the way in (CMYK, 16 bits,
transparency, the frames of an animation) is said in notes. The others go through
``batch_colorize.colorize_files``, the command line's own path: decoded once (a damaged one is
reported then), memory bounded by the photo in hand, written at full resolution with the
input's EXIF.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from colorjax.imaging import decoding, output_plan, writing
from colorjax.inference import batch_colorize
from colorjax.inference.colorizer import Colorizer

MIN_SIDE = 16  # pixels: a picture narrower than this holds nothing to colorize
_BITS_PER_SAMPLE_TAG = 258  # TIFF
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _reason_text(reason: str) -> str:
    """A reason a file was skipped (starting with one of ``decoding.REASONS`` when it did not
    decode) as a person reads it."""
    megapixels = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    texts = {
        decoding.EMPTY: "the file is empty (0 bytes)",
        decoding.NOT_AN_IMAGE: "not an image: its content is in no picture format colorjax "
        "reads, whatever its name says",
        decoding.CORRUPT: "truncated or corrupt: the picture data is damaged or ends early",
        decoding.TOO_LARGE: f"too large: more than {megapixels:.0f} megapixels",
    }
    return next((text for known, text in texts.items() if reason.startswith(known)), reason)


class UploadError(ValueError):
    """A file that cannot be colorized: ``name`` is the file's name, ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason
        super().__init__(f"{name}: {reason}")


@dataclasses.dataclass(frozen=True)
class Upload:
    """A file on disk and the name its owner knows it by."""

    path: Path
    name: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of an upload: its colorized file, or the error, and notes on how it was
    read."""

    upload: Upload
    output: Path | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()


def _deep(image: Image.Image) -> bool:
    """True for more than 8 bits per sample (16-bit gray, 16-bit PNG or TIFF channels)."""
    bits = getattr(image, "tag_v2", {}).get(_BITS_PER_SAMPLE_TAG)
    if bits:
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    args = image.tile[0].args if image.tile else ""
    rawmode = args if isinstance(args, str) else next(iter(args), "")
    return image.mode.startswith("I") or ";16" in str(rawmode)


def _frames(image: Image.Image) -> int:
    """How many frames ``image`` holds (1 where they cannot be counted)."""
    try:
        return getattr(image, "n_frames", 1)
    except Exception:  # a damaged animation: its first frame is still tried
        return 1


def conversion_notes(image: Image.Image) -> tuple[str, ...]:
    """What reading ``image`` (an opened, not yet decoded picture) for colorization changes."""
    notes = []
    if image.mode == "CMYK":
        notes.append("CMYK: converted to RGB")
    if _deep(image):
        notes.append("16 bits per sample: reduced to 8")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        notes.append("transparency dropped")
    frames = _frames(image)
    if frames > 1:
        notes.append(f"{frames} frames: the first one is colorized")
    return tuple(notes)


def check_upload(upload: Upload) -> tuple[str, ...]:
    """Notes on how ``upload`` will be read, from its header (its pixels are decoded once,
    by the colorization); raises ``UploadError`` for a file that is empty, no picture, too
    large or too small."""
    try:
        with decoding.open_image(upload.path.read_bytes(), upload.name) as image:
            width, height = image.size
            notes = conversion_notes(image)
    except decoding.ImageDecodeError as err:
        raise UploadError(upload.name, _reason_text(err.reason)) from None
    except OSError as err:
        raise UploadError(upload.name, f"cannot read it: {err.strerror or err}") from None
    if min(width, height) < MIN_SIDE:
        raise UploadError(
            upload.name,
            f"{width}x{height} pixels: too small to colorize (at least {MIN_SIDE} on each side)",
        )
    return notes


def _outcomes_of_run(
    checked: dict[Path, tuple[Upload, tuple[str, ...]]],
    plan: output_plan.Plan,
    report: batch_colorize.Report,
) -> dict[Path, Outcome]:
    """Each checked upload's outcome (by path) once ``colorize_files`` ran the ``plan``."""
    written = set(report.written)
    outcomes = {}
    for job in plan.jobs:
        upload, notes = checked[job.source]
        if job.target in written:
            outcomes[job.source] = Outcome(upload, job.target, notes=notes)
    for skipped in plan.skipped + report.skipped:
        upload = checked[skipped.path][0]
        outcomes[skipped.path] = Outcome(upload, error=_reason_text(skipped.reason))
    return outcomes


def colorize_uploads(
    colorizer: Colorizer,
    uploads: Sequence[Upload],
    out: Path,
    *,
    render_size: int | None = None,
    chroma: float = 1.0,
    fmt: writing.OutputFormat = writing.PNG,
    progress: bool = False,
) -> list[Outcome]:
    """Colorize every upload that passes ``check_upload`` into ``out`` (named after it, as
    ``fmt``, with its EXIF; distinct names as the CLI plans them); one outcome per upload, in
    order. ``render_size`` and ``chroma`` as in ``Colorizer.colorize``."""
    checked, refused = {}, {}
    for upload in uploads:
        try:
            checked[upload.path] = upload, check_upload(upload)
        except UploadError as err:
            refused[upload.path] = Outcome(upload, error=err.reason)
    sources = [output_plan.Source(path, Path(upload.name)) for path, (upload, _) in checked.items()]
    plan = output_plan.plan_outputs(sources, out, fmt.suffix, overwrite=True)
    report = batch_colorize.Report()
    if plan.jobs:
        report = batch_colorize.colorize_files(
            colorizer,
            plan.jobs,
            render_size=render_size,
            chroma=chroma,
            fmt=fmt,
            progress=progress,
        )
    done = {**refused, **_outcomes_of_run(checked, plan, report)}
    return [done[upload.path] for upload in uploads]
