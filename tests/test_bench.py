"""experiments.bench: its parts run without TensorFlow, and it compares like with like."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import TINY

from colorjax.config import ConfigError
from experiments import bench
from experiments.bench import torch_ref

# Runs the bench module as ``python -m experiments.bench`` would, with every import of
# TensorFlow failing as it does where TensorFlow is not installed.
WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import importlib.abc, runpy, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NoTensorFlow())
    try:
        import tensorflow
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the TensorFlow blocker did not block")
    runpy.run_module("experiments.bench", run_name="__main__")
    """
)


def _run_without_tensorflow(*args: str) -> subprocess.CompletedProcess:
    overrides = [arg for override in TINY for arg in ("--set", override)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, *args, *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_train_l1_infer_and_colorize_parts_run_without_tensorflow():
    parts = [arg for part in ("train", "l1", "infer", "colorize") for arg in ("--only", part)]
    colorize = ["--colorize-model", "preset", "--colorize-photos", "3"]
    done = _run_without_tensorflow(*parts, *colorize)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["train_step_s"] > 0 and result["l1_step_s"] > 0
    assert result["colorize_4000x3000_s"] > 0
    assert result["colorize_photos"] == 3 and result["colorize_pipeline_images_per_s"] > 0
    assert "device_peak_mb" in result  # None on CPU, the device's peak on GPU


def test_data_part_needs_tensorflow():
    """The check above is honest: the blocker does stop the part that needs TensorFlow."""
    done = _run_without_tensorflow("--only", "data")
    assert done.returncode != 0 and "No module named 'tensorflow'" in done.stderr


def test_torch_reference_runs_in_the_same_precision():
    assert bench.torch_precision_args("float32") == []
    assert bench.torch_precision_args("bfloat16") == ["--bf16"]
    with pytest.raises(ConfigError, match=r"model\.dtype=float16 has no PyTorch reference"):
        bench.torch_precision_args("float16")


def test_torch_reference_is_looked_up_beside_the_repository(monkeypatch, tmp_path, tiny_config):
    assert (torch_ref.REPOSITORY / "pyproject.toml").is_file()
    assert torch_ref.TORCH_REFERENCE.parent.parent.parent == torch_ref.REPOSITORY.parent
    missing = tmp_path / "torch_pix2pix_ref.py"
    monkeypatch.setattr(torch_ref, "TORCH_REFERENCE", missing)
    with pytest.raises(ConfigError, match=f"--torch-python: the PyTorch reference {missing}"):
        torch_ref.bench_torch_reference(sys.executable, tiny_config)


def test_layers_part_rates_every_pass_of_every_convolution():
    done = _run_without_tensorflow("--only", "layers", "--set", "model.upsample=transpose")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.strip().splitlines()[-1])["layers"]
    layers = {row["layer"] for row in rows}
    assert len(rows) == 3 * len(layers) and any(name.startswith("transposed") for name in layers)
    for row in rows:
        assert row["native"] > 0 and row["hybrid"] > 0 and row["onednn_only"] > 0, row
