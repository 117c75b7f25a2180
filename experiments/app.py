"""Colorize photos in the browser: ``python -m experiments.app [--model DIR | --workdir RUN]``.

A local web page (Gradio; ``pip install -e ".[app]"``) on http://127.0.0.1:7860 (``--host``,
``--port``; a public link only with ``--share``): upload photos or a folder, set the
temperature, chroma and render size ``experiments.colorize`` takes, compare the gray input,
the result and the original, and download the results at full resolution with their EXIF.
The model (default: the shipped one) is loaded once; requests wait in a queue and run one at a
time through the CLI's own path (``colorjax.inference.uploads``). Nothing is fetched from the
network: Gradio's analytics and update checks are off, and the page uses the system's fonts.
"""

import argparse
import dataclasses
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from experiments.cli import run_cli
from experiments.colorize import SHIPPED_WEIGHTS, add_model_args, load_colorizer

if TYPE_CHECKING:
    from colorjax.inference import Colorizer
    from colorjax.inference.model_card import ModelCard
    from colorjax.inference.uploads import Outcome

OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
DEFAULT_PORT = 7860
PREVIEW_SIDE = 1024  # longest side of the pictures shown in the page (downloads: full size)
KEPT_REQUESTS = 8  # folders of results kept on disk for the page to serve
MAX_UPLOAD = "500mb"
EXAMPLES = ("camera.png", "astronaut.png", "chelsea.png", "coffee.png")  # scikit-image's
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "monospace")
TEMPERATURE_HELP = "of the colour classification: lower is more vivid and riskier, 1 the plain mean"
CHROMA_HELP = "multiplies the predicted colour: 0 gray, below 1 muted, above 1 more colourful"
RENDER_HELP = (
    "longest side at which colour is predicted, then laid onto the full-resolution photo: "
    "smaller is calmer, larger resolves finer but patchier colour"
)
PAGE_CSS = "#limitations li, #limitations p { font-size: var(--text-sm) !important; }"


def _import_gradio():
    """Gradio, with everything that would reach the network switched off."""
    os.environ.update(OFFLINE_ENVIRONMENT)
    try:
        import gradio
    except ImportError:
        raise ImportError(
            'the web app needs Gradio: pip install -e ".[app]" (from the colorjax checkout)'
        ) from None
    return gradio


@dataclasses.dataclass(frozen=True)
class Shown:
    """One colorized photo as the page shows it: preview files and the upload's name."""

    name: str
    gray: str
    colour: str
    original: str | None


def _preview(path: Path) -> np.ndarray:
    """The picture at ``path`` at most ``PREVIEW_SIDE`` wide or high, uint8 RGB, shrunk before
    it is converted (JPEGs are decoded at reduced size)."""
    from colorjax.imaging.decoding import pil_to_rgb

    with Image.open(path) as image:
        image.draft(image.mode, (PREVIEW_SIDE, PREVIEW_SIDE))
        image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
        return pil_to_rgb(image)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """What the model sees of ``rgb``: its CIE lightness, as a gray RGB picture."""
    from colorjax.color import full_resolution_l, lab_to_rgb8

    lab = np.zeros((*rgb.shape[:2], 3), np.float32)
    lab[..., 0] = full_resolution_l(rgb)
    return lab_to_rgb8(lab)


def _save(rgb: np.ndarray, path: Path) -> str:
    Image.fromarray(rgb).save(path, compress_level=1)
    return str(path)


def show_outcome(outcome: "Outcome", folder: Path) -> Shown:
    """Preview files of a colorized upload in ``folder``; the original only when it had
    colour."""
    from colorjax.imaging.decoding import GRAY_CHROMA, mean_chroma

    folder.mkdir(parents=True)
    upload = _preview(outcome.upload.path)
    original = None
    if mean_chroma(upload) > GRAY_CHROMA:
        original = _save(upload, folder / "original.png")
    gray = _save(_gray(upload), folder / "gray.png")
    colour = _save(_preview(outcome.output), folder / "colour.png")
    return Shown(outcome.upload.name, gray, colour, original)


def settings_text(colorizer: "Colorizer", chroma: float, render_size: int | None, fmt: str) -> str:
    """The settings a request ran with, in a few words."""
    settings = [f"chroma {chroma:g}", f"render size {render_size or colorizer.render_size} px"]
    if colorizer.head.classification:
        settings.insert(0, f"temperature {colorizer.model.temperature:g}")
    return ", ".join([*settings, fmt.upper()])


def status_text(outcomes: Sequence["Outcome"], settings: str) -> str:
    """The page's report on a request: how many photos were colorized, then each upload."""
    done = sum(o.output is not None for o in outcomes)
    head = f"**Colorized {done} of {len(outcomes)}** ({settings})."
    if not done:
        head = f"**Nothing colorized** ({settings})."
    lines = [head, ""]
    for outcome in outcomes:
        if outcome.error:
            lines.append(f"- ✗ `{outcome.upload.name}`: {outcome.error}")
        else:
            notes = f" ({'; '.join(outcome.notes)})" if outcome.notes else ""
            lines.append(f"- ✓ `{outcome.upload.name}`{notes}")
    return "\n".join(lines)


class ColorizeApp:
    """What the page does, without the page: one model, a colorizer per temperature asked
    for, a folder per request in ``workspace`` (the latest ``KEPT_REQUESTS`` kept)."""

    def __init__(self, colorizer: "Colorizer", workspace: Path) -> None:
        self.colorizer = colorizer
        self.workspace = workspace
        workspace.mkdir(parents=True, exist_ok=True)
        self._by_temperature = {colorizer.model.temperature: colorizer}

    def colorizer_at(self, temperature: float | None) -> "Colorizer":
        """The model decoding at ``temperature`` (compiled once per value, kept)."""
        if temperature is None or not self.colorizer.head.classification:
            return self.colorizer
        temperature = round(float(temperature), 3)
        if temperature not in self._by_temperature:
            self._by_temperature[temperature] = self.colorizer.with_temperature(temperature)
        return self._by_temperature[temperature]

    def _request_folder(self) -> Path:
        folders = sorted(self.workspace.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in folders[: max(0, len(folders) - KEPT_REQUESTS + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.workspace))

    def colorize(
        self,
        paths: Sequence[str],
        temperature: float | None,
        chroma: float,
        render_size: int | None,
        fmt_name: str,
    ) -> tuple[list["Outcome"], list[Shown], str]:
        """Colorize the uploaded files: (outcomes, previews of the colorized ones, status)."""
        from colorjax.imaging import writing
        from colorjax.inference import uploads
        from colorjax.training.hostmem import release_freed_memory

        colorizer = self.colorizer_at(temperature)
        fmt = writing.OutputFormat(fmt_name)
        folder = self._request_folder()
        files = [uploads.Upload(Path(p), Path(p).name) for p in paths]
        render_size, chroma = (int(render_size) if render_size else None), float(chroma)
        outcomes = uploads.colorize_uploads(
            colorizer,
            files,
            folder / "results",
            render_size=render_size,
            chroma=chroma,
            fmt=fmt,
            progress=True,
        )
        release_freed_memory()  # the pipeline's threads' free pages: not kept for previews
        shown = []
        for i, outcome in enumerate(outcomes):
            if outcome.output is not None:
                shown.append(show_outcome(outcome, folder / "previews" / str(i)))
                release_freed_memory()
        settings = settings_text(colorizer, chroma, render_size, fmt_name)
        return outcomes, shown, status_text(outcomes, settings)


def model_facts(colorizer: "Colorizer", source: str) -> str:
    """One line on the loaded generator, from the generator itself."""
    import jax

    parameters = sum(np.size(leaf) for leaf in jax.tree.leaves(colorizer.params))
    head = "regression head"
    if colorizer.head.classification:
        head = f"colour classification head (temperature {colorizer.model.temperature:g})"
    return (
        f"{source}: {parameters:,} parameters, {head}; colour predicted at "
        f"{colorizer.render_size} px and laid onto the full-resolution lightness"
    )


def header_markdown(card: "ModelCard", facts: str) -> str:
    """The page's title, the model card's title and summary, and the model's facts."""
    named = " — ".join(part for part in (card.title and f"**{card.title}**", card.summary) if part)
    return "\n\n".join(
        part
        for part in ("# colorjax: colorize old photos", named, f"<small>{facts}</small>")
        if part
    )


def example_photos() -> list[str]:
    """A few photos that ship with scikit-image (a dependency): one gray, some in colour."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    return [str(folder / name) for name in EXAMPLES if (folder / name).is_file()]


def _compared(shown: Shown | None, gr) -> tuple:
    """The before/after slider, gray, colorized and original pictures of one photo."""
    if shown is None:
        return None, None, None, gr.update(value=None, visible=False)
    original = gr.update(value=shown.original, visible=shown.original is not None)
    return (shown.gray, shown.colour), shown.gray, shown.colour, original


def _folder_images(paths: Sequence[str] | None) -> list[str]:
    """The photos among a folder's files, as ``experiments.colorize`` finds them."""
    from colorjax.imaging.decoding import IMAGE_EXTENSIONS

    return [p for p in paths or () if Path(p).suffix.lower() in IMAGE_EXTENSIONS]


def build_page(app: ColorizeApp, header: str, limitations: Sequence[str]):
    """The Gradio page: uploads and controls on the left, the comparison and downloads on the
    right; ``colorize`` is its API endpoint."""
    gr = _import_gradio()
    colorizer = app.colorizer
    nothing = "**Nothing to colorize:** upload a photo first (or click an example)."
    per_photo = gr.Progress(track_tqdm=True)  # follows colorize_files' progress bar
    examples = example_photos()

    def colorize(paths, temperature, chroma, render_size, fmt_name, progress=per_photo):
        """The page's request (``progress``: Gradio reports it while this runs)."""
        if not paths:
            gr.Warning(nothing.replace("**", ""))
            return nothing, *_compared(None, gr), [], None, []
        outcomes, shown, status = app.colorize(paths, temperature, chroma, render_size, fmt_name)
        failed = [o.upload.name for o in outcomes if o.error]
        if failed:
            gr.Warning(f"Not colorized: {', '.join(failed)} (reasons in the list)")
        gallery = [(s.colour, s.name) for s in shown]
        files = [str(o.output) for o in outcomes if o.output is not None] or None
        return status, *_compared(shown[0] if shown else None, gr), gallery, files, shown

    def pick(shown, selected: gr.SelectData):
        return _compared(shown[selected.index], gr)

    with gr.Blocks(title="colorjax", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(header)
        if limitations:
            with gr.Accordion("Limitations (from the model card)", elem_id="limitations"):
                gr.Markdown("\n".join(f"- {item}" for item in limitations))
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(
                    label="Photos: drop one or several here, or click to choose",
                    file_count="multiple",
                    elem_id="photos",
                )
                folder = gr.UploadButton("Or choose a folder", file_count="directory", size="sm")
                gr.Examples(
                    [[[photo]] for photo in examples],
                    inputs=files,
                    label="Or click an example (scikit-image's photos)",
                    example_labels=[Path(photo).stem for photo in examples],
                )
                temperature = gr.Slider(
                    0.05,
                    1.0,
                    value=colorizer.model.temperature,
                    step=0.01,
                    label="Temperature",
                    info=TEMPERATURE_HELP,
                    visible=colorizer.head.classification,
                )
                chroma = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Chroma", info=CHROMA_HELP)
                render_size = gr.Slider(
                    colorizer.multiple,
                    max(1024, 4 * colorizer.render_size),
                    value=colorizer.render_size,
                    step=colorizer.multiple,
                    label="Render size (px)",
                    info=RENDER_HELP,
                )
                fmt = gr.Radio(
                    [("PNG (lossless)", "png"), ("JPEG (quality 95)", "jpg")],
                    value="png",
                    label="Download as",
                )
                button = gr.Button("Colorize", variant="primary", elem_id="colorize")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="status")
                slider = gr.ImageSlider(
                    label="Before / after: drag across to compare the gray input and the result",
                    type="filepath",
                    elem_id="slider",
                )
                with gr.Row():
                    gray = gr.Image(label="Gray input", type="filepath")
                    colour = gr.Image(label="Colorized", type="filepath", elem_id="result")
                    original = gr.Image(label="Original", type="filepath", visible=False)
                gallery = gr.Gallery(
                    label="All colorized photos: click one to compare it above",
                    columns=6,
                    height=180,
                    fit_columns=False,
                    allow_preview=False,
                    object_fit="contain",
                    elem_id="gallery",
                )
                downloads = gr.File(
                    label="Download at full resolution (EXIF kept)",
                    file_count="multiple",
                    elem_id="downloads",
                )
        shown = gr.State([])
        button.click(
            colorize,
            inputs=[files, temperature, chroma, render_size, fmt],
            outputs=[status, slider, gray, colour, original, gallery, downloads, shown],
            api_name="colorize",
        )
        gallery.select(pick, inputs=shown, outputs=[slider, gray, colour, original])
        folder.upload(_folder_images, inputs=folder, outputs=files)
    return page


def describe_model(args: argparse.Namespace, colorizer: "Colorizer") -> tuple[str, "ModelCard"]:
    """Where the generator came from, in words, and its model card (empty for a run)."""
    from colorjax.inference.model_card import ModelCard, read_model_card

    if args.workdir:
        origin = colorizer.origin
        step, weights = origin["source_step"], origin["weights"]
        return f"run {args.workdir}, step {step} ({weights} weights)", ModelCard()
    folder = Path(args.model) if args.model else SHIPPED_WEIGHTS
    name = f"model {folder}" if args.model else "the shipped model (weights/)"
    return name, read_model_card(folder)


def launch(page, host: str, port: int, share: bool) -> None:
    """Serve ``page`` until interrupted (Ctrl-C or SIGTERM): one request at a time, the others
    queued."""
    gr = _import_gradio()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    theme = gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))
    page.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=share,
        theme=theme,
        css=PAGE_CSS,
        ssr_mode=False,
        max_file_size=MAX_UPLOAD,
        mcp_server=False,
        run_history=False,  # no copies of people's photos in the browser, no bucket to link
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this computer only; 0.0.0.0: all)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: 7860")
    parser.add_argument(
        "--share",
        action="store_true",
        help="also make a temporary public link through Gradio's share servers",
    )
    args = parser.parse_args(argv)
    _import_gradio()
    try:
        colorizer = load_colorizer(
            args.workdir, args.model, args.step, args.weights, args.temperature
        )
    except (ValueError, OSError) as err:
        parser.error(str(err))
    source, card = describe_model(args, colorizer)
    header = header_markdown(card, model_facts(colorizer, source))
    with tempfile.TemporaryDirectory(prefix="colorjax-app-") as workspace:
        page = build_page(ColorizeApp(colorizer, Path(workspace)), header, card.limitations)
        launch(page, args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    run_cli(main, errors=(FileNotFoundError, ValueError, ImportError, OSError))
