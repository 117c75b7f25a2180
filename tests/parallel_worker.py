"""Multi-device runs for tests/test_parallel.py, each in a process of its own.

JAX fixes the device count when it starts, so the tests launch this script with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (and, for a multi-host run, with
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set):

    python tests/parallel_worker.py devices OUT   # 4 devices vs 1, checkpoints across counts
    python tests/parallel_worker.py host OUT      # one process of a multi-host run

Results go to ``OUT`` (``.npz`` arrays, ``.json`` facts, run directories) for the tests to check.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from conftest import TINY
from jax.sharding import Mesh

from colorjax import data
from colorjax.config import Config, ConfigError, ParallelConfig, apply_overrides
from colorjax.gan.build import GAN, build_gan
from colorjax.gan.state import GANState, init_state
from colorjax.gan.step import make_train_step
from colorjax.training import parallel, save_schedule
from colorjax.training.loop import train_and_evaluate

RUN_STEPS = 3
# Adversarial steps only (one compiled step), no periodic evaluation or saving; XLA's own
# convolutions, as on GPUs (and quicker to compile than the CPU matmul forms).
SHORT_RUN = [
    "model.conv_impl=native",
    f"train.steps={RUN_STEPS}",
    "train.pretrain_steps=0",
    "log.every=1",
    "log.eval_every=1000",
    "log.sample_every=1000",
    "ckpt.every=1000",
]
# (devices, stop_at) of consecutive runs in one workdir: saved on 4 -> resumed on 1 -> on 4.
DEVICE_CHAIN = ((4, 1), (1, 2), (4, RUN_STEPS))


def short_config(*overrides: str) -> Config:
    return apply_overrides(Config(), [*TINY, *SHORT_RUN, *overrides])


def flat(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """``{prefix + path: array}`` for every leaf of ``tree``."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {prefix + jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def networks(state: GANState) -> dict[str, Any]:
    """Parameters and BatchNorm statistics, keyed as in a checkpoint."""
    names = ("g_params", "g_state", "d_params", "d_state")
    return {name: getattr(state, name) for name in names}


def batch_layout(array: jax.Array) -> dict[str, Any]:
    """Which rows of ``array`` each device holds."""
    starts_stops = sorted(
        (s.index[0].start or 0, s.index[0].stop or array.shape[0]) for s in array.addressable_shards
    )
    return {
        "shape": list(array.shape),
        "spec": str(array.sharding.spec),
        "rows": [list(rows) for rows in starts_stops],
    }


def initial_state(gan: GAN, config: Config) -> GANState:
    """The state ``train_and_evaluate`` starts from, on the host."""
    init = jax.jit(lambda key: init_state(gan, key, config.data.image_size))
    return jax.device_get(init(jax.random.PRNGKey(config.train.seed)))


def without_running_stats(state: GANState) -> GANState:
    """``state`` with its BatchNorm averages at 0: after one step they are a fixed multiple of
    the batch statistics, with no initial value mixed in."""
    zero = functools.partial(jax.tree.map, np.zeros_like)
    return state.replace(g_state=zero(state.g_state), d_state=zero(state.d_state))


def jitted_step(gan: GAN, devices: int) -> tuple[Mesh, Callable]:
    """A mesh of ``devices`` and the train step jitted as in ``train_and_evaluate``."""
    mesh = parallel.make_mesh(ParallelConfig(data=devices))
    sharding = parallel.replicated(mesh)
    return mesh, make_train_step(gan, out_shardings=(sharding, sharding))


def train_on(
    mesh_step: tuple[Mesh, Callable], state: GANState, batches: list[dict[str, np.ndarray]]
) -> tuple[GANState, dict[str, Any]]:
    """Run the step over ``batches``; the final state and the layout of the first device batch
    and of the state."""
    mesh, step = mesh_step
    state = parallel.replicate(state, mesh)
    replicated = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state))
    layout: dict[str, Any] = {"state_replicated": replicated}
    for i, local in enumerate(batches):
        batch = parallel.global_batch(local, mesh)
        if i == 0:
            layout |= batch_layout(batch["rgb"])
        state, _ = step(state, batch)
    return state, layout


def batch_norm_stats(state: GANState) -> dict[str, Any]:
    return {"g_state": state.g_state, "d_state": state.d_state}


def compare_device_counts(out: Path) -> None:
    """The first training batches on 4 devices and on 1; BatchNorm statistics of one step on
    4 devices, on 1 device and on the quarter of the batch that one of 4 devices holds."""
    config = short_config()
    pipeline = data.pipeline_from_config(config.data, train=True, seed=config.train.seed)
    batches = list(itertools.islice(pipeline.as_numpy(), RUN_STEPS))
    quarter = {k: v[: config.data.batch_size // 4] for k, v in batches[0].items()}
    gan = build_gan(config)
    initial = initial_state(gan, config)
    on = {devices: jitted_step(gan, devices) for devices in (4, 1)}
    arrays, layouts = {}, {}
    for devices in (4, 1):
        state, layouts[devices] = train_on(on[devices], initial, batches)
        arrays |= flat(networks(state), f"state_{devices}")
    zeroed = without_running_stats(initial)
    for name, devices, batch in (
        ("4", 4, batches[0]),
        ("1", 1, batches[0]),
        ("quarter", 1, quarter),
    ):
        state, _ = train_on(on[devices], zeroed, [batch])
        arrays |= flat(batch_norm_stats(state), f"stats_{name}")
    np.savez(out / "steps.npz", **arrays)
    (out / "layout.json").write_text(json.dumps(layouts))


def batch_size_error(out: Path) -> str:
    """The message of a run whose batch does not split over the 4 devices."""
    try:
        train_and_evaluate(short_config("data.batch_size=6"), out / "bad_batch")
    except ConfigError as err:
        return str(err)
    return ""


def resume_across_device_counts(out: Path) -> list[int]:
    """Run ``DEVICE_CHAIN`` in one workdir; the step each run ended at."""
    return [
        train_and_evaluate(short_config(f"parallel.data={n}"), out / "chain", stop_at=stop)["step"]
        for n, stop in DEVICE_CHAIN
    ]


def run_devices(out: Path) -> None:
    compare_device_counts(out)
    facts = {"error": batch_size_error(out), "chain_steps": resume_across_device_counts(out)}
    (out / "devices.json").write_text(json.dumps(facts))


def run_host(out: Path) -> None:
    """One process of a multi-host run: one step and a save, then a resume to the end.

    Saves are also due by time (``ckpt.minutes``), and the hosts' clocks disagree: process 0's
    runs a million times fast (a minute passes every step), process 1's is true. The hosts
    must still save together, at the steps process 0's clock picks."""
    if os.environ["JAX_PROCESS_ID"] == "0":  # jax.process_index() would start JAX too early
        true_clock = save_schedule.clock
        save_schedule.clock = lambda: 1e6 * true_clock()
    config = short_config("ckpt.minutes=1", "ckpt.keep=5")
    steps_reached = [
        train_and_evaluate(config, out / "hosts", stop_at=stop)["step"] for stop in (1, None)
    ]
    facts = parallel.describe(parallel.make_mesh(config.parallel)) | {"steps": steps_reached}
    facts["saved"] = sorted(
        int(p.name) for p in (out / "hosts/checkpoints").iterdir() if p.name.isdigit()
    )
    (out / f"host_{jax.process_index()}.json").write_text(json.dumps(facts))


COMMANDS = {"devices": run_devices, "host": run_host}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](Path(sys.argv[2]))
