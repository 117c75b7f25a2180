"""The tf.data input pipeline: source -> decode -> crop/resize/flip -> batch of uint8 RGB.

    pipeline = data.build_pipeline("sample", image_size=64, batch_size=8, train=True, seed=0)
    for batch in pipeline.as_numpy():  # {"rgb": uint8 [8, 64, 64, 3]}
        ...

Modules: ``scan`` (probing every image once, the counts), ``sources`` (sources, mixes and their
catalogues), ``streams`` (the index streams that make resuming exact), ``transforms`` (decode
and crop one element), ``pipeline`` (assembly; its docstring tells how the stream is made) and
``eval_images`` (held-out images for validation and evaluation).
"""

from colorjax.data.eval_images import eval_split_images
from colorjax.data.pipeline import (
    Pipeline,
    build_pipeline,
    pipeline_from_config,
    validation_images,
)
from colorjax.data.scan import GRAY, DataStats
from colorjax.data.sources import (
    SAMPLE_EVAL_FRACTION,
    SAMPLE_FILES,
    SOURCE_FORMS,
    Source,
    draws_per_epoch,
    parse_mix,
    parse_source,
    sample_dir,
)

__all__ = [
    "GRAY",
    "SAMPLE_EVAL_FRACTION",
    "SAMPLE_FILES",
    "SOURCE_FORMS",
    "DataStats",
    "Pipeline",
    "Source",
    "build_pipeline",
    "draws_per_epoch",
    "eval_split_images",
    "parse_mix",
    "parse_source",
    "pipeline_from_config",
    "sample_dir",
    "validation_images",
]
