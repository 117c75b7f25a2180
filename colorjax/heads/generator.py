"""The generator network a model config describes, with the output its head decodes."""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from colorjax.config import ConfigError, ModelConfig
from colorjax.heads.chroma import output_channels
from colorjax.models.encoder_unet import DEPTH as ENCODER_UNET_DEPTH
from colorjax.models.encoder_unet import EncoderUNet
from colorjax.models.remat import remat_network
from colorjax.models.unet import UNetGenerator

# The fields of ModelConfig the EfficientNet-encoder U-Net takes (the encoder fixes the rest).
_ENCODER_UNET_FIELDS = (
    "features",
    "norm",
    "num_groups",
    "dropout",
    "dropout_blocks",
    "upsample",
    "head",
    "init_std",
    "dtype",
    "conv_impl",
    "remat",
)


def generator_from_config(model: ModelConfig) -> nn.Module:
    """The generator ``model`` describes: ``out_channels`` a*b* channels for the regression
    head, one logit per colour bin for the classification head (its decoding settings, such as
    the temperature, belong to ``colorjax.heads.chroma``), rematerialised as a whole when
    ``model.remat`` is ``full``."""
    channels = output_channels(model.head, model.out_channels)
    if model.encoder == "efficientnet_lite0":
        if model.depth != ENCODER_UNET_DEPTH:
            raise ConfigError(
                f"model.depth must be {ENCODER_UNET_DEPTH} with model.encoder=efficientnet_lite0 "
                f"(its encoder downsamples {ENCODER_UNET_DEPTH} times), got {model.depth}"
            )
        fields = {name: getattr(model, name) for name in _ENCODER_UNET_FIELDS}
        network = remat_network(EncoderUNet, model.remat)
        return network(**fields, out_channels=channels, frozen_bn=model.encoder_bn == "frozen")
    fields = dataclasses.asdict(model)
    for name in ("temperature", "encoder", "pretrained", "encoder_bn"):
        fields.pop(name)
    fields["out_channels"] = channels
    return remat_network(UNetGenerator, model.remat)(**fields)
