"""Folders of photos: every output written once and counted, skips named, pixels and EXIF kept."""

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from test_decoding import broken_cases

from colorjax import inference
from colorjax.imaging import decoding, writing
from colorjax.imaging.output_plan import Job
from colorjax.inference import batch_colorize
from experiments import colorize as colorize_cli

pytestmark = pytest.mark.usefixtures("fast_compilation")
ROOT = Path(__file__).parents[1]
DATE = "1931:05:17 10:20:30"


def _photo(height: int = 30, width: int = 44, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model(colorizer, tmp_path_factory) -> Path:
    return inference.export_bundle(colorizer, tmp_path_factory.mktemp("model"))


def _run(model: Path, *args: str, capsys) -> tuple[int, str, str]:
    status = colorize_cli.main(["--model", str(model), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_cli_counts_what_it_wrote_and_names_what_it_skipped(model, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_photo()).save(photos / "a.jpg")
    Image.fromarray(_photo(seed=1)).convert("L").save(photos / "b.png")
    for name, (data, _) in broken_cases().items():
        (photos / name).write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(_photo(seed=2)).save(out / "b.png")
    command = [sys.executable, "-m", "experiments.colorize", "--model", str(model), str(photos)]
    env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 1 image(s)" in result.stdout and "skipped 4" in result.stdout
    for name, (_, reason) in broken_cases().items():
        assert f"{photos / name}: {reason}" in result.stderr
    assert "--overwrite" in result.stderr
    assert _files(out) == ["a.png", "b.png"]
    assert Image.open(out / "a.png").size == (44, 30)
    assert np.array_equal(np.asarray(Image.open(out / "b.png")), _photo(seed=2))
    status, stdout, _ = _run(model, str(photos), "--out", str(out), "--overwrite", capsys=capsys)
    assert status == 0 and "wrote 2 image(s)" in stdout
    assert not np.array_equal(np.asarray(Image.open(out / "b.png")), _photo(seed=2))


def test_cli_keeps_colliding_outputs_apart(model, tmp_path, capsys):
    for name in ("a/x.jpg", "b/x.jpg", "b/x.png", "c/x.jpg", "c/x.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(seed=len(name))).save(tmp_path / name)
    files = [str(tmp_path / name) for name in ("a/x.jpg", "b/x.jpg", "b/x.png")]
    status, out, _ = _run(model, *files, "--out", str(tmp_path / "out1"), capsys=capsys)
    assert status == 0 and "wrote 3 image(s)" in out
    assert _files(tmp_path / "out1") == ["a/x.png", "b/x_jpg.png", "b/x_png.png"]
    status, out, _ = _run(
        model, str(tmp_path / "c"), "--out", str(tmp_path / "out2"), capsys=capsys
    )
    assert "wrote 2 image(s)" in out and _files(tmp_path / "out2") == ["x_jpg.png", "x_png.png"]


def test_a_failed_write_is_skipped_and_not_counted(model, tmp_path, capsys):
    for name in ("x.jpg", "y.jpg"):
        Image.fromarray(_photo()).save(tmp_path / name)
    (tmp_path / "out" / "y.png").mkdir(parents=True)  # a folder where the file should go
    argv = [str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg"), "--out", str(tmp_path / "out")]
    status, out, err = _run(model, *argv, "--overwrite", capsys=capsys)
    assert status == 0 and "wrote 1 image(s)" in out and "skipped 1" in out
    assert f"{tmp_path / 'y.jpg'}: cannot write" in err
    assert _files(tmp_path / "out") == ["x.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--chroma", "-1"], "--chroma"),
        (["--quality", "80"], "quality"),
        (["--batch-size", "0"], "--batch-size"),
        (["--weights", "raw"], "--weights selects among a --workdir run's weights"),
    ],
)
def test_bad_options_are_refused_before_any_work(model, tmp_path, capsys, argv, message):
    Image.fromarray(_photo()).save(tmp_path / "x.jpg")
    with pytest.raises(SystemExit):
        _run(model, str(tmp_path / "x.jpg"), "--out", str(tmp_path / "out"), *argv, capsys=capsys)
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_batches_give_the_pixels_of_one_by_one(colorizer, tmp_path):
    shapes = [(30, 44), (44, 30), (30, 44), (31, 45), (30, 44), (44, 30), (30, 44)]
    jobs = []
    for index, shape in enumerate(shapes):
        source = tmp_path / f"{index}.png"
        Image.fromarray(_photo(*shape, seed=index)).save(source)
        jobs.append(Job(source, tmp_path / "out" / source.name))
    report = batch_colorize.colorize_files(colorizer, jobs, batch_size=3, chroma=1.5, flip=True)
    assert sorted(report.written) == sorted(job.target for job in jobs) and not report.skipped
    for job in jobs:
        expected = colorizer.colorize(decoding.load_image(job.source), chroma=1.5, flip=True)
        written = np.asarray(Image.open(job.target)).astype(int)
        assert np.abs(written - expected).max() <= 1
        assert np.mean(written != expected) < 0.01


def _dated_rotated_jpeg(path: Path) -> None:
    """A 44 x 30 (w x h) JPEG with a date, a camera and orientation 6 (turn 90 degrees)."""
    image = Image.fromarray(_photo())
    exif = image.getexif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Kodak"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = DATE
    image.save(path, exif=exif)


@pytest.mark.parametrize("name", list(writing.FORMATS))
def test_exif_date_and_camera_survive_and_orientation_is_not_applied_twice(
    colorizer, tmp_path, name
):
    _dated_rotated_jpeg(tmp_path / "scan.jpg")
    fmt = writing.OutputFormat(name)
    job = Job(tmp_path / "scan.jpg", tmp_path / f"out{fmt.suffix}")
    assert batch_colorize.colorize_files(colorizer, [job], fmt=fmt).written == [job.target]
    with Image.open(job.target) as written:
        assert written.format == writing.FORMATS[name]
        assert written.size == (30, 44)  # turned upright once, when read
        exif = written.getexif()
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == DATE
        assert exif[ExifTags.Base.Make] == "Kodak"
        assert exif.get(ExifTags.Base.Orientation, 1) == 1
        assert decoding.pil_to_rgb(written).shape == (44, 30, 3)


def test_photos_in_flight_are_bounded_by_the_batch_not_the_folder(colorizer, tmp_path, monkeypatch):
    jobs = []
    for index in range(24):
        source = tmp_path / f"{index}.png"
        Image.fromarray(_photo(20 + index % 2 * 8, 30, seed=index)).save(source)
        jobs.append(Job(source, tmp_path / "out" / source.name))
    held, peak, lock = [0], [0], threading.Lock()
    decode, write = batch_colorize._decode, batch_colorize._write

    def counting_decode(*args, **kwargs):
        with lock:
            held[0] += 1
            peak[0] = max(peak[0], held[0])
        return decode(*args, **kwargs)

    def counting_write(*args, **kwargs):
        result = write(*args, **kwargs)
        with lock:
            held[0] -= 1
        return result

    monkeypatch.setattr(batch_colorize, "_decode", counting_decode)
    monkeypatch.setattr(batch_colorize, "_write", counting_write)
    report = batch_colorize.colorize_files(colorizer, jobs, batch_size=2, workers=1)
    assert len(report.written) == 24 and held[0] == 0
    assert peak[0] <= 6 * 2 + 2 * 1


def test_cli_decodes_a_classification_model_at_the_temperature_asked(tmp_path, capsys):
    from test_heads import MODEL, _classifier_variables

    from colorjax.config import ModelConfig

    model = ModelConfig(**{**MODEL.__dict__, "head": "classification"})
    variables = dict(_classifier_variables(model))
    params = variables.pop("params")
    classifier = inference.Colorizer(model, params, variables, render_size=32)
    bundle = inference.export_bundle(classifier, tmp_path / "model")
    Image.fromarray(_photo()).save(tmp_path / "x.png")
    argv = [str(tmp_path / "x.png"), "--temperature", "0.05", "--out", str(tmp_path / "out")]
    status, out, _ = _run(bundle, *argv, capsys=capsys)
    assert status == 0 and "wrote 1 image(s)" in out
    written = np.asarray(Image.open(tmp_path / "out" / "x.png")).astype(int)
    photo = decoding.load_image(tmp_path / "x.png")
    colder = classifier.with_temperature(0.05).colorize(photo).astype(int)
    assert np.abs(written - colder).max() <= 1
    assert np.abs(written - classifier.colorize(photo).astype(int)).max() > 1
