"""The Colab notebook: stored clean, and run top to bottom on CPU with the demo preset."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from PIL import Image

from colorjax.config import CheckpointConfig
from colorjax.training.checkpoint import Checkpoints

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colorjax_colab.ipynb"
KERNEL = "colorjax-test"
STEPS = 24
# The demo preset, short: every interval fits inside STEPS so each report is written.
OVERRIDES = [
    "train.pretrain_steps=12",
    "log.every=6",
    "log.sample_every=12",
    "log.eval_every=12",
    "log.eval_images=4",
    "ckpt.every=12",
]


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def with_parameters(notebook: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """``notebook`` with papermill's ``injected-parameters`` cell after its ``parameters``
    cell."""
    position = next(
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    injected = nbformat.v4.new_code_cell("\n".join(lines))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(position + 1, injected)
    return notebook


@pytest.fixture
def this_python(tmp_path, monkeypatch) -> str:
    """A kernel spec named ``KERNEL`` that runs ipykernel on this interpreter."""
    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / KERNEL)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    return KERNEL


def gray_photo(path: Path) -> Path:
    """A small grayscale JPEG to colorize."""
    import skimage.data

    path.parent.mkdir(parents=True)
    Image.fromarray(skimage.data.chelsea()).convert("L").resize((96, 72)).save(path)
    return path


def test_notebook_is_stored_without_outputs():
    cells = code_cells(nbformat.read(NOTEBOOK, as_version=4))
    assert [i for i, cell in enumerate(cells) if cell.outputs] == []
    assert [i for i, cell in enumerate(cells) if cell.execution_count is not None] == []


def test_first_code_cell_holds_every_parameter_the_test_sets():
    first = code_cells(nbformat.read(NOTEBOOK, as_version=4))[0]
    assert first.metadata.get("tags") == ["parameters"]
    names = {line.split("=")[0].strip() for line in first.source.splitlines() if "=" in line}
    assert {"PRESET", "STEPS", "WORKDIR", "USE_DRIVE", "PHOTOS", "REPO_URL"} <= names


def test_notebook_runs_end_to_end_on_cpu(tmp_path, this_python, monkeypatch):
    # The kernel and the commands it runs inherit this: numerics are not the point here.
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    workdir = tmp_path / "run"
    photo = gray_photo(tmp_path / "photos" / "cat.jpg")
    parameters = {
        "PRESET": "demo",
        "STEPS": STEPS,
        "OVERRIDES": OVERRIDES,
        "WORKDIR": str(workdir),
        "USE_DRIVE": False,
        "TENSORBOARD": False,
        "EVAL_LIMIT": 2,
        "PHOTOS": str(photo.parent),
    }
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), parameters)
    client = NotebookClient(
        notebook, kernel_name=this_python, timeout=300, resources={"metadata": {"path": tmp_path}}
    )
    client.execute()

    checkpoints = Checkpoints(workdir / "checkpoints", CheckpointConfig())
    assert checkpoints.latest_step() == STEPS
    checkpoints.close()
    assert (workdir / "samples" / f"step_{STEPS:07d}.png").is_file()
    table = (workdir / "evaluation" / "results.md").read_text()
    assert "| gray |" in table and "| run |" in table
    colorized = np.asarray(Image.open(workdir / "colorized" / "cat.png"))
    assert colorized.shape == (72, 96, 3)
    assert np.abs(colorized.astype(int) - colorized.mean(axis=-1, keepdims=True)).max() > 0
    assert (workdir / "model" / "generator.msgpack").is_file()
