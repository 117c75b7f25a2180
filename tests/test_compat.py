"""What was written before the package's layout changed still loads: a run's checkpoints and
config (``tests/data/pre_layout_run``: 3 steps of a tiny classification-head run with EMA)."""

import shutil
from pathlib import Path

import numpy as np

from colorjax import inference
from colorjax.config import apply_overrides, load_json
from colorjax.training.loop import train_and_evaluate

OLD_RUN = Path(__file__).parent / "data" / "pre_layout_run"


def test_an_old_run_colorizes_as_it_did():
    colorizer = inference.load_workdir(OLD_RUN)
    gray = np.linspace(-1, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32, 1)
    expected = np.load(OLD_RUN / "expected_ab.npy")  # what the old code predicted
    np.testing.assert_allclose(colorizer.predict_ab(gray), expected, atol=1e-5)
    assert colorizer.origin["weights"] == "ema"


def test_an_old_config_reads_its_moved_keys():
    config = load_json(OLD_RUN / "config.json")
    assert config.train.ema.decay == 0.9 and config.train.r1.every == 16
    assert config.model.head == "classification"


def test_an_old_run_resumes(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(OLD_RUN, workdir)
    config = apply_overrides(load_json(workdir / "config.json"), ["train.steps=4"])
    summary = train_and_evaluate(config, workdir)
    assert summary["step"] == 4 and np.isfinite(summary["val"]["psnr"])
    assert not (workdir / "checkpoints" / "damaged").exists()
