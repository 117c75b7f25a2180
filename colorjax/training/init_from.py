"""A new run's starting weights: the pretrained encoder's ImageNet weights
(``model.pretrained``) and a generator (and discriminator) taken from an exported model folder
or another run (``train.init_from``). The optimizers start fresh; an EMA starts from the new
weights. A workdir that has checkpoints resumes from them instead (``resume.initial_state``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from colorjax.config import (
    Config,
    ConfigError,
    differing_keys,
    from_dict,
    get_key,
    keys_marked,
    load_json,
)
from colorjax.gan import ema
from colorjax.gan.state import GANState, split_variables
from colorjax.heads.bundle import is_bundle, read_bundle
from colorjax.models.encoder_unet import ENCODER_NAME
from colorjax.training.checkpoint import Checkpoints, restore_chosen

ARCHITECTURE_KEYS = keys_marked("architecture")


@dataclasses.dataclass(frozen=True)
class Source:
    """Weights to start from: the generator's variables, maybe the discriminator's."""

    description: str
    model: Any  # the ModelConfig the weights were trained with
    generator: dict  # {"params": .., other collections}
    discriminator: dict | None = None  # {"params": .., other collections}; workdirs only
    disc_config: Any = None


def starting_state(state: GANState, config: Config) -> tuple[GANState, list[str]]:
    """``state`` (a fresh one) with the starting weights ``config`` asks for placed in it,
    and a line for each."""
    notes = []
    g_params, g_state = state.g_params, state.g_state
    d_params, d_state = state.d_params, state.d_state
    if config.model.encoder != "unet" and config.model.pretrained and not config.train.init_from:
        from colorjax.models.efficientnet_weights import pretrained_variables, weights_source

        g_params, g_state = _with_encoder(g_params, g_state, pretrained_variables(None))
        notes.append(f"encoder: ImageNet weights from {weights_source()}")
    if config.train.init_from:
        source = load_source(config.train.init_from)
        check_compatible(source.model, config.model, "model", source.description)
        g_params, g_state = split_variables(_host_copy(source.generator))
        notes.append(f"generator: from {source.description}")
        if config.train.init_discriminator:
            if source.discriminator is None:
                raise ConfigError(
                    f"train.init_discriminator: {source.description} holds no discriminator "
                    "(only a training workdir does)"
                )
            check_compatible(source.disc_config, config.disc, "disc", source.description)
            d_params, d_state = split_variables(_host_copy(source.discriminator))
            notes.append(f"discriminator: from {source.description}")
    if not notes:
        return state, notes
    started = state.replace(
        g_params=g_params,
        g_state=g_state,
        d_params=d_params,
        d_state=d_state,
        ema=ema.init_ema(config.train.ema.decay, g_params, g_state),
    )
    try:
        return jax.tree.map(_like, started, state), notes
    except ValueError as err:  # another tree structure
        raise ConfigError(
            f"train.init_from: the weights do not fit this run's networks: {err}"
        ) from None


def load_source(spec: str) -> Source:
    """The weights ``spec`` names: a model folder (``weights/``), or a workdir with an optional
    ``:latest``, ``:best`` or ``:STEP`` (default latest; its EMA weights when it keeps some)."""
    path, _, step = spec.rpartition(":") if _has_step_suffix(spec) else (spec, "", "")
    if is_bundle(path):
        description, variables = read_bundle(path)
        model = from_dict({"model": description["model"]}).model
        return Source(f"model folder {path}", model, variables)
    workdir = Path(path)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(
            f"train.init_from: {path} is neither a model folder (generator.json + "
            "generator.msgpack) nor a training workdir (config.json + checkpoints/)"
        )
    config = load_json(workdir / "config.json")
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    try:
        chosen, saved = restore_chosen(checkpoints, step or None, workdir)
    finally:
        checkpoints.close()
    params, norm_state = ema.generator_weights(
        saved.get("ema", {}), saved["g_params"], saved.get("g_state", {})
    )
    return Source(
        f"workdir {workdir} step {chosen}",
        config.model,
        {"params": params, **norm_state},
        {"params": saved["d_params"], **saved.get("d_state", {})},
        config.disc,
    )


def _has_step_suffix(spec: str) -> bool:
    suffix = spec.rpartition(":")[2]
    return ":" in spec and (suffix in ("latest", "best") or suffix.isdigit())


def check_compatible(source: Any, target: Any, section: str, description: str) -> None:
    """A ConfigError naming the architecture fields of ``section`` that differ."""
    wrap = {"model": lambda m: Config(model=m), "disc": lambda d: Config(disc=d)}[section]
    keys = differing_keys(wrap(source), wrap(target), [section])
    differing = [key for key in keys if key in ARCHITECTURE_KEYS]
    if differing:
        details = ", ".join(
            f"{key} (source {get_key(wrap(source), key)!r}, this run "
            f"{get_key(wrap(target), key)!r})"
            for key in differing
        )
        raise ConfigError(f"train.init_from: {description} has another architecture: {details}")


def _with_encoder(params: Any, state: dict, pretrained: dict) -> tuple[Any, dict]:
    """``params`` and ``state`` with the encoder's sub-trees replaced by ``pretrained``'s."""
    params = {**params, ENCODER_NAME: pretrained["params"]}
    stats = state.get("batch_stats", {})
    if "batch_stats" in pretrained:
        state = {**state, "batch_stats": {**stats, ENCODER_NAME: pretrained["batch_stats"]}}
    return params, state


def _host_copy(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)


def _like(new: Any, old: Any) -> Any:
    """``new`` as an array of ``old``'s dtype and sharding; a shape mismatch names both."""
    if np.shape(new) != np.shape(old):
        raise ConfigError(
            f"train.init_from: a weight of shape {np.shape(new)} where this run has {old.shape}"
        )
    return jax.device_put(np.asarray(new, old.dtype), old.sharding)
