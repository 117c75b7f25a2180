"""One typed config tree with dotted command-line overrides and a JSON round trip.

cfg = Config()
cfg = apply_overrides(cfg, ["model.norm=group", "train.steps=20000"])
save_json(cfg, "runs/x/config.json"); load_json("runs/x/config.json")
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names it and the valid choices."""


@dataclasses.dataclass
class DataConfig:
    """Where images come from and how they are cut into training examples."""

    source: str = "sample"  # sample | folder:PATH | tfds:NAME[:SPLIT]; a mix: "folder:A,folder:B*2"
    image_size: int = 128  # square training crop, pixels
    batch_size: int = 16  # global batch (all devices and hosts)
    eval_fraction: float = 0.1  # folder sources without train/ and eval/ sub-folders (each source)
    min_crop_scale: float = 0.35  # random resized crop: smallest fraction of the image area
    flip: bool = True  # random horizontal flip when training
    skip_gray: bool = True  # drop photos whose chroma is ~0 from training and validation
    data_dir: str = ""  # TFDS data_dir ("" = TFDS default)
    shuffle_buffer: int = 2048  # TFDS sources only: records are streamed


@dataclasses.dataclass
class ModelConfig:
    """The U-Net generator: L [B,H,W,1] -> ab [B,H,W,2]."""

    depth: int = 7  # stride-2 downsamplings
    features: int = 64  # width of the outermost level
    max_mult: int = 8  # widths double per level, capped at features * max_mult
    norm: str = "batch"  # batch | instance | group | layer | none
    num_groups: int = 32  # group norm only
    dropout: float = 0.5
    dropout_blocks: int = 3  # innermost decoder blocks that use dropout
    upsample: str = "transpose"  # transpose | resize_conv | subpixel
    out_channels: int = 2  # regression head
    head: str = "regression"  # regression (a*b*, L1) | classification (colour bins, see heads.py)
    temperature: float = 0.38  # classification: annealed-mean decoding, lower = more vivid
    init_std: float = 0.02
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 | float16
    conv_impl: str = "auto"  # convolution implementation, see colorjax/models/conv.py


@dataclasses.dataclass
class DiscConfig:
    """The PatchGAN discriminator on concat(L, ab)."""

    layers: int = 3  # 3 = the 70x70 PatchGAN
    features: int = 64
    norm: str = "batch"  # batch | instance | group | layer | none | spectral
    num_groups: int = 32
    spectral: bool = False  # spectral normalisation of every conv
    dropout: float = 0.0
    slope: float = 0.2  # LeakyReLU negative slope
    init_std: float = 0.02


@dataclasses.dataclass
class TrainConfig:
    """Losses, optimizers and the step budget."""

    steps: int = 20000
    seed: int = 0
    gan_loss: str = "vanilla"  # vanilla | lsgan | hinge
    l1_weight: float = 100.0  # regression head: weight of L1 beside the adversarial loss
    ce_weight: float = 1.0  # classification head: weight of the cross-entropy beside it
    prior_mix: float = 0.5  # classification: uniform share of the rebalancing prior (1 = off)
    real_label: float = 1.0  # one-sided label smoothing: target for real (1.0 = off)
    pretrain_steps: int = 0  # L1-only generator steps before the GAN phase
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    schedule: str = "constant"  # constant | linear_decay | warmup_cosine
    warmup_steps: int = 0  # warmup_cosine only
    decay_start: float = 0.5  # linear_decay: fraction of steps at the full rate
    clip_norm: float = 0.0  # clip_by_global_norm for both networks (0 = off)
    d_steps: int = 1  # discriminator updates per generator update
    diffaug: str = ""  # comma list of translation, cutout ("" = off)
    loss_scale: float = 2.0**15  # float16 only: initial dynamic loss scale
    # Remedies for blobs, tints and a dominant discriminator (0 = off for each):
    ema_decay: float = 0.0  # EMA of the generator's weights, used for validation and export
    ema_start: int = 0  # step from which the EMA averages (before it, it copies the weights)
    r1_weight: float = 0.0  # R1 penalty gamma on real pairs (Mescheder et al. 2018)
    r1_every: int = 16  # R1 on every N-th step, its weight scaled by N (lazy regularisation)
    ada_target: float = 0.0  # ADA: target of r_t = E[sign(D(real))] (Karras et al. 2020: 0.6)
    ada_interval: int = 4  # ADA: steps between adjustments of the augmentation probability p
    ada_images: int = 20000  # ADA: images shown for p to move from 0 to 1 at full speed
    d_skip_above: float = 0.0  # skip D updates while its accuracy on fakes is above this


@dataclasses.dataclass
class LogConfig:
    """How often the run reports, samples and validates."""

    every: int = 50  # pull metrics from the device, progress bar and metrics.jsonl
    sample_every: int = 500  # PNG grid of the fixed validation batch
    eval_every: int = 1000  # validation metrics (PSNR, colorfulness vs gray)
    eval_images: int = 64  # validation images during training, per source of a mix


@dataclasses.dataclass
class CheckpointConfig:
    """When checkpoints are written and which are kept."""

    every: int = 1000  # steps
    minutes: float = 10.0  # also save when this much time passed since the last save
    keep: int = 3  # latest checkpoints kept (plus the best)
    # Validation metric that picks the best checkpoint (higher is better); for a mix, "psnr" is
    # the mean over its sources and "<source>/psnr" one source's.
    best_metric: str = "psnr"


@dataclasses.dataclass
class ParallelConfig:
    """Data parallelism across devices and hosts (jax.sharding)."""

    data: int = -1  # devices on the mesh's data axis (-1 = all)
    distributed: str = "auto"  # auto | on | off: jax.distributed.initialize()


@dataclasses.dataclass
class Config:
    """The whole run."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    disc: DiscConfig = dataclasses.field(default_factory=DiscConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    ckpt: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    parallel: ParallelConfig = dataclasses.field(default_factory=ParallelConfig)


def valid_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted leaf key of ``cfg``, e.g. ``model.norm``."""
    keys = []
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def _field_type(cls: type, name: str) -> type:
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def parse_value(key: str, text: str, kind: type) -> Any:
    """``text`` read as ``kind`` (bool, int, float or str); a ConfigError names ``key``."""
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a bool (true/false), got {text!r}")
    try:
        if kind is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{key}: expected {kind.__name__}, got {text!r}") from None
    return text


def set_key(cfg: Config, key: str, value: Any) -> Config:
    """A copy of ``cfg`` with dotted ``key`` set; strings are parsed by the field's type."""
    section_name, _, leaf = key.partition(".")
    sections = [f.name for f in dataclasses.fields(cfg)]
    if section_name not in sections or not leaf:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys(cfg))}")
    section = getattr(cfg, section_name)
    names = [f.name for f in dataclasses.fields(section)]
    if leaf not in names:
        valid = ", ".join(f"{section_name}.{n}" for n in names)
        raise ConfigError(f"unknown config key {key!r}; valid keys in {section_name}: {valid}")
    kind = _field_type(type(section), leaf)
    if isinstance(value, str):
        value = parse_value(key, value, kind)
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    return dataclasses.replace(cfg, **{section_name: dataclasses.replace(section, **{leaf: value})})


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """Apply ``key=value`` strings in order."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        cfg = set_key(cfg, key.strip(), text.strip())
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """Nested plain dict of ``cfg``."""
    return dataclasses.asdict(cfg)


def from_dict(tree: dict[str, Any]) -> Config:
    """Config from a nested dict such as ``to_dict`` wrote; unknown keys are a ConfigError."""
    cfg = Config()
    for section, values in tree.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        for leaf, value in values.items():
            cfg = set_key(cfg, f"{section}.{leaf}", value)
    return cfg


def save_json(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as indented JSON."""
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load_json(path: str | Path) -> Config:
    """Read a config written by ``save_json``."""
    return from_dict(json.loads(Path(path).read_text()))


def differing_keys(a: Config, b: Config, sections: Iterable[str] | None = None) -> list[str]:
    """Dotted keys whose values differ between ``a`` and ``b`` (optionally within ``sections``)."""
    flat_a, flat_b = _flatten(to_dict(a)), _flatten(to_dict(b))
    keys = [k for k in flat_a if flat_a[k] != flat_b.get(k)]
    if sections is not None:
        allowed = tuple(f"{s}." for s in sections)
        keys = [k for k in keys if k.startswith(allowed)]
    return keys


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
