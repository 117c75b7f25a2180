"""Will a config fit a GPU, and what will a step cost? Compiles the train step without running it.

    python -m experiments.plan --preset t4_128 --device t4
    python -m experiments.plan --preset pix2pix_unet128 --device t4 --set model.remat=blocks --json
    python -m experiments.plan --preset t4_128 --device t4 --find-batch --find-size

Prints the parameters, optimizer state, train state, peak temporary memory and total memory per
device of the configured GAN step (``colorjax.training.plan``), its FLOPs, whether it fits the
named device (``colorjax.training.devices``: JAX's memory pool less a runtime headroom), a
roofline step time and images/s, and the generator's inference at ``--render-size``.
``--find-batch`` / ``--find-size`` add the largest batch / image size that fits. Nothing
trains and no data is read. Compiled on a CPU for a GPU, the memory is XLA:CPU's estimate of
the same program (with the GPU's native convolutions). ``--json`` prints JSON lines as
``experiments.bench`` does: the last line holds everything.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

import jax

from colorjax.config import Config, apply_overrides
from colorjax.inference import default_render_size
from colorjax.training import devices, fit, plan
from experiments.cli import add_config_args, config_from_args, run_cli

MB = 2**20
MAX_BATCH = 4096
MAX_IMAGE_SIZE = 4096
Emit = Callable[[dict], None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--device", default="t4", help=f"one of {', '.join(devices.DEVICES)}")
    parser.add_argument("--render-size", type=int, help="inference size (default: the model's)")
    parser.add_argument("--find-batch", action="store_true", help="largest batch that fits")
    parser.add_argument("--find-size", action="store_true", help="largest image size that fits")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")
    args = parser.parse_args(argv)
    device = devices.get_device(args.device)
    config = plan.config_for_device(config_from_args(args), device)
    render_size = args.render_size or default_render_size(config.model, config.data.image_size)
    emit = _print_json if args.json else _print_text
    result = {"preset": args.preset, "overrides": args.overrides, **describe(config, device)}
    result |= inference_figures(config, render_size)
    emit(result)
    if args.find_batch:
        result["largest_batch"] = largest_batch(config, device, emit)
        emit(result)
    if args.find_size:
        result["largest_image_size"] = largest_image_size(config, device, emit)
        emit(result)
    return 0


def describe(config: Config, device: devices.Device) -> dict:
    """The plan of ``config``'s train step and its verdict for ``device``."""
    planned = plan.plan_train_step(config)
    step = planned.step
    seconds = plan.roofline_seconds(step, device, config.model.dtype)
    usable = devices.usable_bytes(device)
    return {
        "device": device.name,
        "compiled_on": jax.default_backend(),
        "batch_size": config.data.batch_size,
        "image_size": config.data.image_size,
        "dtype": config.model.dtype,
        "remat": config.model.remat,
        "conv_impl": config.model.conv_impl,
        "params": planned.parameters,
        "params_mb": _mb(planned.parameter_bytes),
        "optimizer_mb": _mb(planned.optimizer_bytes),
        "state_mb": _mb(planned.state_bytes),
        "temp_mb": _mb(step.temporary),
        "total_mb": _mb(step.total),
        "device_memory_mb": _mb(devices.memory_bytes(device)),
        "usable_mb": _mb(usable),
        "fits": step.total <= usable,
        "flops_per_step": step.flops,
        "bytes_per_step": step.bytes_accessed,
        "roofline_step_s": round(seconds, 4),
        "roofline_images_per_s": round(config.data.batch_size / seconds, 1),
    }


def inference_figures(config: Config, render_size: int) -> dict:
    """The eval-mode generator on one ``render_size`` photo: memory and FLOPs."""
    planned = plan.plan_generator(config, render_size)
    return {
        "render_size": render_size,
        "infer_total_mb": _mb(planned.total),
        "infer_flops": planned.flops,
    }


def largest_batch(config: Config, device: devices.Device, emit: Emit) -> int | None:
    """The largest batch whose train step fits ``device`` (None: not even 1)."""
    usable = devices.usable_bytes(device)

    def fits(batch: int) -> bool:
        total = plan.plan_train_step(apply_overrides(config, [f"data.batch_size={batch}"]))
        emit({"probe": "batch_size", "value": batch, "total_mb": _mb(total.step.total)})
        return total.step.total <= usable

    return fit.largest_fitting(fits, config.data.batch_size, MAX_BATCH)


def largest_image_size(config: Config, device: devices.Device, emit: Emit) -> int | None:
    """The largest image size (a multiple of ``2 ** model.depth``) whose train step fits
    ``device`` (None: not even the smallest the networks take)."""
    usable = devices.usable_bytes(device)
    smallest, multiple = fit.smallest_size(config), fit.size_multiple(config)

    def size(n: int) -> int:
        return smallest + (n - 1) * multiple

    def fits(n: int) -> bool:
        total = plan.plan_train_step(apply_overrides(config, [f"data.image_size={size(n)}"]))
        emit({"probe": "image_size", "value": size(n), "total_mb": _mb(total.step.total)})
        return total.step.total <= usable

    start = max(1, (config.data.image_size - smallest) // multiple + 1)
    found = fit.largest_fitting(fits, start, (MAX_IMAGE_SIZE - smallest) // multiple + 1)
    return None if found is None else size(found)


def _mb(n: float) -> float:
    return round(n / MB, 1)


def _print_json(result: dict) -> None:
    print(json.dumps(result), flush=True)


def _print_text(result: dict) -> None:
    if "probe" in result:
        print(f"  {result['probe']} {result['value']}: {result['total_mb']:.0f} MB", flush=True)
    elif "largest_image_size" in result:
        print(f"largest image size that fits: {result['largest_image_size']}")
    elif "largest_batch" in result:
        print(f"largest batch that fits: {result['largest_batch']}")
    else:
        print(_summary(result), flush=True)


def _summary(r: dict) -> str:
    verdict = "fits" if r["fits"] else "does NOT fit"
    estimate = (
        f"compiled on {r['compiled_on']}: XLA:CPU's memory analysis, an estimate for the GPU"
        if r["compiled_on"] == "cpu" and r["device"] != "cpu"
        else f"compiled on {r['compiled_on']}"
    )
    return "\n".join(
        [
            f"{r['preset']} {' '.join(r['overrides'])} on {r['device']} ({estimate})",
            f"  batch {r['batch_size']}, {r['image_size']} px, {r['dtype']}, remat {r['remat']}",
            f"  parameters       {r['params']:,} ({r['params_mb']:.0f} MB)",
            f"  optimizer state  {r['optimizer_mb']:.0f} MB (train state {r['state_mb']:.0f} MB)",
            f"  peak temporary   {r['temp_mb']:.0f} MB",
            f"  total            {r['total_mb']:.0f} MB of {r['usable_mb']:.0f} MB usable "
            f"({r['device_memory_mb']:.0f} MB device): {verdict}",
            f"  FLOPs per step   {r['flops_per_step'] / 1e9:.1f} G",
            f"  roofline         {r['roofline_step_s']:.4f} s a step, "
            f"{r['roofline_images_per_s']:.0f} images/s at most",
            f"  inference        {r['render_size']} px: {r['infer_total_mb']:.0f} MB, "
            f"{r['infer_flops'] / 1e9:.1f} GFLOPs",
        ]
    )


if __name__ == "__main__":
    run_cli(main)
