"""The package's layers: no module imports from a layer above its own; moved modules keep
their old names for existing code."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import colorjax

PACKAGE = Path(colorjax.__file__).parent
# Lowest first; a module may import from its own layer and those below.
LAYERS = (
    ("config", "native"),
    ("color", "imaging", "metrics"),
    ("data", "models"),
    ("heads",),
    ("gan",),
    ("training",),
    ("inference",),
    ("evaluation",),
    ("ablation",),
)


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _imported_parts(path: Path) -> set[str]:
    """The colorjax sub-packages (or top-level modules) ``path`` imports, lazily or not."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("colorjax"):
            names = node.module.split(".")[1:2] or [a.name for a in node.names]
            parts.update(names)
        elif isinstance(node, ast.Import):
            parts.update(a.name.split(".")[1] for a in node.names if a.name.startswith("colorjax."))
    return parts


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts == ("__init__.py",):
            continue
        yield relative.parts[0].removesuffix(".py"), path


def test_every_module_belongs_to_a_layer():
    for part, path in _modules():
        assert any(part in names for names in LAYERS), path


def test_no_import_runs_back_up_the_layers():
    upward = [
        f"{path.relative_to(PACKAGE)} imports colorjax.{imported}"
        for part, path in _modules()
        for imported in _imported_parts(path)
        if _layer(imported) > _layer(part)
    ]
    assert upward == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("imageio", "colorjax.imaging.decoding"),
        ("steps_of_nothing", None),
        ("viz", "colorjax.imaging.visual"),
    ],
)
def test_moved_modules_answer_to_their_old_names(old, new):
    if new is None:
        with pytest.raises(AttributeError, match="steps_of_nothing"):
            getattr(colorjax, old)
        return
    with pytest.warns(DeprecationWarning, match=new):
        module = getattr(colorjax, old)
    assert module is importlib.import_module(new)


def test_importing_the_library_starts_no_jax_backend():
    """Multi-host runs must call jax.distributed.initialize() before any backend starts."""
    code = (
        "import colorjax.training.loop, colorjax.inference, colorjax.evaluation\n"
        "import colorjax.ablation\n"
        "from jax._src import xla_bridge\n"
        "print(xla_bridge.backends_are_initialized())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
