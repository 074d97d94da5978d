"""Every mask encoding users meet, counted exactly through the command line."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
from PIL import Image

from classweights import read_histogram
from helpers import assert_one_line_error, run, run_json, save_mask

#: A colour map in the three forms the tool reads: Cityscapes' road, sidewalk and void colours.
COLOURS = [
    {"id": 0, "color": [128, 64, 128], "name": "road"},
    {"id": 1, "color": "#f423e8", "name": "sidewalk"},
    {"id": 255, "color": "0,0,0", "name": "void"},
]


def colour_mask(path, rows):
    palette = {0: (128, 64, 128), 1: (244, 35, 232), 9: (0, 0, 0), 7: (1, 2, 3), 8: (9, 9, 9)}
    array = np.array([[palette[v] for v in row] for row in rows], np.uint8)
    Image.fromarray(array).save(path)


@pytest.fixture
def colour_dir(tmp_path):
    root = tmp_path / "colour"
    root.mkdir()
    colour_mask(root / "a.png", [[0, 0, 1], [0, 9, 9]])  # road 3, sidewalk 1, void 2
    colour_mask(root / "b.png", [[1, 1, 1], [0, 1, 9]])  # road 1, sidewalk 4, void 1
    return root


@pytest.mark.parametrize("form", ["json", "yaml", "csv"])
def test_rgb_masks_with_a_colour_map(colour_dir, tmp_path, form):
    path = tmp_path / f"colors.{form}"
    if form == "csv":
        path.write_text("id,color,name\n0,#804080,road\n1,244 35 232,sidewalk\n255,#000000,void\n")
    else:
        path.write_text(json.dumps(COLOURS))  # JSON is YAML too
    doc = run_json(
        "scan", colour_dir, "--colors", path, "--ignore-index", "255", "--method", "inverse"
    )
    assert [c["pixels"] for c in doc["classes"]] == [4, 5]
    assert doc["totals"]["ignored"] == 3
    assert [c["name"] for c in doc["classes"]] == ["road", "sidewalk"]
    assert doc["colors"] == [["#000000", 255], ["#804080", 0], ["#f423e8", 1]]


def test_unknown_colours_exit_3_listing_colour_count_and_file(colour_dir, tmp_path):
    colour_mask(colour_dir / "c.png", [[7, 7, 0], [8, 0, 0]])
    (tmp_path / "colors.json").write_text(json.dumps(COLOURS))
    result = run("scan", colour_dir, "--colors", tmp_path / "colors.json", "--ignore-index", "255")
    assert_one_line_error(
        result,
        3,
        "c.png: colour #010203 is not in the colour map (2 pixels in 1 file)",
        "colour #090909 is not in the colour map (1 pixel in 1 file)",
        "--unknown-colors ignore",
    )
    doc = run_json(
        "scan", colour_dir, "--colors", tmp_path / "colors.json", "--ignore-index", "255",
        "--unknown-colors", "ignore",
    )  # fmt: skip
    assert doc["totals"]["ignored"] == 3 + 3


def test_bad_colour_map_is_exit_3_naming_file_and_entry(colour_dir, tmp_path):
    (tmp_path / "colors.json").write_text('[{"id": 0, "color": [300, 0, 0]}]')
    result = run("scan", colour_dir, "--colors", tmp_path / "colors.json")
    assert_one_line_error(result, 3, "colors.json: entry 0:", "is not a colour")


def test_16bit_values_above_255_through_the_cli(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 300, 300], [65535, 1000, 0]], "I;16")
    doc = run_json("scan", tmp_path, "--ignore-index", "65535", "--num-classes", "1001")
    assert {c["id"]: c["pixels"] for c in doc["classes"] if c["pixels"]} == {0: 2, 300: 2, 1000: 1}


def test_32bit_tiff(tmp_path):
    save_mask(tmp_path / "m.tif", [[0, 70000], [70000, 5]], "I")
    doc = run_json("scan", tmp_path, "--map", "70000:1", "--num-classes", "6")
    assert [c["pixels"] for c in doc["classes"]] == [1, 2, 0, 0, 0, 1]


@pytest.mark.parametrize("mode", ["L", "P"])
def test_gif_in_mode_l_and_p(tmp_path, mode):
    ids = [[0, 1, 1], [2, 2, 2]]
    save_mask(tmp_path / "m.gif", ids, mode)
    assert [c["pixels"] for c in run_json("scan", tmp_path)["classes"]] == [1, 2, 3]


def test_npz_volumes_and_npz_key(tmp_path):
    volume = np.zeros((2, 4, 4), np.uint8)
    volume[1, :2, :] = 3
    np.savez(tmp_path / "v.npz", labels=volume, image=np.ones((2, 4, 4)))
    result = run("scan", tmp_path)
    assert_one_line_error(result, 3, "v.npz: holds several arrays", "image, labels", "--npz-key")
    doc = run_json("scan", tmp_path, "--npz-key", "labels")
    assert [c["pixels"] for c in doc["classes"]] == [24, 0, 0, 8]
    np.savez_compressed(tmp_path / "v.npz", volume)  # one array: no key needed
    assert run_json("scan", tmp_path)["totals"]["pixels"] == 32


def test_non_integral_floats_are_exit_3(tmp_path):
    np.save(tmp_path / "f.npy", np.array([[0.0, 1.5]]))
    assert_one_line_error(run("scan", tmp_path), 3, "f.npy", "non-integral value 1.5")


def test_nifti_volume(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = np.zeros((3, 3, 2), np.int16)
    volume[0, :, 1] = 2
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "seg.nii.gz")
    doc = run_json("scan", tmp_path)
    assert [c["pixels"] for c in doc["classes"]] == [15, 0, 3]


def test_nifti_without_nibabel_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "seg.nii").write_bytes(b"\0" * 352)
    real_import = builtins.__import__

    def no_nibabel(name, *args, **kwargs):
        if name == "nibabel":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nibabel)
    assert_one_line_error(run("scan", tmp_path), 3, "seg.nii", "pip install nibabel")


def test_jpeg_masks_are_counted_with_a_warning(tmp_path):
    save_mask(tmp_path / "a.png", [[0, 1]])
    Image.new("L", (4, 4), 0).save(tmp_path / "b.jpg")
    result = run("scan", tmp_path)
    assert result.exit_code == 0
    assert "1 of 2 masks are JPEG" in result.stderr


def test_bilevel_and_palette_read_the_same_ids(tmp_path):
    Image.fromarray(np.array([[True, False], [True, True]])).save(tmp_path / "b.png")
    assert read_histogram(tmp_path / "b.png").counts.tolist() == [1, 3]


@pytest.mark.parametrize("block_pixels", [1 << 20, 5])  # one block; a row at a time
def test_colour_and_16bit_masks_that_pillow_decodes_are_counted_by_runs(
    tmp_path, monkeypatch, block_pixels
):
    import classweights.masks as masks

    monkeypatch.setattr(masks, "BLOCK_PIXELS", block_pixels)
    red, green, blue = [255, 0, 0], [0, 255, 0], [0, 0, 255]
    rgb = np.array([[red] * 3 + [blue], [blue] * 2 + [red] * 2, [green] * 4], np.uint8)
    alpha = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)  # every pixel its own alpha
    i16 = np.array([[1000, 1000, 70, 70], [65535, 1000, 1000, 1000], [70, 70, 70, 300]])
    Image.fromarray(rgb).save(tmp_path / "rgb.tif")
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "rgba.tif")
    Image.fromarray(i16.astype(np.uint16)).save(tmp_path / "i16.tif")
    for name in ("rgb.tif", "rgba.tif"):
        histogram = read_histogram(tmp_path / name)
        assert histogram.colour
        counts = dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True))
        assert counts == {0x0000FF: 3, 0x00FF00: 4, 0xFF0000: 5}  # alpha is not a colour
    histogram = read_histogram(tmp_path / "i16.tif")
    assert not histogram.colour
    assert histogram.values.tolist() == [70, 300, 1000, 65535]
    assert histogram.counts.tolist() == [5, 1, 5, 1]
