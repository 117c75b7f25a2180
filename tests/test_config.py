import pytest

from colorjax.config import (
    Config,
    ConfigError,
    apply_overrides,
    differing_keys,
    from_dict,
    keys_marked,
    load_json,
    save_json,
    to_dict,
    valid_keys,
)
from experiments.cli import add_config_args, config_from_args
from experiments.presets import PRESETS, get_preset


def test_overrides_parse_by_field_type():
    cfg = apply_overrides(
        Config(),
        [
            "model.norm=group",
            "train.steps=20000",
            "train.lr_g=1e-3",
            "data.flip=false",
            "train.clip_norm=1",
        ],
    )
    assert cfg.model.norm == "group"
    assert cfg.train.steps == 20000 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr_g == pytest.approx(1e-3)
    assert cfg.data.flip is False
    assert cfg.train.clip_norm == 1.0 and isinstance(cfg.train.clip_norm, float)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"model\.nrom.*model\.norm"):
        apply_overrides(Config(), ["model.nrom=group"])
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(Config(), ["modle.norm=group"])


@pytest.mark.parametrize(
    "override", ["train.steps=lots", "train.steps=1.5", "data.flip=maybe", "train.lr_g=fast"]
)
def test_wrong_type_names_key(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        apply_overrides(Config(), [override])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Config(), ["model.norm"])


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"demo.*t4_128"):
        get_preset("t4-128")


def test_json_round_trip(tmp_path):
    cfg = apply_overrides(get_preset("t4_128"), ["disc.spectral=true", "train.real_label=0.9"])
    save_json(cfg, tmp_path / "config.json")
    assert load_json(tmp_path / "config.json") == cfg


def test_differing_keys():
    a = Config()
    b = apply_overrides(a, ["model.features=32", "train.steps=5"])
    assert differing_keys(a, b) == ["model.features", "train.steps"]
    assert differing_keys(a, b, sections=["model"]) == ["model.features"]


def test_every_preset_builds_and_cli_applies_overrides():
    import argparse

    for name in PRESETS:
        assert isinstance(get_preset(name), Config)
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(
        ["--preset", "t4_128", "--set", "model.norm=instance", "--set", "data.batch_size=8"]
    )
    cfg = config_from_args(args)
    assert (cfg.model.norm, cfg.data.batch_size, cfg.data.image_size) == ("instance", 8, 128)
    assert "parallel.data" in valid_keys(cfg)


def test_choices_and_ranges_are_checked_where_a_value_is_set():
    with pytest.raises(ConfigError, match=r"model\.norm: unknown value 'bogus'; valid: batch"):
        apply_overrides(Config(), ["model.norm=bogus"])
    with pytest.raises(ConfigError, match=r"train\.ema\.decay: must be \[0\.0, 1\.0\)"):
        apply_overrides(Config(), ["train.ema.decay=1"])
    with pytest.raises(ConfigError, match=r"valid keys in train\.ema: train\.ema\.decay"):
        apply_overrides(Config(), ["train.ema.rate=0.5"])
    assert apply_overrides(Config(), ["disc.norm=spectral"]).disc.norm == "spectral"


def test_keys_that_moved_into_sub_sections_keep_working():
    old = apply_overrides(Config(), ["train.ema_decay=0.99", "train.r1_every=8"])
    assert old.train.ema.decay == 0.99 and old.train.r1.every == 8
    tree = to_dict(Config())
    tree["train"] |= {"ada_target": 0.6}
    del tree["train"]["ada"]
    assert from_dict(tree).train.ada.target == 0.6


def test_resume_guards_come_from_field_metadata():
    assert "model.depth" in keys_marked("architecture")
    assert "disc.spectral" in keys_marked("architecture")
    assert "model.temperature" not in keys_marked("architecture")
    assert set(keys_marked("switch")) == {
        "train.ema.decay",
        "train.ada.target",
        "train.d_skip_above",
    }
