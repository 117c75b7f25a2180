"""Resuming a run: its config reconciled with the one it was trained with, and its state
restored from the newest intact checkpoint (or initialised from the seed)."""

from __future__ import annotations

from pathlib import Path

import jax

from colorjax.config import (
    Config,
    ConfigError,
    differing_keys,
    get_key,
    keys_marked,
    load_json,
    save_json,
)
from colorjax.gan.build import GAN
from colorjax.gan.state import GANState, init_state
from colorjax.training import parallel
from colorjax.training.checkpoint import Checkpoints
from colorjax.training.init_from import starting_state

ARCHITECTURE_KEYS = keys_marked("architecture")  # fields that shape the networks' parameters
STATE_SWITCHES = keys_marked("switch")  # fields whose 0 <-> non-zero changes the state's parts


def reconcile_config(config: Config, workdir: Path, has_checkpoint: bool) -> list[str]:
    """Check ``config`` against the one a resumed run was trained with; write ``config.json``.

    Returns the changed (allowed) keys; a changed architecture, or a state knob switched on or
    off, is a ConfigError naming the fields.
    """
    path = workdir / "config.json"
    changed: list[str] = []
    if has_checkpoint and path.exists():
        previous = load_json(path)
        changed = differing_keys(previous, config)
        arch = [k for k in changed if k in ARCHITECTURE_KEYS]
        switched = [
            k
            for k in changed
            if k in STATE_SWITCHES and bool(get_key(previous, k)) != bool(get_key(config, k))
        ]
        for keys, what in ((arch, "model shape"), (switched, "train state (a knob on or off)")):
            if keys:
                details = ", ".join(
                    f"{k} (was {get_key(previous, k)!r}, now {get_key(config, k)!r})" for k in keys
                )
                raise ConfigError(
                    f"{workdir} holds a run with a different {what}: {details}. "
                    "Use another --workdir or the original settings."
                )
    if jax.process_index() == 0:
        save_json(config, path)
    return changed


def initial_state(
    gan: GAN, config: Config, checkpoints: Checkpoints, mesh
) -> tuple[GANState, str | None]:
    """Restore the newest intact checkpoint onto the mesh, or initialise from the seed and the
    starting weights (``init_from.starting_state``); with a line on the damaged checkpoints
    passed over, or on the starting weights, if any."""
    init = jax.jit(
        lambda key: init_state(gan, key, config.data.image_size),
        out_shardings=parallel.replicated(mesh),
    )
    key = jax.random.PRNGKey(config.train.seed)
    if checkpoints.latest_step() is None:
        state, notes = starting_state(init(key), config)
        return state, "; ".join(notes) or None
    abstract = jax.eval_shape(init, key)
    sharding = parallel.replicated(mesh)
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract
    )
    restored = checkpoints.restore_newest(target, fresh=lambda: init(key))
    return restored.state, restored.fallback_note("resumed from")
