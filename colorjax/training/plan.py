"""What a train step costs before it runs: XLA compiles the configured step on abstract
inputs (``jax.eval_shape``; no data, no arrays) and reports its memory and FLOPs.

The figures are the compiling backend's: on a GPU its own; on a CPU planning for a GPU an
estimate, as XLA:CPU fuses and lays out some operations differently from XLA:GPU and computes
bfloat16 convolutions in float32 (the README's "Fitting a GPU" says how close it came).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from colorjax.config import Config, set_key
from colorjax.gan.build import GAN, build_gan
from colorjax.gan.state import init_state
from colorjax.gan.step import make_train_step
from colorjax.heads.generate import make_generate
from colorjax.training import parallel
from colorjax.training.devices import Device


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """One compiled program's memory (bytes, per device) and cost."""

    arguments: int  # inputs: the train state and the batch
    outputs: int
    aliased: int  # outputs written into donated inputs (the state)
    temporary: int  # peak of the intermediate buffers
    flops: float
    bytes_accessed: float

    @property
    def total(self) -> int:
        """Peak device memory while the program runs."""
        return self.arguments + self.outputs - self.aliased + self.temporary


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """The train step of a config: its state's parts and the compiled step."""

    parameters: int  # count, generator and discriminator
    parameter_bytes: int
    optimizer_bytes: int
    state_bytes: int  # everything the train state holds (parameters, optimizers, norms, ...)
    step: StepPlan


def config_for_device(config: Config, device: Device) -> Config:
    """``config`` as it would run on ``device``: ``conv_impl=auto`` is XLA's native
    convolutions on a GPU (``colorjax.models.conv.resolve_impl``), whatever compiles the plan."""
    if device.name != "cpu" and config.model.conv_impl == "auto":
        return set_key(config, "model.conv_impl", "native")
    return config


def plan_train_step(config: Config, mesh: Mesh | None = None) -> TrainPlan:
    """Compile the GAN step of ``config`` (with R1 when it is on: the largest step variant) on
    abstract inputs sharded over ``mesh`` (default: one device) and report what it costs."""
    mesh = mesh or parallel.make_mesh(dataclasses.replace(config.parallel, data=1))
    parallel.check_batch_size(config.data.batch_size, mesh)
    gan = build_gan(config)
    state = _abstract(_abstract_state(gan, config.data.image_size), parallel.replicated(mesh))
    size = config.data.image_size
    batch = {
        "rgb": jax.ShapeDtypeStruct(
            (config.data.batch_size, size, size, 3),
            jnp.uint8,
            sharding=parallel.batch_sharded(mesh),
        )
    }
    replicated = parallel.replicated(mesh)
    r1 = config.train.r1.weight > 0
    step = make_train_step(gan, r1=r1, out_shardings=(replicated, replicated))
    return TrainPlan(
        parameters=_count(state.g_params) + _count(state.d_params),
        parameter_bytes=_bytes(state.g_params) + _bytes(state.d_params),
        optimizer_bytes=_bytes(state.g_opt) + _bytes(state.d_opt),
        state_bytes=_bytes(state),
        step=_analyse(step.lower(state, batch).compile()),
    )


def plan_generator(config: Config, render_size: int) -> StepPlan:
    """Compile the eval-mode generator on one ``render_size`` square photo and report what it
    costs (the parameters and norm statistics are its arguments)."""
    gan = build_gan(config)
    state = _abstract_state(gan, config.data.image_size)
    gray = jax.ShapeDtypeStruct((1, render_size, render_size, 1), jnp.float32)
    generate = make_generate(gan.generator, gan.head)
    return _analyse(generate.lower(state.g_params, state.g_state, gray).compile())


def roofline_seconds(plan: StepPlan, device: Device, dtype: str) -> float:
    """The step's time if it ran at ``device``'s peak FLOP/s for ``dtype`` or its memory
    bandwidth, whichever binds: a lower bound (real steps reach a fraction of either)."""
    return max(plan.flops / device.peak_flops[dtype], plan.bytes_accessed / device.bandwidth)


def _abstract_state(gan: GAN, image_size: int) -> Any:
    return jax.eval_shape(lambda key: init_state(gan, key, image_size), jax.random.PRNGKey(0))


def _abstract(tree: Any, sharding: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _count(tree: Any) -> int:
    return int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))


def _bytes(tree: Any) -> int:
    return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree)))


def _analyse(compiled: Any) -> StepPlan:
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return StepPlan(
        arguments=int(memory.argument_size_in_bytes),
        outputs=int(memory.output_size_in_bytes),
        aliased=int(memory.alias_size_in_bytes),
        temporary=int(memory.temp_size_in_bytes),
        flops=float(cost.get("flops", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)),
    )
