"""The accelerators a run can be planned for: memory, peak FLOP/s by dtype, memory bandwidth.

Vendor datasheet figures, dense (no structured sparsity). ``float32`` is the rate JAX's default
matmul precision reaches: TF32 tensor cores on Ampere and later (A100, L4, H100), plain FP32 on
Turing (T4). Turing has no bfloat16 units, so the T4's bfloat16 rate is its FP32 one.

- T4: NVIDIA T4 Tensor Core GPU datasheet (2019): 8.1 TFLOPS FP32, 65 TFLOPS mixed FP16,
  320 GB/s, 16 GB GDDR6 (15 GiB usable; nvidia-smi on Colab reports 15360 MiB).
- L4: NVIDIA L4 datasheet (2023): 30.3 TFLOPS FP32, 60 TFLOPS TF32 and 121 TFLOPS BF16/FP16
  (half the with-sparsity figures of 120 and 242), 300 GB/s, 24 GB GDDR6.
- A100 40/80 GB (SXM): NVIDIA A100 datasheet (2021): 156 TFLOPS TF32, 312 TFLOPS BF16/FP16,
  1555 GB/s (40 GB HBM2) and 2039 GB/s (80 GB HBM2e).
- H100 (SXM): NVIDIA H100 datasheet (2023): 494.7 TFLOPS TF32 and 989.4 TFLOPS BF16/FP16
  (dense), 3.35 TB/s, 80 GB HBM3.
- cpu: the 2-core AMD EPYC (Zen 4) VM of the README's Speed section, from the core's design:
  2 cores x ~3 GHz x 32 FP32 FLOPs a cycle (two 256-bit FMA pipes), twice that for bfloat16
  (AVX512_BF16 dot products); 20 GB/s is an assumption (a VM's share of DDR5 channels), not a
  measurement; memory: this machine's physical memory.
"""

from __future__ import annotations

import dataclasses
import os

from colorjax.config import ConfigError

GIB = 2**30
# Share of the device memory left for the step's buffers: JAX preallocates a pool of 75 % of
# the GPU's memory (XLA_CLIENT_MEM_FRACTION or XLA_PYTHON_CLIENT_MEM_FRACTION changes it), and
# within it 10 % is kept for fragmentation and convolution workspaces.
DEFAULT_MEMORY_FRACTION = 0.75
RUNTIME_HEADROOM = 0.10
MEMORY_FRACTION_ENV = ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION")


@dataclasses.dataclass(frozen=True)
class Device:
    """One accelerator's datasheet figures (``memory_bytes`` None: this host's memory)."""

    name: str
    memory_bytes: int | None
    peak_flops: dict[str, float]  # by compute dtype: float32, bfloat16, float16
    bandwidth: float  # bytes/s


def _tflops(float32: float, bfloat16: float, float16: float) -> dict[str, float]:
    return {"float32": float32 * 1e12, "bfloat16": bfloat16 * 1e12, "float16": float16 * 1e12}


DEVICES: dict[str, Device] = {
    "t4": Device("t4", 15 * GIB, _tflops(8.1, 8.1, 65.0), 320e9),
    "l4": Device("l4", 24 * 10**9, _tflops(60.0, 121.0, 121.0), 300e9),
    "a100-40": Device("a100-40", 40 * GIB, _tflops(156.0, 312.0, 312.0), 1555e9),
    "a100-80": Device("a100-80", 80 * GIB, _tflops(156.0, 312.0, 312.0), 2039e9),
    "h100": Device("h100", 80 * GIB, _tflops(494.7, 989.4, 989.4), 3350e9),
    "cpu": Device("cpu", None, _tflops(0.19, 0.38, 0.19), 20e9),
}


def get_device(name: str) -> Device:
    """The device called ``name``; an unknown name is a ConfigError listing the valid ones."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; valid devices: {', '.join(DEVICES)}")
    return DEVICES[name]


def memory_bytes(device: Device) -> int:
    """The device's memory (this host's physical memory for ``cpu``)."""
    if device.memory_bytes is not None:
        return device.memory_bytes
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_fraction() -> float:
    """The share of GPU memory JAX's allocator may use (its environment variables, or 0.75)."""
    for name in MEMORY_FRACTION_ENV:
        if os.environ.get(name):
            return float(os.environ[name])
    return DEFAULT_MEMORY_FRACTION


def usable_bytes(device: Device) -> int:
    """The memory a train step may take on ``device``: JAX's pool on a GPU, this host's memory
    on ``cpu``, less the runtime headroom."""
    fraction = 1.0 if device.name == "cpu" else memory_fraction()
    return int(memory_bytes(device) * fraction * (1 - RUNTIME_HEADROOM))
