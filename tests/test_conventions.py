"""Dataset conventions: value maps, ADE20K's reduce-zero-label, class names, presets, regions."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from helpers import assert_one_line_error, run, run_json, save_mask


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("map.json", '{"7": 0, "8": 1, "0": 255}'),
        ("map.yaml", "7: 0\n8: 1\n0: 255\n"),
        ("map.csv", "src,dst\n7,0\n8,1\n0,255\n"),
        ("pairs.json", "[[7, 0], [8, 1], [0, 255]]"),
    ],
)
def test_map_file_forms(tmp_path, name, text):
    save_mask(tmp_path / "m" / "a.png", [[7, 7, 8], [0, 0, 0]])
    (tmp_path / name).write_text(text)
    doc = run_json("scan", tmp_path / "m", "--map-file", tmp_path / name, "--ignore-index", "255")
    assert [c["pixels"] for c in doc["classes"]] == [2, 1]
    assert doc["map"] == [[0, 255], [7, 0], [8, 1]]
    assert doc["totals"]["ignored"] == 3


def test_map_option_wins_over_map_file(tmp_path):
    save_mask(tmp_path / "m" / "a.png", [[7, 8]])
    (tmp_path / "map.json").write_text('{"7": 0, "8": 1}')
    doc = run_json("scan", tmp_path / "m", "--map-file", tmp_path / "map.json", "--map", "8:0")
    assert [c["pixels"] for c in doc["classes"]] == [2]


def test_bad_map_file_is_exit_3(tmp_path):
    save_mask(tmp_path / "m" / "a.png", [[7, 8]])
    (tmp_path / "map.json").write_text('{"7": "road"}')
    result = run("scan", tmp_path / "m", "--map-file", tmp_path / "map.json")
    assert_one_line_error(result, 3, "map.json: key 7:", "is not a pair of integers")


def test_reduce_zero_label(tmp_path):
    save_mask(tmp_path / "a.png", [[0, 0, 1], [2, 2, 150]])
    doc = run_json("scan", tmp_path, "--reduce-zero-label", "--num-classes", "150")
    assert doc["reduce_zero_label"] is True
    pixels = [c["pixels"] for c in doc["classes"]]
    assert (pixels[0], pixels[1], pixels[149], sum(pixels)) == (1, 2, 1, 4)
    assert doc["totals"]["ignored"] == 2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("names.txt", "background\nroad\nperson\n"),
        ("names.json", '["background", "road", "person"]'),
        ("names.yaml", "- background\n- road\n- person\n"),
    ],
)
def test_class_names_in_document_table_and_csv(tiny, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    args = ["scan", tiny, "--ignore-index", "255", "--class-names", tmp_path / name]
    result = run(*args)
    doc = run_json(*args)
    assert [c["name"] for c in doc["classes"]] == ["background", "road", "person"]
    assert doc["num_classes"] == 3
    assert "person" in result.stderr  # the table
    rows = list(csv.DictReader(io.StringIO(run(*args, "--format", "csv").stdout)))
    assert [r["name"] for r in rows] == ["background", "road", "person"]


def test_class_names_fix_the_class_count(tiny, tmp_path):
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\n")
    doc = run_json("scan", tiny, "--ignore-index", "255", "--class-names", tmp_path / "names.txt")
    assert doc["num_classes"] == 4 and doc["absent"] == [3]
    result = run("scan", tiny, "--class-names", tmp_path / "names.txt", "--num-classes", "3")
    assert result.exit_code == 2 and "4 class names for --num-classes 3" in result.stderr


def test_empty_line_in_class_names_is_exit_3(tiny, tmp_path):
    (tmp_path / "names.txt").write_text("a\n\nc\n")
    result = run("scan", tiny, "--class-names", tmp_path / "names.txt")
    assert_one_line_error(result, 3, "names.txt: line 2 is empty")


def test_cityscapes_preset_reads_label_ids_and_counts_train_ids(tmp_path):
    # labelIds: 7 road, 8 sidewalk, 26 car, 0 unlabeled, 4 static; trainIds: 0, 1, 13, void.
    ids = [[7, 7, 7, 8], [26, 26, 0, 4]]
    save_mask(tmp_path / "aachen" / "a_gtFine_labelIds.png", ids)
    save_mask(tmp_path / "aachen" / "a_gtFine_color.png", [[1, 2], [3, 4]])  # not a label mask
    doc = run_json("scan", tmp_path, "--preset", "cityscapes", "--method", "inverse")
    assert doc["num_classes"] == 19 and doc["ignore_index"] == [255]
    pixels = {c["name"]: c["pixels"] for c in doc["classes"] if c["pixels"]}
    assert pixels == {"road": 3, "sidewalk": 1, "car": 2}
    assert doc["classes"][13]["name"] == "car"
    assert doc["totals"] == {"files": 1, "pixels": 6, "ignored": 2}


def test_explicit_options_override_the_preset(tmp_path):
    save_mask(tmp_path / "a.png", [[0, 15, 21], [255, 255, 3]])
    result = run("scan", tmp_path, "--preset", "voc")
    assert_one_line_error(result, 3, "label 21 is outside 0..20 (--num-classes 21)")
    doc = run_json(
        "scan", tmp_path, "--preset", "voc", "--ignore-index", "21", "--ignore-index", "255"
    )
    assert doc["classes"][15]["name"] == "person" and doc["classes"][15]["pixels"] == 1
    assert doc["totals"]["ignored"] == 3


def test_ade20k_and_camvid_presets(tmp_path):
    save_mask(tmp_path / "ade" / "a.png", [[0, 1, 13, 150]])
    doc = run_json("scan", tmp_path / "ade", "--preset", "ade20k")
    assert doc["num_classes"] == 150 and doc["reduce_zero_label"] is True
    assert [(c["name"], c["pixels"]) for c in doc["classes"] if c["pixels"]] == [
        ("wall", 1), ("person", 1), ("flag", 1)
    ]  # fmt: skip
    save_mask(tmp_path / "camvid" / "a.png", [[0, 10, 11, 11]])
    doc = run_json("scan", tmp_path / "camvid", "--preset", "camvid")
    assert doc["ignore_index"] == [11] and doc["num_classes"] == 11
    assert doc["classes"][0]["name"] == "Sky" and doc["classes"][10]["name"] == "Bicyclist"


def test_presets_command_lists_every_preset():
    result = run("presets")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    names = ["cityscapes", "cityscapes-trainids", "voc", "ade20k", "camvid", "drive"]
    assert [line.split(":")[0] for line in lines] == names
    assert "19 classes; ignore 255; maps 34 raw values; glob *_labelIds.png" in lines[0]
    assert "(19 classes; ignore 255; glob *_labelTrainIds.png)" in lines[1]
    assert r"pair key ^(\d+)_" in lines[5]


@pytest.fixture
def retina(tmp_path):
    """Two masks with field-of-view region masks of another format beside them."""
    save_mask(tmp_path / "labels" / "eye1.png", [[0, 0, 1], [0, 1, 1]])
    save_mask(tmp_path / "labels" / "sub" / "eye2.tif", [[1, 1], [0, 0]])
    save_mask(tmp_path / "fov" / "eye1.png", [[0, 255, 255], [0, 255, 0]])
    (tmp_path / "fov" / "sub").mkdir()
    np.save(tmp_path / "fov" / "sub" / "eye2.npy", np.array([[1, 0], [1, 0]], bool))
    return tmp_path


def test_roi_counts_only_pixels_inside_the_region(retina):
    doc = run_json("scan", retina / "labels", "--roi", retina / "fov", "--method", "inverse")
    # eye1 inside: 0, 1, 1 -> class 0: 1, class 1: 2; eye2 inside: 1, 0 -> class 0: 1, class 1: 1
    assert [c["pixels"] for c in doc["classes"]] == [2, 3]
    assert [c["image_pixels"] for c in doc["classes"]] == [5, 5]


def test_roi_missing_region_file_is_exit_3(retina):
    save_mask(retina / "labels" / "eye3.png", [[0]])
    result = run("scan", retina / "labels", "--roi", retina / "fov")
    assert_one_line_error(result, 3, "eye3.png: no region mask eye3.* in")


def test_roi_missing_region_file_is_skipped_with_skip_errors(retina, tmp_path):
    save_mask(retina / "labels" / "eye3.png", [[1, 1]])
    scan = ("scan", retina / "labels", "--roi", retina / "fov", "--method", "inverse")
    # A cache that holds eye3 whole (a scan without --roi) must not count it either.
    run_json("scan", retina / "labels", "--cache", tmp_path / "cache.db", "-q")
    for cache in ([], ["--cache", tmp_path / "cache.db"]):
        result = run(*scan, *cache, "--skip-errors")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [c["pixels"] for c in doc["classes"]] == [2, 3]  # eye1 and eye2, as before
        why = f"no region mask eye3.* in {retina / 'fov'}"
        assert doc["errors"] == [{"file": str(retina / "labels" / "eye3.png"), "error": why}]
        assert doc["totals"]["files"] == 2 and doc["source"]["files"] == 3
        assert f"skipped {retina / 'labels' / 'eye3.png'}: no region mask" in result.stderr


def test_roi_of_another_size_is_exit_3(retina):
    save_mask(retina / "fov" / "eye1.png", [[1, 1]])
    result = run("scan", retina / "labels", "--roi", retina / "fov")
    assert_one_line_error(result, 3, "eye1.png: is 3x2 but its region mask", "is 2x1")
