"""Rematerialisation (``jax.checkpoint``) of a network's blocks or of a whole network.

``model.remat`` trades compute for memory in training: ``blocks`` keeps only each block's
input for the backward pass and recomputes the block (activation, convolution, norm) there;
``full`` keeps only the network's input and recomputes its whole forward pass. Parameters,
their names and the numbers computed are the same in every mode, so a run can switch modes
when it resumes.

Keeping the convolution outputs of each block as well (``save_only_these_names`` on them) saved
nothing: the plan of ``pix2pix_unet128`` at 256 px, batch 16, held 1707 MB of temporaries with
and without it, and 1468 MB when a block keeps only its input. ``full`` saves nothing in the
GAN step either: its peak is in the generator's backward pass, which needs every activation,
recomputed or not.

A network applies both helpers, each of which acts only in its own mode::

    Block = remat_block(ConvNorm, mode)        # inside the network
    generator = remat_network(UNetGenerator, mode)(...)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax


def remat_block(block: type[nn.Module], mode: str) -> type[nn.Module]:
    """``block`` rematerialised in mode ``blocks``; the class itself otherwise."""
    return _rematerialised(block) if mode == "blocks" else block


def remat_network(network: type[nn.Module], mode: str) -> type[nn.Module]:
    """``network`` rematerialised as a whole in mode ``full``; the class itself otherwise."""
    return _rematerialised(network) if mode == "full" else network


def _call_with_train(module: nn.Module, x: jax.Array, train: bool) -> Any:
    return module.unrematerialised_call(x, train=train)


def _rematerialised(module: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``module`` whose ``__call__(x, *, train)`` runs under ``nn.remat``
    (``train`` static: it picks Python branches such as BatchNorm's statistics)."""
    checkpointed = nn.remat(_call_with_train, static_argnums=(2,))

    def __call__(self, x: jax.Array, *, train: bool) -> Any:
        return checkpointed(self, x, train)

    namespace = {"__call__": __call__, "unrematerialised_call": module.__call__}
    return type(module.__name__, (module,), namespace)
