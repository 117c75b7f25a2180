"""Data parallelism: 4 devices train like 1, BatchNorm sees the global batch, checkpoints move
between device counts, two hosts train like one.

The device count is fixed when JAX starts, so the multi-device runs happen in subprocesses
(tests/parallel_worker.py) on CPU devices forced with ``--xla_force_host_platform_device_count``;
the tests here check what those runs leave behind.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from parallel_worker import RUN_STEPS, flat, networks, short_config

from colorjax.config import ConfigError, ParallelConfig
from colorjax.gan.build import build_gan
from colorjax.gan.state import init_state
from colorjax.training import parallel
from colorjax.training.checkpoint import Checkpoints

WORKER = Path(__file__).with_name("parallel_worker.py")
REPO = Path(__file__).parents[1]
TIMEOUT_S = 600
# Float32 sums split over devices round differently; a few steps stay far inside this.
RTOL, ATOL = 1e-4, 1e-6


def _worker_env(devices: int, cache: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }


@dataclasses.dataclass
class _Workers:
    """Worker processes that write into ``out``, their stderr in log files there."""

    out: Path
    processes: list[subprocess.Popen] = dataclasses.field(default_factory=list)

    def start(self, command: str, env: dict[str, str], name: str) -> None:
        with (self.out / f"{name}.log").open("w") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), command, str(self.out)],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )

    def wait(self) -> Path:
        """``out`` once every process has exited 0; otherwise fail with the ends of the logs."""
        codes = [process.wait(timeout=TIMEOUT_S) for process in self.processes]
        if any(codes):
            logs = sorted(self.out.glob("*.log"))
            ends = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
            pytest.fail(f"worker exit codes {codes}\n{ends}")
        return self.out

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workers(tmp_path_factory) -> dict[str, _Workers]:
    """The 4-device worker and the two processes of a 2-host run (2 CPU devices each, joined
    by jax.distributed on localhost), started together; each group is waited for once."""
    devices = _Workers(tmp_path_factory.mktemp("four_devices"))
    devices.start("devices", _worker_env(4, devices.out / "xla_cache"), "devices")
    hosts = _Workers(tmp_path_factory.mktemp("two_hosts"))
    address = f"127.0.0.1:{_free_port()}"
    for index in range(2):
        env = _worker_env(
            2,
            hosts.out / f"xla_cache_{index}",
            JAX_COORDINATOR_ADDRESS=address,
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(index),
        )
        hosts.start("host", env, f"host_{index}")
    yield {"devices": devices, "hosts": hosts}
    devices.stop()
    hosts.stop()


@pytest.fixture(scope="module")
def four_devices(workers) -> Path:
    """Output of the 4-device worker: step comparison, batch layout, checkpoint chain."""
    return workers["devices"].wait()


@pytest.fixture(scope="module")
def two_hosts(workers) -> Path:
    """Output of the two-host run: its facts and its checkpoints."""
    return workers["hosts"].wait()


def _load(npz: Path, prefix: str) -> dict[str, np.ndarray]:
    arrays = np.load(npz)
    return {k[len(prefix) :]: arrays[k] for k in arrays.files if k.startswith(prefix)}


def _checkpointed_networks(workdir: Path) -> tuple[int, dict[str, np.ndarray]]:
    """Step and network variables of the latest checkpoint, restored onto this process's
    first device."""
    config = short_config()
    gan = build_gan(config)
    abstract = jax.eval_shape(
        lambda key: init_state(gan, key, config.data.image_size), jax.random.PRNGKey(0)
    )
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract
    )
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    state = checkpoints.restore(target)
    checkpoints.close()
    return int(state.step), flat(networks(state))


def _relative_deviation(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference in units of the largest expected magnitude."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _assert_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=RTOL, atol=ATOL, err_msg=key)


def test_batch_is_split_over_the_devices_and_state_replicated(four_devices):
    layouts = json.loads((four_devices / "layout.json").read_text())
    assert layouts["4"]["shape"] == [4, 32, 32, 3]
    assert layouts["4"]["rows"] == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert layouts["4"]["spec"] == "P('data',)"
    assert layouts["1"]["rows"] == [[0, 4]]
    assert layouts["4"]["state_replicated"] and layouts["1"]["state_replicated"]


def test_four_devices_train_like_one(four_devices):
    npz = four_devices / "steps.npz"
    four, one = _load(npz, "state_4"), _load(npz, "state_1")
    assert any("kernel" in key for key in one)
    _assert_close(four, one)


def test_batch_norm_statistics_cover_the_global_batch(four_devices):
    npz = four_devices / "steps.npz"
    four, one, quarter = (_load(npz, f"stats_{n}") for n in ("4", "1", "quarter"))
    assert len(one) >= 4, "TINY uses BatchNorm in both networks"
    for key, expected in one.items():
        assert _relative_deviation(four[key], expected) < 1e-5, key
        assert _relative_deviation(quarter[key], expected) > 0.1, key


def test_batch_size_must_divide_by_the_device_count(four_devices):
    error = json.loads((four_devices / "devices.json").read_text())["error"]
    assert "data.batch_size=6 does not divide by the 4 devices" in error


def test_checkpoints_resume_on_another_device_count(four_devices):
    facts = json.loads((four_devices / "devices.json").read_text())
    assert facts["chain_steps"] == [1, 2, RUN_STEPS]
    step, restored = _checkpointed_networks(four_devices / "chain")
    assert step == RUN_STEPS
    _assert_close(restored, _load(four_devices / "steps.npz", "state_4"))


def test_two_hosts_train_like_one(two_hosts, four_devices):
    for index in range(2):
        facts = json.loads((two_hosts / f"host_{index}.json").read_text())
        assert facts["processes"] == 2 and facts["local_devices"] == 2
        assert facts["mesh"] == {"data": 4} and facts["steps"] == [1, RUN_STEPS]
        # ckpt.every=1000: steps 2 and 3 are saves due by process 0's (fast) clock
        assert facts["saved"] == list(range(1, RUN_STEPS + 1))
    step, restored = _checkpointed_networks(two_hosts / "hosts")
    assert step == RUN_STEPS
    _assert_close(restored, _load(four_devices / "steps.npz", "state_4"))


def test_mesh_refuses_more_devices_than_visible():
    with pytest.raises(ConfigError, match="devices are visible"):
        parallel.make_mesh(ParallelConfig(data=jax.device_count() + 1))


def test_single_process_mesh_and_description():
    mesh = parallel.make_mesh(ParallelConfig(data=1))
    parallel.check_batch_size(3, mesh)
    facts = parallel.describe(mesh)
    assert facts["mesh"] == {"data": 1} and facts["processes"] == 1


def test_distributed_mode_is_checked_and_auto_needs_the_environment(monkeypatch):
    with pytest.raises(ConfigError, match="auto, on or off"):
        parallel.initialize_distributed("yes")
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert parallel.initialize_distributed("auto") is False
    assert parallel.initialize_distributed("off") is False
