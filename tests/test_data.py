"""The input pipeline: sources, bad files, determinism, resume, sharding, splits, errors."""

import collections
import dataclasses
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from test_decoding import broken_cases, decodable_cases

from colorjax import color, data
from colorjax.config import Config, apply_overrides
from colorjax.imaging import decoding
from experiments import bench, inspect_data

SIZE = 32


def take(pipeline: data.Pipeline, count: int | None = None) -> list[dict[str, np.ndarray]]:
    return list(itertools.islice(pipeline.as_numpy(), count))


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b, strict=True):
        np.testing.assert_array_equal(batch_a["rgb"], batch_b["rgb"])


def concat_processes(per_process: list[list[dict]]) -> list[dict]:
    """Batch k of every process, concatenated in process order."""
    return [
        {key: np.concatenate([b[key] for b in batches]) for key in ("rgb",)}
        for batches in zip(*per_process, strict=True)
    ]


def write_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` smooth random colour photos of assorted sizes, alternately JPEG and PNG."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        blobs = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
        photo = blobs.resize(
            (int(rng.integers(40, 72)), int(rng.integers(30, 60))), Image.Resampling.BILINEAR
        )
        path = folder / f"photo{i:02d}.{'jpg' if i % 2 else 'png'}"
        photo.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def photos(tmp_path) -> Path:
    write_photos(tmp_path / "photos", 5)
    return tmp_path / "photos"


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """Every awkward case of ``test_imageio`` written as files, plus two plain photos."""
    folder = tmp_path / "bad"
    write_photos(folder / "nested", 2)
    cases = {
        **{k: v[0] for k, v in decodable_cases().items()},
        **{k: v[0] for k, v in broken_cases().items()},
    }
    for name, blob in cases.items():
        (folder / name).write_bytes(blob)
    (folder / "readme.txt").write_text("not listed: wrong extension")
    return folder


def folder_pipeline(folder: Path, **overrides) -> data.Pipeline:
    options = dict(image_size=SIZE, batch_size=2, train=True, eval_fraction=0.0, seed=0)
    return data.build_pipeline(f"folder:{folder}", **{**options, **overrides})


# ----------------------------------------------------------------------------- bad input


def test_bad_files_are_decoded_or_skipped_and_counted(bad_folder, caplog):
    with caplog.at_level(logging.INFO, logger="colorjax.data"):
        train = folder_pipeline(bad_folder, batch_size=4)
    decodable, broken = decodable_cases(), broken_cases()
    gray = sorted(name for name, (_, is_gray) in decodable.items() if is_gray)
    assert train.stats.found == len(decodable) + len(broken) + 2
    assert train.stats.decoded == len(decodable) + 2
    assert train.stats.skipped == {
        decoding.EMPTY: 1,
        decoding.CORRUPT: 1,
        decoding.NOT_AN_IMAGE: 1,
        data.GRAY: len(gray),
    }
    used = {Path(it.key).name for it in train.items}
    assert used == {n for n, (_, g) in decodable.items() if not g} | {"photo00.png", "photo01.jpg"}
    summaries = [r for r in caplog.records if "found" in r.getMessage()]
    assert len(summaries) == 1 and summaries[0].levelno == logging.WARNING
    batch = take(train, 1)[0]
    assert batch["rgb"].shape == (4, SIZE, SIZE, 3) and batch["rgb"].dtype == np.uint8


def test_every_decodable_file_reaches_the_eval_batches(bad_folder):
    evaluation = folder_pipeline(bad_folder, train=False, eval_fraction=1.0, batch_size=4)
    assert data.GRAY not in evaluation.stats.skipped  # gray images are kept for eval by default
    batches = take(evaluation)
    assert (
        sum(len(b["rgb"]) for b in batches) == evaluation.stats.eval == len(decodable_cases()) + 2
    )
    assert all(
        b["rgb"].dtype == np.uint8 and b["rgb"].shape[1:] == (SIZE, SIZE, 3) for b in batches
    )


# ----------------------------------------------------------------------------- sources


def test_sample_source_splits_each_photo_into_disjoint_regions():
    train = data.build_pipeline("sample", image_size=SIZE, batch_size=4, train=True)
    evaluation = data.build_pipeline("sample", image_size=SIZE, batch_size=4, train=False)
    present = [n for n in data.SAMPLE_FILES if (data.sample_dir() / n).exists()]
    assert train.stats.found == len(present) > 0 and train.stats.skipped == {}
    assert {it.key for it in train.items} == {it.key for it in evaluation.items}
    regions = {it.key: it.region for it in train.items}
    for item in evaluation.items:
        y0, x0, y1, x1 = item.region
        ty0, tx0, ty1, tx1 = regions[item.key]
        assert min(y1, ty1) <= max(y0, ty0) or min(x1, tx1) <= max(x0, tx0)  # no overlap
    batch = take(train, 1)[0]
    assert batch["rgb"].dtype == np.uint8 and batch["rgb"].shape == (4, SIZE, SIZE, 3)
    _, ab = color.rgb8_to_network(batch["rgb"])
    assert float(ab.std()) > 0.01  # colour photos, not gray
    assert sum(len(b["rgb"]) for b in take(evaluation)) == len(present)


def test_folder_hash_split_is_disjoint_and_complete(tmp_path):
    paths = write_photos(tmp_path / "many", 12)
    train = folder_pipeline(tmp_path / "many", eval_fraction=0.4)
    evaluation = folder_pipeline(tmp_path / "many", eval_fraction=0.4, train=False)
    train_keys, eval_keys = {it.key for it in train.items}, {it.key for it in evaluation.items}
    assert train_keys and eval_keys and not train_keys & eval_keys
    assert train_keys | eval_keys == {str(p) for p in paths}
    assert (train.stats.train, train.stats.eval) == (len(train_keys), len(eval_keys))
    again = folder_pipeline(tmp_path / "many", eval_fraction=0.4, train=False)
    assert [it.key for it in again.items] == [it.key for it in evaluation.items]


@pytest.mark.parametrize("eval_folder", ["eval", "val"])
def test_folder_train_and_eval_subfolders_are_used(tmp_path, eval_folder):
    write_photos(tmp_path / "root" / "train", 3)
    write_photos(tmp_path / "root" / eval_folder / "deeper", 2, seed=1)
    evaluation = folder_pipeline(tmp_path / "root", train=False, eval_fraction=0.0)
    assert {Path(it.key).parent.name for it in evaluation.items} == {"deeper"}
    assert (evaluation.stats.train, evaluation.stats.eval) == (3, 2)


@pytest.fixture(scope="module")
def mock_flowers():
    with tfds.testing.mock_data(num_examples=10):
        yield "tfds:tf_flowers"


def tfds_pipeline(source: str, **overrides) -> data.Pipeline:
    options = dict(
        image_size=SIZE, batch_size=2, train=True, eval_fraction=0.2, seed=0, shuffle_buffer=4
    )
    return data.build_pipeline(source, **{**options, **overrides})


def test_tfds_carves_eval_out_of_a_train_only_dataset(mock_flowers):
    train = tfds_pipeline(mock_flowers)
    evaluation = tfds_pipeline(mock_flowers, train=False)
    assert (train.stats.found, train.stats.train, train.stats.eval) == (10, 8, 2)
    eval_keys = [it.key for it in evaluation.items]
    assert eval_keys == ["tf_flowers:train#0", "tf_flowers:train#1"]
    assert not set(eval_keys) & {it.key for it in train.items}
    assert sum(len(b["rgb"]) for b in take(evaluation)) == 2
    assert take(train, 1)[0]["rgb"].shape == (2, SIZE, SIZE, 3)


def test_tfds_named_split_is_read_whole(mock_flowers):
    evaluation = tfds_pipeline(f"{mock_flowers}:train", train=False, batch_size=4)
    assert len(evaluation.items) == 10 and evaluation.stats.train is None
    assert [len(b["rgb"]) for b in take(evaluation)] == [4, 4, 2]


def test_tfds_resume_and_sharding_are_exact(mock_flowers):
    fresh = take(tfds_pipeline(mock_flowers, batch_size=4), 6)  # 8 records: epochs of 2 steps
    assert_same_batches(take(tfds_pipeline(mock_flowers, batch_size=4, start_step=3), 3), fresh[3:])
    halves = [
        take(tfds_pipeline(mock_flowers, batch_size=4, process_index=p, process_count=2), 3)
        for p in range(2)
    ]
    assert_same_batches(concat_processes(halves), fresh[:3])


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_batches_other_seed_other_batches(photos):
    first = take(folder_pipeline(photos, seed=3), 4)
    assert_same_batches(first, take(folder_pipeline(photos, seed=3), 4))
    other = take(folder_pipeline(photos, seed=4), 4)
    assert any(not np.array_equal(a["rgb"], b["rgb"]) for a, b in zip(first, other, strict=True))


def test_start_step_yields_the_batches_of_an_uninterrupted_run(photos):
    fresh = take(folder_pipeline(photos), 8)  # 5 images, batch 2: crosses epoch boundaries
    for start in (1, 3, 5):
        assert_same_batches(
            take(folder_pipeline(photos, start_step=start), 8 - start), fresh[start:]
        )


def test_epochs_visit_every_image_in_a_new_order(photos):
    pipeline = folder_pipeline(photos, batch_size=5, flip=False, min_crop_scale=1.0)
    one, two = take(pipeline, 2)
    assert not np.array_equal(one["rgb"], two["rgb"])
    first_means = sorted(np.round(one["rgb"].mean(axis=(1, 2, 3)), 2))
    assert first_means == sorted(np.round(two["rgb"].mean(axis=(1, 2, 3)), 2))


def test_processes_split_each_global_batch(photos):
    single = take(folder_pipeline(photos, batch_size=4), 3)
    halves = [
        take(folder_pipeline(photos, batch_size=4, process_index=p, process_count=2), 3)
        for p in range(2)
    ]
    assert all(len(b["rgb"]) == 2 for b in halves[0] + halves[1])
    assert_same_batches(concat_processes(halves), single)


def test_eval_sharding_keeps_the_last_partial_batch(photos):
    single = take(folder_pipeline(photos, batch_size=4, train=False, eval_fraction=1.0))
    assert [len(b["rgb"]) for b in single] == [4, 1]
    halves = [
        take(
            folder_pipeline(
                photos,
                batch_size=4,
                train=False,
                eval_fraction=1.0,
                process_index=p,
                process_count=2,
            )
        )
        for p in range(2)
    ]
    assert [len(b["rgb"]) for b in halves[0]] == [2, 1] and [len(b["rgb"]) for b in halves[1]] == [
        2
    ]
    merged = concat_processes([halves[0][:1], halves[1]]) + halves[0][1:]
    assert_same_batches(merged, single)
    assert_same_batches(
        single, take(folder_pipeline(photos, batch_size=4, train=False, eval_fraction=1.0))
    )


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("flickr:cats", "valid forms: sample, folder:PATH, tfds:NAME"),
        ("folder:", "valid forms"),
        ("folder:/no/such/place", "/no/such/place is not an existing folder"),
    ],
)
def test_bad_sources_are_named(source, message):
    with pytest.raises(ValueError, match=message):
        data.build_pipeline(source, image_size=SIZE, batch_size=2, train=True)


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        folder_pipeline(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "zero.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no usable train images.*empty file: 1"):
        folder_pipeline(tmp_path / "broken")


def test_batch_must_divide_among_processes(photos):
    with pytest.raises(ValueError, match="multiple of process_count 2"):
        folder_pipeline(photos, batch_size=3, process_count=2)


# ----------------------------------------------------------------------------- config and tools


def test_pipeline_from_config_reads_the_data_section(photos):
    cfg = apply_overrides(
        Config(),
        [
            f"data.source=folder:{photos}",
            "data.image_size=24",
            "data.batch_size=4",
            "data.eval_fraction=0",
        ],
    )
    pipeline = data.pipeline_from_config(cfg.data, train=True, seed=1, start_step=2)
    assert pipeline.local_batch_size == 4
    assert take(pipeline, 1)[0]["rgb"].shape == (4, 24, 24, 3)


def test_inspect_data_reports_and_writes_a_grid(bad_folder, tmp_path, capsys):
    out = tmp_path / "grid.png"
    inspect_data.main(
        [
            f"folder:{bad_folder}",
            "--size",
            "24",
            "--count",
            "3",
            "--eval-fraction",
            "0.5",
            "--out",
            str(out),
        ]
    )
    report = capsys.readouterr().out
    assert "found:    18 images" in report and "not an image: 1" in report
    assert "gray: 2" in report and str(out) in report
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] == 3 * 24 + 4 * 2  # L | ab | RGB with padding


def test_bench_data_reports_images_per_second(photos, capsys):
    bench.main(
        [
            "--only",
            "data",
            "--set",
            f"data.source=folder:{photos}",
            "--set",
            "data.image_size=24",
            "--set",
            "data.batch_size=2",
        ]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["data_images_per_s"] > 0 and result["image_size"] == 24


def test_bench_ratios_compare_parts_of_one_run():
    result = {"train_images_per_s": 6.0, "data_images_per_s": 900.0, "peak_rss_mb": 2000.0}
    assert bench.ratios(result) == {"data_vs_train": 150.0}
    result |= {"torch_train_images_per_s": 7.5, "torch_peak_rss_mb": 1600.0}
    assert bench.ratios(result) == {
        "speedup_vs_torch": 0.8,
        "memory_vs_torch": 1.25,
        "data_vs_train": 150.0,
    }


# ----------------------------------------------------------------------------- mixes


def write_flat_photos(folder: Path, count: int, red: int) -> list[tuple[int, int, int]]:
    """``count`` one-colour PNGs whose colour names them (any crop of one shows its colour)."""
    folder.mkdir(parents=True, exist_ok=True)
    colors = [(red, 40 + 30 * i, 200 - 30 * i) for i in range(count)]
    for i, rgb in enumerate(colors):
        Image.fromarray(np.full((24, 30, 3), rgb, np.uint8)).save(folder / f"flat{i}.png")
    return colors


def drawn_colors(batches: list[dict]) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in crop[0, 0]) for batch in batches for crop in batch["rgb"]]


def mix_pipeline(source: str, **overrides) -> data.Pipeline:
    options = dict(image_size=8, batch_size=2, train=True, eval_fraction=0.0, seed=0)
    return data.build_pipeline(source, **{**options, **overrides})


def test_mix_is_parsed_into_named_weighted_sources(tmp_path):
    mix = f" folder:{tmp_path}/a/photos, folder:{tmp_path}/b/photos*2 ,sample*0.5,tfds:x/y-1:test"
    sources = data.parse_mix(mix)
    assert [s.spec for s in sources] == [
        f"folder:{tmp_path}/a/photos",
        f"folder:{tmp_path}/b/photos",
        "sample",
        "tfds:x/y-1:test",
    ]
    assert [s.weight for s in sources] == [1.0, 2.0, 0.5, 1.0]
    assert [s.name for s in sources] == ["photos", "photos-2", "sample", "x_y-1"]
    assert data.parse_mix("sample") == [data.Source("sample", 1.0, "sample")]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("sample,flickr:cats", r"unknown data source 'flickr:cats'.*in data.source 'sample,fl"),
        ("sample*two", r"data source 'sample\*two': weight 'two' is not a positive number"),
        ("folder:/x,sample*0", r"'sample\*0': weight '0' is not.*in data.source"),
        ("sample*-1", "weight '-1' is not a positive number"),
        ("sample*inf", "weight 'inf' is not a positive number"),
        ("sample*", "weight '' is not a positive number"),
        ("sample,,folder:/x", "has an empty item"),
        ("sample,sample*2", "'sample' appears twice"),
    ],
)
def test_bad_mix_items_are_named(source, message):
    with pytest.raises(ValueError, match=message):
        data.build_pipeline(source, image_size=SIZE, batch_size=2, train=True)


def test_overlapping_sources_and_a_source_without_eval_images_are_named(tmp_path):
    write_photos(tmp_path / "all" / "sub", 3)
    write_photos(tmp_path / "other", 2)
    with pytest.raises(ValueError, match=r"folder:.*/all' and 'folder:.*/sub' share 3 images"):
        mix_pipeline(f"folder:{tmp_path / 'all'},folder:{tmp_path / 'all' / 'sub'}")
    with pytest.raises(ValueError, match=rf"source 'folder:{tmp_path / 'other'}' has no usable"):
        mix_pipeline(f"sample,folder:{tmp_path / 'other'}", train=False)


@pytest.mark.parametrize(("weight", "mix_epochs"), [(1.0, 1), (1.5, 2), (0.5, 4)])
def test_weights_scale_how_often_a_sources_images_are_drawn(tmp_path, weight, mix_epochs):
    a = write_flat_photos(tmp_path / "a", 3, red=10)
    b = write_flat_photos(tmp_path / "b", 4, red=200)
    draws_b = data.draws_per_epoch(weight, len(b))
    assert draws_b == round(weight * len(b))  # whole here, so each b image: weight per mix epoch
    epoch = len(a) + draws_b
    pipeline = mix_pipeline(
        f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}*{weight}", batch_size=1
    )
    colors = drawn_colors(take(pipeline, mix_epochs * epoch))
    counts = collections.Counter(colors)
    assert {c: counts[c] for c in a} == dict.fromkeys(a, mix_epochs)
    assert {c: counts[c] for c in b} == dict.fromkeys(b, round(weight * mix_epochs))
    for start in range(0, len(colors), epoch):  # every mix epoch holds each source's share
        assert sum(c in a for c in colors[start : start + epoch]) == len(a)
    first_a = [i for i, c in enumerate(colors[:epoch]) if c in a]
    assert first_a != list(range(len(a)))  # the sources' draws are shuffled together


def test_fractional_draws_round_to_the_nearest_whole_draw():
    assert [data.draws_per_epoch(w, 5) for w in (0.01, 0.3, 0.5, 1.5, 2.0)] == [1, 2, 3, 8, 10]


@pytest.fixture
def mixed_sources(tmp_path, mock_flowers) -> dict[str, str]:
    write_photos(tmp_path / "a", 3)
    write_photos(tmp_path / "b", 5, seed=1)
    return {
        "folders": f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}*1.5",
        "sample+folder": f"sample*0.5,folder:{tmp_path / 'a'}",
        "tfds+folder": f"{mock_flowers},folder:{tmp_path / 'b'}*0.5",
    }


@pytest.mark.parametrize("mix", ["folders", "sample+folder", "tfds+folder"])
def test_a_mix_resumes_exactly_and_splits_over_processes(mixed_sources, mix):
    source = mixed_sources[mix]
    options = dict(batch_size=4, eval_fraction=0.2, shuffle_buffer=4, image_size=16)
    fresh = take(mix_pipeline(source, **options), 9)  # crosses mix and source epochs
    for start in (3, 7):
        assert_same_batches(
            take(mix_pipeline(source, start_step=start, **options), 9 - start), fresh[start:]
        )
    halves = [
        take(mix_pipeline(source, process_index=p, process_count=2, **options), 5) for p in range(2)
    ]
    assert_same_batches(concat_processes(halves), fresh[:5])


def test_a_resumed_mix_decodes_no_skipped_image(tmp_path, monkeypatch):
    write_photos(tmp_path / "a", 3)
    write_photos(tmp_path / "b", 4, seed=1)
    decoded = []
    load = decoding.load_image
    monkeypatch.setattr(decoding, "load_image", lambda path: decoded.append(path) or load(path))
    monkeypatch.setattr("colorjax.data.pipeline.DECODED_CACHE_BYTES", 0)  # each draw decodes
    source = f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}*2"
    take(mix_pipeline(source, start_step=1000, batch_size=2), 1)
    assert 2 <= len(decoded) < 100  # the batch and some read-ahead, not the 2000 skipped


def test_mix_scan_reports_each_source_and_the_whole(tmp_path, caplog):
    write_photos(tmp_path / "a", 3)
    write_photos(tmp_path / "b", 4, seed=1)
    (tmp_path / "b" / "zero.png").write_bytes(b"")
    source = f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}*2"
    with caplog.at_level(logging.INFO, logger="colorjax.data"):
        pipeline = mix_pipeline(source)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("colorjax.data")]
    assert [line.split(" [")[0] for line in lines[:2]] == [
        f"data folder:{tmp_path / 'a'}",
        f"data folder:{tmp_path / 'b'}",
    ]
    assert "skipped 1 (empty file: 1)" in lines[1]
    assert lines[2].endswith("a 3 images x 1 = 3 (27.3%), b 4 images x 2 = 8 (72.7%)")
    assert [s.train for s in pipeline.source_stats] == [3, 4]
    assert (pipeline.stats.found, pipeline.stats.train, pipeline.stats.source) == (8, 7, source)
    assert len(pipeline.items) == 7


def test_mix_eval_pass_takes_the_sources_in_turn(tmp_path):
    a = write_flat_photos(tmp_path / "a", 3, red=10)
    b = write_flat_photos(tmp_path / "b", 1, red=200)
    source = f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}*3"
    evaluation = mix_pipeline(source, train=False, eval_fraction=1.0, batch_size=3)
    assert drawn_colors(take(evaluation)) == [a[0], b[0], a[1], a[2]]
    cfg = Config().data
    cfg = dataclasses.replace(cfg, source=source, image_size=8, eval_fraction=1.0)
    rgb, names = data.validation_images(cfg, 2)
    assert names == ["a", "b", "a"] and rgb.shape == (3, 8, 8, 3)
    assert drawn_colors([{"rgb": rgb}]) == [a[0], b[0], a[1]]
    named = data.eval_split_images(source, eval_fraction=1.0, limit=2)
    assert [name for name, _ in named] == ["a/flat0.png", "b/flat0.png", "a/flat1.png"]


def test_inspect_data_describes_each_source_of_a_mix(tmp_path, capsys):
    write_photos(tmp_path / "a", 3)
    write_photos(tmp_path / "b", 4, seed=1)
    source = f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}*0.5"
    out = tmp_path / "grid.png"
    inspect_data.main(
        [source, "--size", "24", "--count", "2", "--eval-fraction", "0.5", "--out", str(out)]
    )
    report = capsys.readouterr().out
    assert f"a: folder:{tmp_path / 'a'}, weight 1:" in report
    assert f"b: folder:{tmp_path / 'b'}, weight 0.5:" in report
    assert "all sources:\n  found:    7 images" in report and out.is_file()
