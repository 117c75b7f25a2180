"""The generator network a model config describes, with the output its head decodes."""

from __future__ import annotations

import dataclasses

from colorjax.config import ModelConfig
from colorjax.heads.chroma import output_channels
from colorjax.models.remat import remat_network
from colorjax.models.unet import UNetGenerator


def generator_from_config(model: ModelConfig) -> UNetGenerator:
    """The generator ``model`` describes: ``out_channels`` a*b* channels for the regression
    head, one logit per colour bin for the classification head (its decoding settings, such as
    the temperature, belong to ``colorjax.heads.chroma``), rematerialised as a whole when
    ``model.remat`` is ``full``."""
    fields = dataclasses.asdict(model)
    fields.pop("temperature")
    fields["out_channels"] = output_channels(model.head, model.out_channels)
    return remat_network(UNetGenerator, model.remat)(**fields)
