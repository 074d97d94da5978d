"""Multi-label and one-hot masks: one binary mask per class, and pos_weight per class."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from classweights.multilabel import ChannelCounts, pos_weight
from helpers import assert_one_line_error, run, run_json

#: Two masks of 3 classes, 2x4 pixels each. a: class 0 the left half, class 1 the right half,
#: class 2 the top row (overlapping both). b: class 0 everywhere.
#: n = [4 + 8, 4, 4] = [12, 4, 4], N = 16; pos_weight = 4/12, 12/4, 12/4.
#: Pixels with several classes: the 4 of a's top row; with none: 0.
A = np.zeros((3, 2, 4), np.uint8)
A[0, :, :2] = A[1, :, 2:] = A[2, 0, :] = 1
B = np.zeros((3, 2, 4), bool)
B[0] = True
EXPECT_POS_WEIGHT = [[[4 / 12]], [[3.0]], [[3.0]]]


def _check_hand_made(doc: dict) -> None:
    assert doc["num_classes"] == 3
    assert [c["pixels"] for c in doc["classes"]] == [12, 4, 4]
    assert [c["images"] for c in doc["classes"]] == [2, 1, 1]
    assert np.array(doc["pos_weight"]).shape == (3, 1, 1)
    assert np.allclose(doc["pos_weight"], EXPECT_POS_WEIGHT, rtol=1e-5)
    assert doc["totals"] == {"files": 2, "pixels": 16, "no_class": 0, "several_classes": 4}
    assert doc["not_one_hot"]["files"] == 1


@pytest.mark.parametrize("channels", ["first", "last"])
def test_arrays_with_a_class_axis(tmp_path, channels):
    move = (lambda a: a) if channels == "first" else (lambda a: np.moveaxis(a, 0, -1))
    (tmp_path / "m").mkdir()
    np.save(tmp_path / "m" / "a.npy", move(A))
    np.savez(tmp_path / "m" / "b.npz", move(B))
    result = run("multilabel", tmp_path / "m", "--channels", channels)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    _check_hand_made(doc)
    assert doc["layout"] == f"channels {channels}"
    assert "1 of 2 masks are not one-hot: 0 pixels hold no class and 4 several" in result.stderr


def test_multi_page_tiff_and_rgb_png(tmp_path):
    (tmp_path / "m").mkdir()
    pages = [Image.fromarray(page * 255) for page in A]
    pages[0].save(tmp_path / "m" / "a.tif", save_all=True, append_images=pages[1:])
    Image.fromarray((np.moveaxis(B, 0, -1) * 255).astype(np.uint8), "RGB").save(
        tmp_path / "m" / "b.png"
    )
    _check_hand_made(run_json("multilabel", tmp_path / "m", "--channels", "first", "-q"))


def test_class_folders(tmp_path):
    # x: cat at (0,0); dog at (0,0) and (0,1). y: dog at (1,1), no cat file.
    # N = 8; cat 1, dog 3: pos_weight 7 and 5/3; no class: 2 + 3; several: 1.
    for name, stem, ids in [
        ("cat", "x", [[255, 0], [0, 0]]),
        ("dog", "x", [[255, 255], [0, 0]]),
        ("dog", "y", [[0, 0], [0, 1]]),
    ]:
        (tmp_path / "m" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.array(ids, np.uint8)).save(tmp_path / "m" / name / f"{stem}.png")
    doc = run_json("multilabel", tmp_path / "m", "--class-folders", "-q")
    assert [c["name"] for c in doc["classes"]] == ["cat", "dog"]
    assert [c["pixels"] for c in doc["classes"]] == [1, 3]
    assert np.allclose(doc["pos_weight"], [[[7.0]], [[5 / 3]]], rtol=1e-5)
    assert doc["totals"] == {"files": 2, "pixels": 8, "no_class": 5, "several_classes": 1}


def test_one_hot_rule_exits_1_naming_a_file(tmp_path):
    (tmp_path / "m").mkdir()
    onehot = np.zeros((3, 2, 4), np.uint8)
    onehot[0, 0] = onehot[1, 1] = 1
    np.save(tmp_path / "m" / "good.npy", onehot)
    result = run("multilabel", tmp_path / "m", "--channels", "first", "--one-hot")
    assert result.exit_code == 0 and result.stderr == ""
    np.save(tmp_path / "m" / "bad.npy", A)
    result = run("multilabel", tmp_path / "m", "--channels", "first", "--one-hot")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["not_one_hot"]["examples"][0]["file"].endswith("bad.npy")
    assert result.stderr.strip().splitlines() == [
        f"one-hot: 1 of 2 masks are not one-hot: 0 pixels hold no class and 4 several; "
        f"e.g. {tmp_path / 'm' / 'bad.npy'}"
    ]


def test_same_document_whatever_the_workers(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "m").mkdir()
    for i in range(80):
        np.save(tmp_path / "m" / f"{i:02d}.npy", rng.random((4, 3, 5)) < 0.3)
    one = run("multilabel", tmp_path / "m", "--channels", "first", "--workers", 1, "-q")
    three = run("multilabel", tmp_path / "m", "--channels", "first", "--workers", 3, "-q")
    assert one.stdout == three.stdout
    assert json.loads(one.stdout)["totals"]["files"] == 80


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.full((2, 3, 3), 2, np.uint8), "holds the value 2; a binary mask per class"),
        (np.zeros((3, 3), np.uint8), "has no class axis"),
        (np.full((2, 2, 2), 0.5), "holds the value 0.5"),
    ],
)
def test_masks_that_are_not_binary_per_class_are_refused(tmp_path, array, fragment):
    (tmp_path / "m").mkdir()
    np.save(tmp_path / "m" / "x.npy", array)
    result = run("multilabel", tmp_path / "m", "--channels", "first")
    assert_one_line_error(result, 3, "x.npy", fragment)


def test_masks_of_different_class_counts_are_refused(tmp_path):
    (tmp_path / "m").mkdir()
    np.save(tmp_path / "m" / "a.npy", np.zeros((2, 2, 2), bool))
    np.save(tmp_path / "m" / "b.npy", np.zeros((3, 2, 2), bool))
    result = run("multilabel", tmp_path / "m", "--channels", "first")
    assert_one_line_error(result, 3, "b.npy", "3 classes", "2")


def test_a_layout_is_required(tmp_path):
    result = run("multilabel", tmp_path)
    assert result.exit_code == 2 and "--channels first|last and --class-folders" in result.stderr


def test_pos_weight_missing_policy():
    counts = ChannelCounts(np.array([4, 0], np.int64), np.array([1, 0], np.int64), pixels=10)
    assert pos_weight(counts).ravel().tolist() == [1.5, 0.0]
    assert pos_weight(counts, "max").ravel().tolist() == [1.5, 1.5]


def test_class_files_of_one_stem_must_have_one_size(tmp_path):
    for name, ids in [("cat", [[1, 0]]), ("dog", [[1], [0]])]:
        (tmp_path / "m" / name).mkdir(parents=True)
        Image.fromarray(np.array(ids, np.uint8)).save(tmp_path / "m" / name / "x.png")
    result = run("multilabel", tmp_path / "m", "--class-folders")
    assert_one_line_error(result, 3, "dog/x.png", "is 1x2 but", "cat/x.png is 2x1")


def test_missing_error_names_multilabels_own_options(tmp_path):
    # Class 2 of (3, 2, 4) has no positive pixel anywhere.
    np.save(tmp_path / "a.npy", A * np.array([1, 1, 0], np.uint8)[:, None, None])
    result = run("multilabel", tmp_path, "--channels", "first", "--missing", "error")
    assert_one_line_error(result, 3, "classes [2] have no positive pixels", "--missing error")
    assert "--num-classes" not in result.stderr
