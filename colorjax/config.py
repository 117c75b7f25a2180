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
from typing import Any, Literal

# The choices of every string field, validated here when a value is set (and listed from here
# by the modules that dispatch on them).
Norm = Literal["batch", "instance", "group", "layer", "none"]
DiscNorm = Literal["batch", "instance", "group", "layer", "none", "spectral"]
Upsample = Literal["transpose", "resize_conv", "subpixel"]
Head = Literal["regression", "classification"]
DType = Literal["float32", "bfloat16", "float16"]
ConvImpl = Literal["auto", "native", "matmul", "hybrid", "onednn"]
Encoder = Literal["unet", "efficientnet_lite0"]
EncoderBn = Literal["frozen", "train"]
Remat = Literal["none", "blocks", "full"]
GanLoss = Literal["vanilla", "lsgan", "hinge"]
Schedule = Literal["constant", "linear_decay", "warmup_cosine"]
Distributed = Literal["auto", "on", "off"]

# Old keys of fields that moved into a sub-section, read as their new keys (old config.json
# files and command lines keep working).
RENAMED_KEYS = {
    "train.ema_decay": "train.ema.decay",
    "train.ema_start": "train.ema.start",
    "train.r1_weight": "train.r1.weight",
    "train.r1_every": "train.r1.every",
    "train.ada_target": "train.ada.target",
    "train.ada_interval": "train.ada.interval",
    "train.ada_images": "train.ada.images",
}


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names it and the valid choices."""


def knob(
    default: Any,
    *,
    architecture: bool = False,
    switch: bool = False,
    at_least: float | None = None,
    below: float | None = None,
) -> Any:
    """A config field with metadata: ``architecture`` (it shapes the networks' parameters: a
    run cannot resume with another value), ``switch`` (turning it on or off, 0 <-> non-zero,
    changes what the train state holds) and the range ``at_least <= value < below``."""
    metadata = {"architecture": architecture, "switch": switch, "at_least": at_least}
    return dataclasses.field(default=default, metadata=metadata | {"below": below})


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

    # unet: pix2pix's U-Net (every field below applies); efficientnet_lite0: an ImageNet-trained
    # EfficientNet-Lite0 as the encoder under a U-Net decoder (models/encoder_unet.py; depth 5)
    encoder: Encoder = knob("unet", architecture=True)
    pretrained: bool = True  # efficientnet_lite0: ImageNet weights (false: same net, random init)
    encoder_bn: EncoderBn = "frozen"  # efficientnet_lite0: BatchNorm statistics frozen or trained
    depth: int = knob(7, architecture=True, at_least=1)  # stride-2 downsamplings
    features: int = knob(64, architecture=True, at_least=1)  # width of the outermost level
    max_mult: int = knob(8, architecture=True, at_least=1)  # widths double, capped at features*this
    norm: Norm = knob("batch", architecture=True)
    num_groups: int = knob(32, architecture=True, at_least=1)  # group norm only
    dropout: float = knob(0.5, at_least=0.0, below=1.0)
    dropout_blocks: int = knob(3, at_least=0)  # innermost decoder blocks that use dropout
    upsample: Upsample = knob("transpose", architecture=True)
    out_channels: int = knob(2, architecture=True, at_least=1)  # regression head
    head: Head = knob("regression", architecture=True)  # classification: colour bins, heads/
    temperature: float = 0.38  # classification: annealed-mean decoding, lower = more vivid
    init_std: float = 0.02
    dtype: DType = "float32"  # compute dtype
    conv_impl: ConvImpl = "auto"  # convolution implementation, see colorjax/models/conv.py
    remat: Remat = "none"  # recompute activations in backward passes: colorjax/models/remat.py


@dataclasses.dataclass
class DiscConfig:
    """The PatchGAN discriminator on concat(L, ab)."""

    layers: int = knob(3, architecture=True, at_least=1)  # 3 = the 70x70 PatchGAN
    features: int = knob(64, architecture=True, at_least=1)
    norm: DiscNorm = knob("batch", architecture=True)
    num_groups: int = knob(32, architecture=True, at_least=1)
    spectral: bool = knob(False, architecture=True)  # spectral normalisation of every conv
    dropout: float = knob(0.0, at_least=0.0, below=1.0)
    slope: float = 0.2  # LeakyReLU negative slope
    init_std: float = 0.02


@dataclasses.dataclass
class EmaConfig:
    """Exponential moving average of the generator's weights (used for validation, export)."""

    decay: float = knob(0.0, switch=True, at_least=0.0, below=1.0)  # 0 = off
    start: int = knob(0, at_least=0)  # step from which it averages (before: copies the weights)


@dataclasses.dataclass
class R1Config:
    """The R1 penalty gamma on real pairs (Mescheder et al. 2018), lazily applied."""

    weight: float = knob(0.0, at_least=0.0)  # 0 = off
    every: int = knob(16, at_least=1)  # on every N-th step, its weight scaled by N


@dataclasses.dataclass
class AdaConfig:
    """Adaptive discriminator augmentation (Karras et al. 2020)."""

    target: float = knob(0.0, switch=True, at_least=0.0, below=1.0)  # r_t target (paper: 0.6)
    interval: int = knob(4, at_least=1)  # steps between adjustments of the probability p
    images: int = knob(20000, at_least=1)  # images shown for p to move from 0 to 1


@dataclasses.dataclass
class TrainConfig:
    """Losses, optimizers and the step budget."""

    steps: int = 20000
    seed: int = 0
    gan_loss: GanLoss = "vanilla"
    l1_weight: float = 100.0  # regression head: weight of L1 beside the adversarial loss
    ce_weight: float = 1.0  # classification head: weight of the cross-entropy beside it
    prior_mix: float = 0.5  # classification: uniform share of the rebalancing prior (1 = off)
    real_label: float = 1.0  # one-sided label smoothing: target for real (1.0 = off)
    pretrain_steps: int = 0  # L1-only generator steps before the GAN phase
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    schedule: Schedule = "constant"
    warmup_steps: int = 0  # warmup_cosine only
    decay_start: float = 0.5  # linear_decay: fraction of steps at the full rate
    clip_norm: float = 0.0  # clip_by_global_norm for both networks (0 = off)
    d_steps: int = 1  # discriminator updates per generator update
    diffaug: str = ""  # comma list of translation, cutout ("" = off)
    loss_scale: float = knob(2.0**15, at_least=1.0)  # float16 only: initial dynamic loss scale
    # Remedies for blobs, tints and a dominant discriminator (0 = off for each):
    ema: EmaConfig = dataclasses.field(default_factory=EmaConfig)
    r1: R1Config = dataclasses.field(default_factory=R1Config)
    ada: AdaConfig = dataclasses.field(default_factory=AdaConfig)
    # skip D updates while its accuracy on fakes is above this
    d_skip_above: float = knob(0.0, switch=True, at_least=0.0, below=1.0)
    # A pretrained encoder (model.encoder): its learning rate is lr_g times this, and it stays
    # frozen for the first freeze_encoder_steps steps while the decoder warms up.
    encoder_lr_mult: float = knob(1.0, at_least=0.0)
    freeze_encoder_steps: int = knob(0, at_least=0)
    # Start a new run's generator from an exported model folder or a workdir (WORKDIR[:best|
    # latest|STEP]); init_discriminator also takes a workdir's discriminator. A workdir that
    # already has checkpoints resumes from them instead.
    init_from: str = ""
    init_discriminator: bool = False


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
    distributed: Distributed = "auto"  # jax.distributed.initialize()


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
    """Every dotted leaf key of ``cfg``, e.g. ``model.norm`` or ``train.ema.decay``."""
    keys = []
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def leaf_fields(cfg: Any, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every leaf field of ``cfg`` by its dotted key."""
    fields = {}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            fields |= leaf_fields(value, f"{prefix}{field.name}.")
        else:
            fields[f"{prefix}{field.name}"] = field
    return fields


def keys_marked(mark: str) -> tuple[str, ...]:
    """The dotted keys whose field metadata sets ``mark`` (``architecture`` or ``switch``)."""
    return tuple(k for k, f in leaf_fields(Config()).items() if f.metadata.get(mark))


def get_key(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` in ``cfg``."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _field_type(cls: type, name: str) -> Any:
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def choices(kind: Any) -> tuple[str, ...]:
    """The values a ``Literal`` config type allows."""
    return typing.get_args(kind)


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


def _checked(key: str, value: Any, kind: Any, field: dataclasses.Field) -> Any:
    """``value`` converted to ``kind`` and checked against its choices and range."""
    allowed = choices(kind)
    base = str if allowed else kind
    if isinstance(value, str):
        value = parse_value(key, value, base)
    elif base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {base.__name__}, got {value!r}")
    if allowed and value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r}; valid: {', '.join(allowed)}")
    low, high = field.metadata.get("at_least"), field.metadata.get("below")
    if (low is not None and value < low) or (high is not None and value >= high):
        bounds = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"{key}: must be {bounds}, got {value!r}")
    return value


def set_key(cfg: Any, key: str, value: Any) -> Any:
    """A copy of ``cfg`` with dotted ``key`` set; strings are parsed by the field's type, and
    the value is checked against the field's choices and range (a ConfigError names it)."""
    key = RENAMED_KEYS.get(key, key)
    return _set_path(cfg, key, key.split("."), value)


def _set_path(cfg: Any, key: str, parts: list[str], value: Any, prefix: str = "") -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    name, rest = parts[0], parts[1:]
    current = getattr(cfg, name) if name in fields else None
    if name not in fields or dataclasses.is_dataclass(current) != bool(rest):
        if not prefix:
            valid = ", ".join(valid_keys(cfg))
            raise ConfigError(f"unknown config key {key!r}; valid keys: {valid}")
        valid = ", ".join(f"{prefix}{k}" for k in valid_keys(cfg))
        raise ConfigError(f"unknown config key {key!r}; valid keys in {prefix[:-1]}: {valid}")
    if rest:
        changed = _set_path(current, key, rest, value, f"{prefix}{name}.")
        return dataclasses.replace(cfg, **{name: changed})
    checked = _checked(key, value, _field_type(type(cfg), name), fields[name])
    return dataclasses.replace(cfg, **{name: checked})


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
    """Config from a nested dict such as ``to_dict`` wrote (old keys of moved fields read as
    their new ones); unknown keys are a ConfigError."""
    cfg = Config()
    for key, value in _flatten(tree).items():
        cfg = set_key(cfg, key, value)
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
        elif not prefix:
            raise ConfigError(f"config section {key!r} must be a mapping")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
