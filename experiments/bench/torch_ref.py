"""The PyTorch pix2pix reference (../shared/bench), timed in the same run and precision."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from colorjax.config import Config, ConfigError
from experiments.bench.train import TRAIN_STEPS

TORCH_PRECISION_ARGS = {"float32": [], "bfloat16": ["--bf16"]}  # bfloat16: autocast


REPOSITORY = Path(__file__).resolve().parents[2]
TORCH_REFERENCE = REPOSITORY.parent / "shared/bench/torch_pix2pix_ref.py"


def _peak_rss_of(process: subprocess.Popen) -> float | None:
    """The child's own peak resident memory (MB), polled from /proc while it runs (Linux);
    getrusage would report the parent's peak, which a fork child inherits."""
    status = Path(f"/proc/{process.pid}/status")
    peak = None
    while process.poll() is None:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            peak = int(fields["VmHWM"].split()[0]) / 1024
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    return peak


def torch_precision_args(dtype: str) -> list[str]:
    """The reference's options for the precision of ``model.dtype``."""
    if dtype not in TORCH_PRECISION_ARGS:
        valid = ", ".join(TORCH_PRECISION_ARGS)
        raise ConfigError(f"model.dtype={dtype} has no PyTorch reference; valid: {valid}")
    return TORCH_PRECISION_ARGS[dtype]


def bench_torch_reference(python: str, cfg: Config, steps_count: int = TRAIN_STEPS) -> dict:
    """Run the PyTorch pix2pix reference with ``python`` in the precision of ``cfg``; its step
    time, images/s, peak RSS."""
    if not TORCH_REFERENCE.is_file():
        raise ConfigError(f"--torch-python: the PyTorch reference {TORCH_REFERENCE} is missing")
    command = [
        python,
        str(TORCH_REFERENCE),
        "--steps",
        str(steps_count),
        "--batch",
        str(cfg.data.batch_size),
        "--size",
        str(cfg.data.image_size),
        *torch_precision_args(cfg.model.dtype),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = _peak_rss_of(process)
    output = process.stdout.read()
    match = re.search(r"median_s_per_step=([\d.]+) images_per_s=([\d.]+)", output)
    if process.returncode or match is None:
        raise RuntimeError(f"{TORCH_REFERENCE} failed or printed no timing:\n{output}")
    return {
        "torch_dtype": cfg.model.dtype,
        "torch_train_step_s": float(match.group(1)),
        "torch_train_images_per_s": float(match.group(2)),
        "torch_peak_rss_mb": None if peak is None else round(peak, 1),
    }
