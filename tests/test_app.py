"""The web app: its work on a tiny model in-process (no more memory for a photo than the CLI),
then ``python -m experiments.app`` with the shipped model on a loopback port, driven by
gradio_client (a photo comes back at full size with colour; every bad input gets its message
and the next request still works; two requests at once are queued) and in headless Chromium."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from test_decoding import colorful
from test_uploads import DATE, awkward_uploads

from colorjax.imaging import decoding
from colorjax.imaging.output_plan import Job
from colorjax.inference import batch_colorize
from experiments import app

ROOT = Path(__file__).parents[1]
SCREENSHOT = "COLORJAX_APP_SCREENSHOT"  # also save the browser test's screenshot there
STARTUP_SECONDS = 240
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def test_a_photo_costs_the_app_no_more_memory_than_the_cli(colorizer, tmp_path):
    photo = tmp_path / "big.jpg"
    Image.fromarray(colorful(1200, 1800)).save(photo, quality=90)
    job = Job(photo, tmp_path / "cli" / "big.png")
    batch_colorize.colorize_files(colorizer, [job])  # compiles
    peaks = []
    for run in (
        lambda: batch_colorize.colorize_files(colorizer, [job]),
        lambda: app.ColorizeApp(colorizer, tmp_path).colorize([str(photo)], None, 1, None, "png"),
    ):
        tracemalloc.start()
        run()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    cli, web = peaks
    assert web <= 1.15 * cli, f"app {web / 2**20:.0f} MB, CLI {cli / 2**20:.0f} MB"


def test_status_names_every_upload_with_its_fate(colorizer, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.jpg").write_bytes(awkward_uploads()["notes.jpg"][0])
    Image.fromarray(colorful(40, 60)).save(folder / "ok.png")
    paths = [str(folder / "notes.jpg"), str(folder / "ok.png")]
    outcomes, shown, status = app.ColorizeApp(colorizer, tmp_path / "work").colorize(
        paths, None, 1.0, None, "jpg"
    )
    assert status.startswith("**Colorized 1 of 2**") and "✗ `notes.jpg`: not an image" in status
    assert [s.name for s in shown] == ["ok.png"] and shown[0].original is not None
    assert outcomes[1].output.suffix == ".jpg"


def test_a_gray_upload_shows_no_original(colorizer, tmp_path):
    Image.fromarray(colorful(40, 60)).convert("L").save(tmp_path / "gray.png")
    _, shown, _ = app.ColorizeApp(colorizer, tmp_path / "work").colorize(
        [str(tmp_path / "gray.png")], None, 1.0, None, "png"
    )
    assert shown[0].original is None
    with Image.open(shown[0].gray) as gray, Image.open(tmp_path / "gray.png") as upload:
        assert np.abs(np.asarray(gray.convert("L"), int) - np.asarray(upload, int)).max() <= 1


def test_the_page_of_a_regression_model_has_no_temperature_and_no_analytics(colorizer, tmp_path):
    pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")
    work = app.ColorizeApp(colorizer, tmp_path)
    assert work.colorizer_at(0.1) is colorizer
    page = app.build_page(work, "# header", ["a limitation"])
    controls = {c["props"].get("label"): c["props"] for c in page.config["components"]}
    assert controls["Temperature"]["visible"] is False
    assert controls["Render size (px)"]["step"] == colorizer.multiple
    assert page.config["analytics_enabled"] is False


# The app itself, on a loopback port.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the app did not serve {url} within {STARTUP_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m experiments.app`` with its defaults (the shipped model) on a free port."""
    pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")
    folder = tmp_path_factory.mktemp("app")
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "GRADIO_TEMP_DIR": str(folder / "gradio")}
    log = folder / "app.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "experiments.app", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, process, log)
        yield url, process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _client(url: str, downloads: Path):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(url, verbose=False, download_files=str(downloads))


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return _client(server[0], tmp_path_factory.mktemp("downloads"))


def _colorize(client, paths, fmt: str = "png") -> dict:
    from gradio_client import handle_file

    files = [handle_file(str(p)) for p in paths] if paths is not None else None
    names = ("status", "slider", "gray", "colour", "original", "gallery", "downloads")
    values = client.predict(files, 0.2, 1.0, 256, fmt, api_name="/colorize")
    return dict(zip(names, values, strict=True))


def _example_cat(path: Path, size: tuple[int, int] = (120, 80)) -> Path:
    """scikit-image's cat, small, as a JPEG with a date in its EXIF."""
    image = Image.open(app.example_photos()[EXAMPLE_CAT]).convert("RGB").resize(size)
    exif = image.getexif()
    exif[ExifTags.Base.DateTime] = DATE
    image.save(path, quality=95, exif=exif)
    return path


EXAMPLE_CAT = app.EXAMPLES.index("chelsea.png")


def test_a_photo_comes_back_full_size_in_colour_with_its_exif(client, tmp_path):
    result = _colorize(client, [_example_cat(tmp_path / "cat.jpg")])
    assert result["status"].startswith("**Colorized 1 of 1**"), result["status"]
    (download,) = result["downloads"]
    with Image.open(download) as image:
        assert image.size == (120, 80) and image.getexif()[ExifTags.Base.DateTime] == DATE
        assert decoding.mean_chroma(np.asarray(image.convert("RGB"))) > 5
    assert result["original"]["visible"] and result["slider"][1] == result["colour"]


@pytest.mark.parametrize("name", [*sorted(awkward_uploads()), "no upload"])
def test_bad_input_gets_its_message_and_the_next_request_works(client, tmp_path, name):
    if name == "no upload":
        told, colorized, paths = "upload a photo first", False, None
    else:
        content, told, colorized = awkward_uploads()[name]
        (tmp_path / name).write_bytes(content)
        paths = [tmp_path / name]
    result = _colorize(client, paths)
    assert told in result["status"]
    assert bool(result["downloads"]) == colorized
    following = _colorize(client, [_example_cat(tmp_path / "next.jpg")], fmt="jpg")
    assert following["status"].startswith("**Colorized 1 of 1**")
    assert Path(following["downloads"][0]).suffix == ".jpg"


def test_two_requests_at_once_are_queued(server, tmp_path):
    from gradio_client import handle_file

    photos = [_example_cat(tmp_path / f"{i}.jpg", (96 + 8 * i, 64)) for i in range(2)]
    clients = [_client(server[0], tmp_path / f"downloads{i}") for i in range(2)]
    jobs = [
        c.submit([handle_file(str(p))], 0.3, 1.2, 128, "png", api_name="/colorize")
        for c, p in zip(clients, photos, strict=True)
    ]
    for job, photo in zip(jobs, photos, strict=True):
        status, *_, downloads = job.result(timeout=120)
        assert status.startswith("**Colorized 1 of 1**")
        assert Image.open(downloads[0]).size == Image.open(photo).size


def test_it_listens_on_loopback_only(server):
    port = int(server[0].rsplit(":", 1)[1].strip("/"))
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    rows = [
        line.split()
        for table in tables
        if table.exists()
        for line in table.read_text().splitlines()[1:]
    ]
    listening = {
        row[1] for row in rows if row[3] == "0A" and int(row[1].rsplit(":", 1)[1], 16) == port
    }
    assert listening == {f"0100007F:{port:04X}"}


# In a real browser.


def _chromium():
    """A Selenium driver for headless Chromium (skips when the browser is missing)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "no Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver, options, Service(driver)


def test_in_a_browser_a_photo_is_uploaded_and_its_result_shown(server, tmp_path):
    webdriver, options, service = _chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    browser = webdriver.Chrome(service=service, options=options)
    try:
        browser.get(server[0])
        wait = WebDriverWait(browser, 120)
        upload = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#photos input[type=file]"))
        upload.send_keys(app.example_photos()[EXAMPLE_CAT])
        wait.until(lambda b: "chelsea" in b.find_element(By.ID, "photos").text)
        browser.find_element(By.ID, "colorize").click()
        shown = "const i = document.querySelector('#result img'); return i && i.naturalWidth"
        assert wait.until(lambda b: b.execute_script(shown)) > 0
        assert "Colorized 1 of 1" in browser.find_element(By.ID, "status").text
        outside = "return performance.getEntriesByType('resource').map(e => e.name)"
        requests = browser.execute_script(outside)
        assert [r for r in requests if not r.startswith(server[0])] == []
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1280, height + 160)  # the window frame takes some
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(1)  # the last layout after the resize
        assert browser.save_screenshot(str(tmp_path / "app.png"))
    finally:
        browser.quit()
    if os.environ.get(SCREENSHOT):
        shutil.copy(tmp_path / "app.png", os.environ[SCREENSHOT])
