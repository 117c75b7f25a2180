"""How the generator's output becomes a*b*: the chroma head (regression or colour
classification), its colour bins and the bins' prior, and the generator built for a head."""

from colorjax.heads.chroma import ChromaHead, half_resolution, output_channels
from colorjax.heads.generator import generator_from_config

__all__ = ["ChromaHead", "generator_from_config", "half_resolution", "output_channels"]
