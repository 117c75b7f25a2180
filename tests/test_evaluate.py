"""Whole-photo evaluation: test images, metrics with the gray baseline, reports, the CLI."""

import json
import logging
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from test_data import write_photos
from test_decoding import broken_cases

from colorjax import data, evaluation, inference
from colorjax.config import DataConfig, ModelConfig
from colorjax.heads import generator_from_config
from colorjax.imaging import decoding, visual
from experiments import evaluate as evaluate_cli

pytestmark = pytest.mark.usefixtures("fast_compilation")
TRUNCATED_JPEG = broken_cases()["truncated.jpg"][0]


@pytest.fixture(scope="module")
def colorizer() -> inference.Colorizer:
    model = ModelConfig(depth=3, features=4, norm="batch", dropout=0.0, upsample="resize_conv")
    variables = generator_from_config(model).init(
        jax.random.PRNGKey(0), np.zeros((1, 16, 16, 1), np.float32), train=False
    )
    params = variables.pop("params")
    return inference.Colorizer(model, params, dict(variables), render_size=32)


class Perfect:
    """A stand-in colorizer that returns the ground truth itself."""

    def colorize_many(self, images, *, render_size=None):
        return [np.array(image) for image in images]


def smooth_photos(count: int, height: int = 32, width: int = 32) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    blobs = [Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)) for _ in range(count)]
    resized = [b.resize((width, height), Image.Resampling.BILINEAR) for b in blobs]
    return [(f"photo{i}", np.asarray(image)) for i, image in enumerate(resized)]


@pytest.fixture(scope="module")
def results(colorizer) -> dict:
    return evaluation.evaluate({"tiny": colorizer, "perfect": Perfect()}, smooth_photos(2))


# ----------------------------------------------------------------------------- test images


def test_plain_folder_is_all_test_and_corrupt_files_are_counted(tmp_path, caplog):
    write_photos(tmp_path / "photos", 3)
    (tmp_path / "photos" / "broken.jpg").write_bytes(TRUNCATED_JPEG)
    with caplog.at_level(logging.WARNING, logger="colorjax.data"):
        images = evaluation.eval_images(f"folder:{tmp_path / 'photos'}")
    assert [name for name, _ in images] == ["photo00.png", "photo01.jpg", "photo02.png"]
    assert all(rgb.dtype == np.uint8 and rgb.shape[-1] == 3 for _, rgb in images)
    first = decoding.load_image(tmp_path / "photos" / "photo00.png")
    np.testing.assert_array_equal(images[0][1], first)  # native size, untouched
    [warning] = [r.getMessage() for r in caplog.records if r.name.startswith("colorjax.data")]
    assert "skipped 1" in warning and decoding.CORRUPT in warning


def test_folder_with_train_and_eval_gives_only_eval(tmp_path):
    write_photos(tmp_path / "root" / "train", 3)
    write_photos(tmp_path / "root" / "eval", 2, seed=1)
    names = [name for name, _ in evaluation.eval_images(f"folder:{tmp_path / 'root'}")]
    assert names == ["eval/photo00.png", "eval/photo01.jpg"]


def test_sample_gives_the_held_out_regions_and_limit_and_size_apply():
    images = evaluation.eval_images("sample", limit=2)
    assert [name for name, _ in images] == list(data.SAMPLE_FILES[:2])
    whole = decoding.load_image(data.sample_dir() / data.SAMPLE_FILES[0])
    cut = round(whole.shape[1] * (1 - data.SAMPLE_EVAL_FRACTION))
    np.testing.assert_array_equal(images[0][1], whole[:, cut:])  # the far end of a wide photo
    [(_, view)] = evaluation.eval_images("sample", limit=1, size=32)
    assert view.shape == (32, 32, 3) and view.dtype == np.uint8


def test_method_names_are_unique_folder_names():
    paths = ["runs/a/demo", "other/demo/", "x/gray", "runs/b"]
    assert evaluation.method_names(paths) == ["demo", "demo-2", "gray-2", "b"]


# ----------------------------------------------------------------------------- metrics


def test_results_have_the_documented_shape(results):
    assert list(results) == ["mean", "ground_truth", "images"]
    assert list(results["mean"]) == ["gray", "tiny", "perfect"]
    assert list(results["ground_truth"]) == list(evaluation.GROUND_TRUTH_METRICS)
    assert [entry["name"] for entry in results["images"]] == ["photo0", "photo1"]
    for entry in results["images"]:
        assert list(entry) == ["name", "ground_truth", "gray", "tiny", "perfect"]
        for method in results["mean"]:
            assert list(entry[method]) == list(evaluation.METRICS)
            assert list(results["mean"][method]) == list(evaluation.METRICS)


def test_gray_baseline_has_no_colour(results):
    gray = results["mean"]["gray"]
    assert gray["colorfulness"] < 0.5 and gray["chroma_ratio"] < 0.01
    assert abs(gray["mean_a"]) < 0.1 and abs(gray["mean_b"]) < 0.1
    truth = results["ground_truth"]["colorfulness"]
    assert gray["colorfulness_diff"] == pytest.approx(gray["colorfulness"] - truth)
    assert 10 < gray["psnr"] < 60 and 0 < gray["ssim"] <= 1
    assert gray["tint"] < 0.01 and gray["blob"] == 0.0


def test_a_perfect_method_scores_perfectly_and_infinities_are_handled(results, tmp_path):
    perfect = results["mean"]["perfect"]
    assert all(e["perfect"]["psnr"] == math.inf for e in results["images"])
    assert perfect["psnr"] == math.inf  # means leave infinities out: none finite is inf
    assert perfect["ciede2000"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["ab_hist_intersection"] == pytest.approx(1.0)
    assert perfect["blob"] == 0.0 and results["ground_truth"]["tint"] > 0
    assert perfect["tint"] == pytest.approx(results["ground_truth"]["tint"])  # its own tint
    assert perfect["chroma_ratio"] == pytest.approx(1.0)
    assert perfect["colorfulness_diff"] == pytest.approx(0.0)
    paths = evaluation.write_results(results, tmp_path / "report" / "results.json", None)
    assert set(paths) == {"json", "markdown"}

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    stored = json.loads(paths["json"].read_text(), parse_constant=reject)
    assert stored["mean"]["perfect"]["psnr"] == "inf"
    assert float(stored["mean"]["perfect"]["psnr"]) == math.inf
    assert stored["mean"]["tiny"] == pytest.approx(results["mean"]["tiny"])
    assert paths["markdown"] == tmp_path / "report" / "results.md"


def test_markdown_table_has_every_method_and_marks_the_best(results):
    table = evaluation.markdown_table(results)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    assert {"gray", "tiny", "perfect", "ground truth"} <= set(rows)
    assert "**inf**" in rows["perfect"] and "**0.000**" in rows["perfect"]
    assert "**" not in rows["ground truth"]
    assert evaluation.best_methods(results, "ciede2000") == {"perfect"}


def test_reserved_method_names_are_refused(colorizer):
    with pytest.raises(ValueError, match="reserved"):
        evaluation.evaluate({"gray": colorizer}, smooth_photos(1))


# ----------------------------------------------------------------------------- grid


def test_comparison_grid_is_rows_of_images_by_method_columns(colorizer):
    images = smooth_photos(3, height=20, width=30)
    grid = evaluation.comparison_grid({"tiny": colorizer}, images, count=2, height=40)
    columns, rows, cell_width = 3, 2, 60  # gray | tiny | ground truth; 30 x 20 -> 60 x 40
    pad = visual.PAD
    assert grid.dtype == np.uint8
    assert grid.shape == (
        visual.TITLE_HEIGHT + rows * 40 + (rows + 1) * pad,
        columns * cell_width + (columns + 1) * pad,
        3,
    )


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_json_table_and_grid(colorizer, tmp_path, capsys):
    inference.export_bundle(colorizer, tmp_path / "tiny_model")
    write_photos(tmp_path / "photos", 3)
    (tmp_path / "photos" / "broken.jpg").write_bytes(TRUNCATED_JPEG)
    out = tmp_path / "eval" / "results.json"
    argv = ["--model", str(tmp_path / "tiny_model"), "--data", f"folder:{tmp_path / 'photos'}"]
    assert evaluate_cli.main([*argv, "--out", str(out), "--grid-images", "2", "--size", "32"]) == 0
    stored = json.loads(out.read_text())
    assert list(stored["mean"]) == ["gray", "tiny_model"] and len(stored["images"]) == 3
    printed = capsys.readouterr().out
    assert "| tiny_model |" in printed and "| ground truth |" in printed
    assert out.with_suffix(".md").read_text().strip() in printed
    grid = np.asarray(Image.open(tmp_path / "eval" / "results_grid.png"))
    assert grid.shape[0] == visual.TITLE_HEIGHT + 2 * evaluation.GRID_HEIGHT + 3 * visual.PAD


def test_cli_names_methods_with_name(colorizer, tmp_path):
    inference.export_bundle(colorizer, tmp_path / "weights")
    write_photos(tmp_path / "photos", 1)
    out = tmp_path / "results.json"
    argv = ["--model", str(tmp_path / "weights"), "--data", f"folder:{tmp_path / 'photos'}"]
    argv += ["--out", str(out), "--grid-images", "0", "--size", "32"]
    assert evaluate_cli.main([*argv, "--name", "colorjax"]) == 0
    assert list(json.loads(out.read_text())["mean"]) == ["gray", "colorjax"]
    with pytest.raises(SystemExit):
        evaluate_cli.main([*argv, "--name", "one", "--name", "two"])


@pytest.mark.parametrize("missing", ["--workdir", "--data"])
def test_cli_names_a_missing_workdir_or_folder(colorizer, tmp_path, capsys, missing):
    inference.export_bundle(colorizer, tmp_path / "model")
    write_photos(tmp_path / "photos", 1)
    nowhere = tmp_path / "nowhere"
    argv = {
        "--workdir": ["--workdir", str(nowhere), "--data", f"folder:{tmp_path / 'photos'}"],
        "--data": ["--model", str(tmp_path / "model"), "--data", f"folder:{nowhere}"],
    }[missing]
    assert evaluate_cli.main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    assert str(nowhere) in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------------------- eval split


def held_out_names(source: str, root, eval_fraction: float) -> list[str]:
    """What a training run on ``source`` holds out, as image names relative to ``root``."""
    pipeline = data.build_pipeline(
        source, image_size=16, batch_size=2, train=False, eval_fraction=eval_fraction
    )
    return [Path(item.key).relative_to(root).as_posix() for item in pipeline.items]


def test_split_eval_gives_exactly_the_photos_training_holds_out(tmp_path):
    paths = write_photos(tmp_path / "photos", 12)
    source = f"folder:{tmp_path / 'photos'}"
    names = [name for name, _ in evaluation.eval_images(source, split="eval", eval_fraction=0.3)]
    assert names == held_out_names(source, tmp_path / "photos", 0.3)
    assert 0 < len(names) < len(paths)
    train = data.build_pipeline(source, image_size=16, batch_size=2, train=True, eval_fraction=0.3)
    assert not {str(tmp_path / "photos" / n) for n in names} & {it.key for it in train.items}
    every = [name for name, _ in evaluation.eval_images(source, split="all", eval_fraction=0.3)]
    assert every == [p.name for p in paths]
    with pytest.raises(ValueError, match="split 'test': expected one of all, eval"):
        evaluation.eval_images(source, split="test")


def test_split_eval_of_a_mix_gives_each_sources_held_out_photos(tmp_path):
    write_photos(tmp_path / "plain", 12)
    write_photos(tmp_path / "split" / "train", 2)
    write_photos(tmp_path / "split" / "eval", 1, seed=1)
    plain, split = f"folder:{tmp_path / 'plain'}", f"folder:{tmp_path / 'split'}"
    images = evaluation.eval_images(f"{plain},{split}*3", split="eval", eval_fraction=0.3)
    expected_plain = [f"plain/{n}" for n in held_out_names(plain, tmp_path / "plain", 0.3)]
    assert [name for name, _ in images] == [
        expected_plain[0],
        "split/eval/photo00.png",
        *expected_plain[1:],
    ]
    whole = evaluation.eval_images(f"{plain},{split}", limit=2)  # --split all, 2 per source
    assert [name for name, _ in whole] == [
        "plain/photo00.png",
        "split/eval/photo00.png",
        "plain/photo01.jpg",
    ]


def test_cli_split_eval_scores_the_held_out_photos_by_the_default_rule(colorizer, tmp_path):
    inference.export_bundle(colorizer, tmp_path / "model")
    write_photos(tmp_path / "photos", 20)
    source = f"folder:{tmp_path / 'photos'}"
    out = tmp_path / "results.json"
    argv = ["--model", str(tmp_path / "model"), "--data", source, "--split", "eval"]
    assert evaluate_cli.main([*argv, "--out", str(out), "--grid-images", "0", "--size", "16"]) == 0
    scored = [entry["name"] for entry in json.loads(out.read_text())["images"]]
    assert scored == held_out_names(source, tmp_path / "photos", DataConfig().eval_fraction)
    assert 0 < len(scored) < 20
    assert evaluate_cli.SPLITS == evaluation.SPLITS


def test_photos_with_a_gray_ground_truth_are_left_out_unless_kept(tmp_path, caplog):
    write_photos(tmp_path / "set", 3)
    gray = np.full((40, 50, 3), 120, np.uint8)
    Image.fromarray(gray).save(tmp_path / "set" / "gray.png")
    with caplog.at_level(logging.INFO):
        names = [name for name, _ in evaluation.eval_images(f"folder:{tmp_path / 'set'}")]
    assert "gray.png" not in names and len(names) == 3
    assert "gray: 1" in caplog.text
    kept = evaluation.eval_images(f"folder:{tmp_path / 'set'}", skip_gray=False)
    assert "gray.png" in [name for name, _ in kept]
