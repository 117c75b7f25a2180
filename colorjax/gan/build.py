"""What a GAN step closes over: the networks, the head, the optimizers and their schedules,
built from a config (bad choices raise clear errors here, before anything runs)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import numpy as np
import optax

from colorjax import heads
from colorjax.config import Config
from colorjax.gan import ada, augment, optim
from colorjax.models import PatchDiscriminator, conv
from colorjax.models.remat import remat_network


@dataclasses.dataclass(frozen=True)
class GAN:
    """The networks, optimizers and settings a step closes over (no arrays)."""

    config: Config
    generator: nn.Module
    head: heads.ChromaHead
    discriminator: nn.Module
    schedule_g: optax.Schedule
    schedule_d: optax.Schedule
    tx_g: optax.GradientTransformation
    tx_d: optax.GradientTransformation
    diffaug: tuple[str, ...]


def build_gan(config: Config, class_weights: np.ndarray | None = None) -> GAN:
    """Networks and optimizers described by ``config``; bad choices raise clear errors now.

    ``class_weights`` [Q]: the classification head's rebalancing weights
    (``colorjax.heads.binprior``);
    None weighs every colour bin alike.
    """
    ada.check_config(config.train)
    schedule_g = optim.generator_schedule(config.train)
    schedule_d = optim.discriminator_schedule(config.train)
    return GAN(
        config=config,
        generator=heads.generator_from_config(config.model),
        head=make_head(config, class_weights),
        discriminator=remat_network(PatchDiscriminator, config.model.remat)(
            **dataclasses.asdict(config.disc),
            dtype=config.model.dtype,
            conv_impl=discriminator_conv_impl(config),
            remat=config.model.remat,
        ),
        schedule_g=schedule_g,
        schedule_d=schedule_d,
        tx_g=optim.generator_optimizer(schedule_g, config),
        tx_d=optim.make_optimizer(schedule_d, config.train),
        diffaug=augment.parse_policy(config.train.diffaug),
    )


def discriminator_conv_impl(config: Config) -> str:
    """The discriminator's convolutions: the model's, differentiable twice when R1 is on."""
    impl = config.model.conv_impl
    return conv.twice_differentiable(impl) if config.train.r1.weight > 0 else impl


def make_head(config: Config, class_weights: np.ndarray | None = None) -> heads.ChromaHead:
    """The decoding and loss of ``config.model.head``."""
    return heads.ChromaHead(
        config.model.head,
        depth=config.model.depth,
        temperature=config.model.temperature,
        class_weights=class_weights,
    )
