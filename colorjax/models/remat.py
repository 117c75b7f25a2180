"""Rematerialisation (``jax.checkpoint``) of a network's blocks or of a whole network.

``model.remat`` trades compute for memory in training: ``blocks`` recomputes each block's
norm and activations in the backward pass but keeps its convolution outputs (marked with
``mark_conv_output``), so only the cheap element-wise work runs twice; ``full`` keeps only
the network's input and recomputes its whole forward pass. Parameters, their names and the
numbers computed are the same in every mode, so a run can switch modes when it resumes.

A network applies both helpers, each of which acts only in its own mode::

    Block = remat_block(ConvNorm, mode)        # inside the network
    generator = remat_network(UNetGenerator, mode)(...)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name

CONV_OUTPUT = "conv_output"
SAVE_CONV_OUTPUTS = jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT)


def mark_conv_output(y: jax.Array) -> jax.Array:
    """``y`` named as a convolution output, which ``blocks`` keeps for the backward pass."""
    return checkpoint_name(y, CONV_OUTPUT)


def remat_block(block: type[nn.Module], mode: str) -> type[nn.Module]:
    """``block`` rematerialised (keeping its convolution outputs) in mode ``blocks``; the
    class itself otherwise."""
    return _rematerialised(block, SAVE_CONV_OUTPUTS) if mode == "blocks" else block


def remat_network(network: type[nn.Module], mode: str) -> type[nn.Module]:
    """``network`` rematerialised as a whole (nothing kept) in mode ``full``; the class
    itself otherwise."""
    return _rematerialised(network, None) if mode == "full" else network


def _call_with_train(module: nn.Module, x: jax.Array, train: bool) -> Any:
    return module.unrematerialised_call(x, train=train)


def _rematerialised(module: type[nn.Module], policy: Any) -> type[nn.Module]:
    """A subclass of ``module`` whose ``__call__(x, *, train)`` runs under ``nn.remat``
    (``train`` static: it picks Python branches such as BatchNorm's statistics)."""
    checkpointed = nn.remat(_call_with_train, static_argnums=(2,), policy=policy)

    def __call__(self, x: jax.Array, *, train: bool) -> Any:
        return checkpointed(self, x, train)

    namespace = {"__call__": __call__, "unrematerialised_call": module.__call__}
    return type(module.__name__, (module,), namespace)
