"""End-to-end training on tiny configurations: resume, failure stops, signals, config checks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from conftest import TINY
from test_data import write_photos

from colorjax import color, metrics
from colorjax.config import Config, ConfigError, apply_overrides
from colorjax.training.checkpoint import Checkpoints
from colorjax.training.loop import (
    SAMPLE_ROWS,
    NonFiniteLossError,
    load_validation,
    train_and_evaluate,
    validate,
)

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _params(workdir: Path, config) -> list[np.ndarray]:
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    restored = checkpoints.restore()
    checkpoints.close()
    return [np.asarray(x) for x in jax.tree.leaves(restored)]


def _assert_resume_is_exact(config, tmp_path) -> None:
    """2N steps straight and N + restart + N leave identical checkpoints."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    summary = train_and_evaluate(config, straight)
    assert summary["step"] == config.train.steps
    half = config.train.steps // 2
    assert train_and_evaluate(config, resumed, stop_at=half)["step"] == half
    assert train_and_evaluate(config, resumed)["step"] == config.train.steps
    for a, b in zip(_params(straight, config), _params(resumed, config), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_continues_exactly(tiny_config, tmp_path):
    _assert_resume_is_exact(tiny_config, tmp_path)


def test_resume_continues_exactly_with_every_knob_on(tiny_config, tmp_path):
    knobs = [
        "train.pretrain_steps=0",  # fewer step variants to compile
        "train.steps=4",
        "log.eval_every=2",
        "ckpt.every=2",
        "train.ema.decay=0.5",
        "train.ema.start=1",
        "train.r1.weight=1",
        "train.r1.every=2",
        "train.ada.target=0.3",
        "train.ada.interval=1",
        "train.ada.images=40",
        "train.d_skip_above=0.3",
    ]
    config = apply_overrides(tiny_config, knobs)
    _assert_resume_is_exact(config, tmp_path)
    checkpoints = Checkpoints(tmp_path / "resumed" / "checkpoints", config.ckpt)
    state = checkpoints.restore()
    checkpoints.close()
    assert set(state["ada"]) == {"p", "sign_sum", "count"} and set(state["balance"])
    averaged, raw = (jax.tree.leaves(t)[0] for t in (state["ema"]["params"], state["g_params"]))
    assert not np.array_equal(averaged, raw)
    records = [
        json.loads(line)
        for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    train = [r for r in records if r["split"] == "train" and "g_adv" in r]
    assert {"ada_p", "d_skip_fraction"} <= set(train[0])
    assert [r["step"] for r in train if "d_r1" in r] == [1, 3]  # step indices 0 and 2
    with pytest.raises(ConfigError, match=r"train\.ema\.decay \(was 0\.5, now 0\.0\)"):
        train_and_evaluate(apply_overrides(config, ["train.ema.decay=0"]), tmp_path / "resumed")


def test_run_leaves_samples_metrics_and_config(tiny_config, tmp_path):
    summary = train_and_evaluate(tiny_config, tmp_path)
    assert Path(summary["sample"]).is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir())[0] == "step_0000003.png"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_steps = {r["step"] for r in records if r["split"] == "train"}
    assert train_steps == set(range(1, tiny_config.train.steps + 1))
    assert any(r["split"] == "val" and "psnr" in r for r in records)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["features"] == 4
    assert any((tmp_path / "tensorboard").iterdir())
    assert set(summary["gray_baseline"]) == {"psnr", "colorfulness", "tint", "blob"}
    assert summary["gray_baseline"]["blob"] == 0.0 and set(summary["val"]) == set(
        summary["gray_baseline"]
    )


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tiny_config, tmp_path):
    config = apply_overrides(
        tiny_config,
        [
            "train.l1_weight=nan",
            "log.every=1",
            "ckpt.every=2",
            "log.eval_every=100",
            "log.sample_every=100",
        ],
    )
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train_and_evaluate(config, tmp_path)
    assert Checkpoints(tmp_path / "checkpoints", config.ckpt).latest_step() == 2
    assert all(
        np.all(np.isfinite(p))
        for p in _params(tmp_path, config)
        if np.issubdtype(p.dtype, np.floating)
    )


def test_resume_refuses_a_different_architecture(tiny_config, tmp_path):
    train_and_evaluate(tiny_config, tmp_path, stop_at=1)
    changed = apply_overrides(
        tiny_config, ["model.features=8", "disc.layers=2", "data.image_size=40"]
    )
    with pytest.raises(ConfigError, match=r"model\.features \(was 4, now 8\).*disc\.layers"):
        train_and_evaluate(changed, tmp_path)
    longer = apply_overrides(tiny_config, ["train.steps=7", "train.lr_g=1e-4"])
    assert train_and_evaluate(longer, tmp_path, stop_at=2)["step"] == 2


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
    overrides = [
        *TINY,
        "train.steps=100000",
        "log.every=1",
        "ckpt.every=100000",
        "log.eval_every=100000",
        "log.sample_every=100000",
    ]
    command = [sys.executable, "-m", "experiments.train", "--workdir", str(tmp_path)]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parents[1],
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and '"split": "train"' in metrics.read_text():
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr.decode()[-2000:]
    step = Checkpoints(tmp_path / "checkpoints", Config().ckpt).latest_step()
    assert step is not None and step >= 1


def test_short_run_on_a_mock_tfds_dataset(tiny_config, tmp_path):
    import tensorflow_datasets as tfds

    config = apply_overrides(
        tiny_config,
        [
            "data.source=tfds:tf_flowers",
            "train.steps=3",
            "data.eval_fraction=0.4",
            "data.shuffle_buffer=4",
        ],
    )
    with tfds.testing.mock_data(num_examples=12):
        summary = train_and_evaluate(config, tmp_path)
    assert summary["step"] == 3
    assert Checkpoints(tmp_path / "checkpoints", config.ckpt).latest_step() == 3
    assert np.isfinite(summary["val"]["psnr"])


# ----------------------------------------------------------------------------- mixed sources


def mix_config(tiny_config, tmp_path: Path, *overrides: str):
    """A mix of a plain folder A (hash split) and a folder B with train/ and eval/ (2 each)."""
    write_photos(tmp_path / "A", 10)
    write_photos(tmp_path / "B" / "train", 2, seed=1)
    write_photos(tmp_path / "B" / "eval", 2, seed=2)
    source = f"data.source=folder:{tmp_path / 'A'},folder:{tmp_path / 'B'}*2"
    return apply_overrides(tiny_config, [source, *overrides])


def test_validation_reports_each_source_and_the_mean_of_the_sources(tiny_config, tmp_path):
    config = mix_config(tiny_config, tmp_path, "data.eval_fraction=1.0", "log.eval_images=9")
    validation = load_validation(config)
    assert validation.sources[:4] == ["A", "B", "A", "B"] and len(validation.sources) == 11
    assert set(validation.sources[:SAMPLE_ROWS]) == {"A", "B"}  # the sample grid shows both

    def generate(params, state, gray):
        return np.full((*gray.shape[:-1], 2), params, np.float32)

    state = SimpleNamespace(g_params=0.2, g_state=None, ema={})
    _, values = validate(generate, state, validation)
    colorized = np.asarray(
        color.network_to_rgb(validation.gray, generate(0.2, None, validation.gray))
    )
    psnr = np.array(
        [metrics.psnr(c, r) for c, r in zip(colorized, validation.real_rgb, strict=True)]
    )
    of = {name: np.array(validation.sources) == name for name in ("A", "B")}
    assert values["A/psnr"] == pytest.approx(psnr[of["A"]].mean())
    assert values["B/psnr"] == pytest.approx(psnr[of["B"]].mean())
    assert values["psnr"] == pytest.approx((values["A/psnr"] + values["B/psnr"]) / 2)
    assert values["psnr"] != pytest.approx(psnr.mean())  # sources count the same, not images
    plain = {key for key in values if "/" not in key}
    assert plain == set(metrics.quick_metrics(colorized[0], validation.real_rgb[0]))
    assert set(values) == plain | {f"{name}/{key}" for name in ("A", "B") for key in plain}
    assert validation.baseline["psnr"] == pytest.approx(
        (validation.baseline["A/psnr"] + validation.baseline["B/psnr"]) / 2
    )


def test_a_run_on_a_mix_logs_each_source_and_checkpoints_their_mean(
    tiny_config, tmp_path, monkeypatch
):
    config = mix_config(
        tiny_config,
        tmp_path / "data",
        "train.steps=1",  # L1 steps only: one small compilation
        "train.pretrain_steps=1",
        "data.eval_fraction=0.3",
        "log.eval_images=2",
    )
    saved = []
    save = Checkpoints.save
    monkeypatch.setattr(
        Checkpoints, "save", lambda self, *args: saved.append(args[3]) or save(self, *args)
    )
    summary = train_and_evaluate(config, tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    [val] = [r for r in map(json.loads, lines) if r["split"] == "val"]
    assert val["psnr"] == pytest.approx((val["A/psnr"] + val["B/psnr"]) / 2)
    assert summary["val"]["psnr"] == pytest.approx(val["psnr"])
    assert config.ckpt.best_metric == "psnr" and saved[-1]["psnr"] == pytest.approx(val["psnr"])
