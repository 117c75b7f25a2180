"""experiments.plan and the start-up check: the compiled step's figures, the search for what
fits, and a run stopped before its first step when its step cannot fit the device."""

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import TINY

from colorjax.config import ConfigError, apply_overrides
from colorjax.training import devices, fit, plan
from colorjax.training.fit import StepDoesNotFitError, largest_fitting
from colorjax.training.loop import train_and_evaluate
from experiments import plan as plan_cli

pytestmark = pytest.mark.usefixtures("fast_compilation")


def _with_batch(config, batch):
    return apply_overrides(config, [f"data.batch_size={batch}"])


@pytest.fixture(scope="module")
def plans(tiny_config):
    return {batch: plan.plan_train_step(_with_batch(tiny_config, batch)) for batch in (2, 4, 8)}


def test_planned_figures_are_positive_and_grow_with_the_batch(plans):
    small, medium, large = plans[2], plans[4], plans[8]
    for planned in (small, medium, large):
        assert planned.parameters > 0 and planned.optimizer_bytes > planned.parameter_bytes > 0
        assert planned.state_bytes >= planned.parameter_bytes + planned.optimizer_bytes
        assert planned.step.temporary > 0 and planned.step.flops > 0
        assert planned.step.total > planned.state_bytes
    assert small.parameters == large.parameters
    for figure in ("total", "temporary", "flops"):
        values = [getattr(p.step, figure) for p in (small, medium, large)]
        assert values == sorted(values) and values[0] < values[-1], figure


@pytest.mark.parametrize("start", [1, 5, 40, 100])
def test_largest_fitting_finds_the_threshold_from_any_start(start):
    for threshold in (1, 2, 7, 37, 64, 100):
        asked = []

        def fits(n, threshold=threshold, asked=asked):
            asked.append(n)
            return n <= threshold

        assert largest_fitting(fits, start, ceiling=100) == threshold
        assert len(asked) <= 16
    assert largest_fitting(lambda n: False, start, ceiling=100) is None


def test_find_batch_is_monotone_in_the_device_memory(tiny_config, plans):
    """Between the memory of batch 4 and of batch 8 the largest batch is 4 to 7, and it is
    never smaller for a larger device; every answer fits and the next batch does not."""
    found = []
    for usable in (plans[4].step.total, (plans[4].step.total + plans[8].step.total) // 2):
        memory = int(usable / (1 - devices.RUNTIME_HEADROOM)) + 1
        device = dataclasses.replace(devices.get_device("cpu"), memory_bytes=memory)
        batch = plan_cli.largest_batch(tiny_config, device, emit=lambda _: None)
        assert 4 <= batch < 8
        assert plan.plan_train_step(_with_batch(tiny_config, batch)).step.total <= usable
        assert plan.plan_train_step(_with_batch(tiny_config, batch + 1)).step.total > usable
        found.append(batch)
    assert found == sorted(found)


def test_cli_prints_the_plan_as_json_lines(capsys):
    overrides = [arg for item in TINY for arg in ("--set", item)]
    status = plan_cli.main(["--device", "t4", "--render-size", "64", "--json", *overrides])
    assert status == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "t4" and result["conv_impl"] == "native"
    assert result["fits"] is True and 0 < result["total_mb"] < result["usable_mb"]
    assert result["flops_per_step"] > 0 and result["roofline_images_per_s"] > 0
    assert result["render_size"] == 64 and result["infer_total_mb"] > 0


def test_an_unknown_device_is_named_with_the_valid_ones():
    valid = "valid devices: t4, l4, a100-40, a100-80, h100, cpu"
    with pytest.raises(ConfigError, match=f"'v100'; {valid}"):
        plan_cli.main(["--device", "v100"])


def test_start_up_check_stops_a_run_that_cannot_fit_before_any_step(
    tiny_config, plans, tmp_path: Path, monkeypatch
):
    """A fake device with room for batch 2 but not 4: the run stops with the settings that
    would fit, and nothing is trained or saved."""
    config = _with_batch(tiny_config, 4)
    room = (plans[2].step.total + plans[4].step.total) / 2 / (1 - devices.RUNTIME_HEADROOM)
    monkeypatch.setenv(fit.DEVICE_MEMORY_ENV, str(room / 2**20))
    with pytest.raises(StepDoesNotFitError) as stopped:
        train_and_evaluate(config, tmp_path)
    message = str(stopped.value)
    assert "These would fit: --set data.batch_size=2 (" in message and "--no-plan" in message
    assert "data.batch_size=4" not in message
    assert not (tmp_path / "metrics.jsonl").exists()
    assert not any((tmp_path / "checkpoints").rglob("*"))


def test_start_up_check_lists_every_option_when_none_fits_alone(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv(fit.DEVICE_MEMORY_ENV, "0.01")
    with pytest.raises(StepDoesNotFitError, match="None of these fits alone") as stopped:
        train_and_evaluate(tiny_config, tmp_path)
    for option in ("data.batch_size=1", "model.remat=blocks", "model.remat=full"):
        assert option in str(stopped.value)
    for option in ("model.dtype=bfloat16 (or float16)", "data.image_size=16"):
        assert option in str(stopped.value)
