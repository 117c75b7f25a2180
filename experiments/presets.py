"""Named configurations: each starts from colorjax.config's defaults and overrides a few fields."""

from __future__ import annotations

from collections.abc import Callable

from colorjax.config import Config, ConfigError, apply_overrides


def demo() -> Config:
    """The embedded default: scikit-image's bundled photos, small widths, minutes on a CPU."""
    return apply_overrides(
        Config(),
        [
            "data.source=sample",
            "data.image_size=64",
            "data.batch_size=8",
            "data.min_crop_scale=0.08",
            "model.depth=6",
            "model.features=16",
            "model.upsample=resize_conv",
            "model.dropout=0.0",
            "disc.layers=2",
            "disc.features=16",
            "disc.dropout=0.1",
            "train.steps=1200",
            "train.pretrain_steps=400",
            "train.l1_weight=50",
            "train.real_label=0.9",
            "train.lr_g=1e-3",
            "train.lr_d=2e-4",
            "train.schedule=linear_decay",
            "train.decay_start=0.5",
            "train.clip_norm=1.0",
            "train.diffaug=translation,cutout",
            "log.every=20",
            "log.sample_every=200",
            "log.eval_every=200",
            "log.eval_images=16",
            "ckpt.every=200",
            "ckpt.minutes=5",
        ],
    )


# Imagenette at 128 px, batch 16, the full-depth U-Net and the 70x70 PatchGAN.
IMAGENETTE_128 = [
    "data.source=tfds:imagenette/320px-v2",
    "data.image_size=128",
    "data.batch_size=16",
    "model.depth=7",
    "model.features=64",
    "model.norm=batch",
    "disc.layers=3",
]


def t4_128() -> Config:
    """A 16 GB T4 (Colab): Imagenette at 128x128, batch 16, the full-width U-Net and PatchGAN."""
    return apply_overrides(
        Config(),
        [
            *IMAGENETTE_128,
            "disc.features=64",
            "disc.dropout=0.1",
            "train.steps=60000",
            "train.pretrain_steps=5000",
            "train.real_label=0.9",
            "train.clip_norm=1.0",
            "train.schedule=warmup_cosine",
            "train.warmup_steps=1000",
            "log.every=100",
            "log.sample_every=1000",
            "log.eval_every=2500",
            "ckpt.every=2500",
            "ckpt.minutes=10",
        ],
    )


def pix2pix_unet128() -> Config:
    """The faithful pix2pix colorization reference: unet_128, 70x70 PatchGAN, GAN + 100 L1."""
    return apply_overrides(
        Config(),
        [
            *IMAGENETTE_128,
            "model.upsample=transpose",
            "model.dropout=0.5",
            "model.dropout_blocks=3",
            "disc.features=64",
            "disc.norm=batch",
            "train.gan_loss=vanilla",
            "train.l1_weight=100",
            "train.lr_g=2e-4",
            "train.lr_d=2e-4",
            "train.b1=0.5",
            "train.schedule=linear_decay",
            "train.decay_start=0.5",
            "train.clip_norm=0",
            "train.real_label=1.0",
            "train.steps=200000",
        ],
    )


def cbsd_cpu() -> Config:
    """The shipped reference model: CBSD432 photos (evaluate on CBSD68), 128 px crops, a
    32-wide GroupNorm U-Net; 3000 L1 steps, then 2000 GAN steps; ~2 hours on 2 CPU cores."""
    return apply_overrides(
        Config(),
        [
            "data.source=folder:../shared/data/CBSD432",
            "data.image_size=128",
            "data.batch_size=16",
            "data.min_crop_scale=0.2",
            "model.depth=7",
            "model.features=32",
            "model.norm=group",
            "model.num_groups=16",
            "model.upsample=resize_conv",
            "model.dropout=0.0",
            "disc.layers=3",
            "disc.features=32",
            "disc.norm=spectral",
            "disc.dropout=0.1",
            "train.steps=5000",
            "train.pretrain_steps=3000",
            "train.real_label=0.9",
            "train.lr_g=2e-4",
            "train.lr_d=1e-4",
            "train.schedule=linear_decay",
            "train.decay_start=0.6",
            "train.clip_norm=1.0",
            "train.diffaug=translation",
            "log.every=50",
            "log.sample_every=1000",
            "log.eval_every=500",
            "log.eval_images=32",
            "ckpt.every=500",
            "ckpt.minutes=10",
            "ckpt.keep=12",
        ],
    )


# The photos the reference model trains on: BSDS (CBSD432) and one photo per ImageNet class.
DIVERSE_PHOTOS = "folder:../shared/data/CBSD432,folder:../shared/data/imagenet900"


def study_cpu() -> Config:
    """The base of the study of what fixes colour blobs and tints: cbsd_cpu's recipe on the
    diverse mix at 64 px (a 6-deep U-Net, a 2-layer PatchGAN); 1200 reconstruction steps,
    then 800 GAN steps; ~15 minutes each on 2 CPU cores."""
    return apply_overrides(
        cbsd_cpu(),
        [
            f"data.source={DIVERSE_PHOTOS}",
            "data.image_size=64",
            "model.depth=6",
            "disc.layers=2",
            "train.steps=2000",
            "train.pretrain_steps=1200",
            "log.sample_every=500",
            "log.eval_images=16",
            "ckpt.keep=2",
        ],
    )


def mix_cpu() -> Config:
    """Reference model v2: the diverse mix (CBSD432 + imagenet900; evaluate on CBSD68
    and imagenet900's held-out photos), 128 px crops, a 32-wide GroupNorm U-Net with the colour
    classification head and an EMA of its weights; 4000 cross-entropy steps, ~1.5 hours on
    2 CPU cores."""
    return apply_overrides(
        cbsd_cpu(),
        [
            f"data.source={DIVERSE_PHOTOS}",
            "model.head=classification",
            "model.temperature=0.2",
            "train.steps=4000",
            "train.pretrain_steps=4000",
            "train.ema.decay=0.999",
            "train.ema.start=1000",
            "log.eval_every=1000",
            "log.sample_every=1000",
            "ckpt.every=500",
            "ckpt.keep=30",
        ],
    )


def ref_cpu() -> Config:
    """The shipped reference model v3: mix_cpu's data and EMA on an ImageNet-trained
    EfficientNet-Lite0 encoder under a 32-wide GroupNorm U-Net decoder (``model.encoder``) with
    the regression head (the encoder pilot's choice), L1 only at a constant rate; trained in
    segments, each continuing from the last with ``train.init_from``."""
    return apply_overrides(
        mix_cpu(),
        [
            "model.encoder=efficientnet_lite0",
            "model.depth=5",
            "model.head=regression",
            "train.steps=20000",
            "train.pretrain_steps=20000",
            "train.schedule=constant",
            "train.ema.start=500",
        ],
    )


PRESETS: dict[str, Callable[[], Config]] = {
    "demo": demo,
    "t4_128": t4_128,
    "pix2pix_unet128": pix2pix_unet128,
    "cbsd_cpu": cbsd_cpu,
    "study_cpu": study_cpu,
    "mix_cpu": mix_cpu,
    "ref_cpu": ref_cpu,
}


def get_preset(name: str) -> Config:
    """The preset called ``name``; an unknown name is a ConfigError listing the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
