"""Edge cases found in review: each pinned so it stays fixed."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
from PIL import Image

from classweights import ClassCounts, Params, compute_weights
from helpers import MASK_A, MASK_B, assert_one_line_error, run, run_json, save_mask


def test_identical_masks_behind_links_are_all_counted(tmp_path):
    # git-annex and DVC link identical masks to one stored object: each is a mask of its own.
    store = save_mask(tmp_path / "store" / "object.png", MASK_A, "P")
    (tmp_path / "masks").mkdir()
    for name in ("a.png", "b.png"):
        os.symlink(store, tmp_path / "masks" / name)
    assert run_json("scan", tmp_path / "masks")["totals"]["files"] == 2
    # The same path named twice is one mask.
    twice = run_json("scan", tmp_path / "masks", tmp_path / "masks" / "a.png")
    assert twice["totals"]["files"] == 2


def test_unreadable_folder_is_exit_3(tmp_path, monkeypatch):
    save_mask(tmp_path / "masks" / "locked" / "a.png", MASK_A, "P")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert_one_line_error(run("scan", tmp_path / "masks"), 3, "locked: cannot read folder")


def test_max_pixels_replaces_pillows_guard_also_for_tiff(tmp_path, monkeypatch):
    save_mask(tmp_path / "m.tif", MASK_A, "L")  # 16 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # Pillow alone would refuse it
    assert run_json("scan", tmp_path, "--max-pixels", "16")["totals"]["files"] == 1
    result = run("scan", tmp_path, "--max-pixels", "15")
    assert_one_line_error(result, 3, "m.tif", "more than --max-pixels 15")
    assert Image.MAX_IMAGE_PIXELS == 5  # and it is put back


def test_output_into_a_missing_folder_is_refused_before_the_scan(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    result = run("scan", tmp_path / "m", "-o", tmp_path / "no" / "o.json")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"cannot write into {tmp_path / 'no'}: no such folder" in result.stderr
    assert "pixels" not in result.stderr  # refused before scanning: no table


def test_a_failed_write_is_exit_3_and_leaves_nothing(tmp_path, monkeypatch):
    save_mask(tmp_path / "m" / "a.png", MASK_A)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = run("scan", tmp_path / "m", "-q", "-o", tmp_path / "o.json")
    assert_one_line_error(result, 3, "o.json: cannot write: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_output_file_has_the_mode_of_a_plain_write(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    run("scan", tmp_path / "m", "-o", tmp_path / "o.json")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "o.json").st_mode) == 0o666 & ~umask


def test_regions_refuse_two_masks_with_one_name(tmp_path):
    for split in ("train", "val"):
        save_mask(tmp_path / split / "0001.png", MASK_A)
    save_mask(tmp_path / "fov" / "0001.png", np.ones((4, 4)))
    result = run("scan", tmp_path / "train", tmp_path / "val", "--roi", tmp_path / "fov")
    assert_one_line_error(result, 3, "pairs with the same file as", "0001.*")


def test_unreadable_region_mask_is_named(tmp_path):
    save_mask(tmp_path / "labels" / "a.png", MASK_A)
    (tmp_path / "fov").mkdir()
    (tmp_path / "fov" / "a.png").write_text("not an image")
    result = run("scan", tmp_path / "labels", "--roi", tmp_path / "fov")
    assert_one_line_error(result, 3, str(tmp_path / "fov" / "a.png"), "cannot read region mask")


def test_baseline_of_other_settings_is_exit_3(tmp_path):
    save_mask(tmp_path / "m" / "b.png", MASK_B, "P")
    run("scan", tmp_path / "m", "--num-classes", 256, "-o", tmp_path / "base.json")  # 255 a class
    result = run(
        "check", tmp_path / "m", "--ignore-index", "255", "--num-classes", "256",
        "--baseline", tmp_path / "base.json", "--max-drift", "0.1",
    )  # fmt: skip
    assert_one_line_error(result, 3, "--ignore-index is [255] here but [] in the baseline")


def test_report_whose_counts_cannot_be_is_refused(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    run("scan", tmp_path / "m", "-o", tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    doc["classes"][1]["image_pixels"] = 0  # pixels with no image to hold them
    (tmp_path / "r.json").write_text(json.dumps(doc))
    result = run("weights", tmp_path / "r.json")
    assert_one_line_error(result, 3, "r.json", "its class counts do not add up")


def test_animated_gif_counts_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((2, 2), v, np.uint8)) for v in (1, 2)]
    for frame in frames:
        frame.putpalette([(i * 37) % 256 for i in range(768)])
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], optimize=False)
    doc = run_json("scan", tmp_path)
    assert [c["pixels"] for c in doc["classes"]] == [0, 4]


def test_skip_errors_skips_colour_masks_without_a_colour_map(tmp_path):
    save_mask(tmp_path / "a.png", MASK_A)
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    doc = run_json("scan", tmp_path, "--skip-errors")
    assert doc["totals"]["files"] == 1
    assert doc["errors"][0]["file"] == str(tmp_path / "rgb.png")
    assert "--colors FILE" in doc["errors"][0]["error"]  # the command line names its flag


def test_effective_with_beta_0_and_an_absent_class_is_quiet():
    counts = ClassCounts(
        np.array([3, 0], np.int64), np.array([1, 0], np.int64), np.array([4, 0], np.int64), 1
    )
    assert compute_weights(counts, "effective", params=Params(beta=0.0)).weights.tolist() == [1, 0]


def test_explicit_num_classes_overrides_a_preset(tmp_path):
    save_mask(tmp_path / "a.png", [[0, 25, 255]])
    doc = run_json("scan", tmp_path, "--preset", "voc", "--num-classes", "30")
    assert doc["num_classes"] == 30 and doc["classes"][0]["name"] is None
    assert doc["ignore_index"] == [255]


def test_tiff_mixing_colour_and_index_pages_is_refused(tmp_path):
    pages = [Image.new("L", (2, 2), 1), Image.new("RGB", (2, 2), (9, 9, 9))]
    pages[0].save(tmp_path / "mixed.tif", save_all=True, append_images=pages[1:])
    assert_one_line_error(run("scan", tmp_path), 3, "mixed.tif: has pages of colours and pages")


def test_json_has_one_line_per_class_whatever_the_names(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_B, "P")
    names = ['a}, {"b', 'c"}, {"d', "e"]  # what separates two classes in the JSON
    (tmp_path / "names.json").write_text(json.dumps(names))
    args = ["--ignore-index", "255", "--class-names", tmp_path / "names.json"]
    result = run("scan", tmp_path / "m", *args)
    assert [c["name"] for c in json.loads(result.stdout)["classes"]] == names
    lines = result.stdout.splitlines()
    start = lines.index('  "classes": [')
    rows = [json.loads(line.strip().rstrip(",")) for line in lines[start + 1 : start + 4]]
    assert [row["name"] for row in rows] == names


def test_mixed_tiff_is_refused_with_a_region_too(tmp_path):
    (tmp_path / "labels").mkdir()
    pages = [Image.new("L", (2, 2), 1), Image.new("RGB", (2, 2), (9, 9, 9))]
    pages[0].save(tmp_path / "labels" / "m.tif", save_all=True, append_images=pages[1:])
    save_mask(tmp_path / "fov" / "m.png", np.ones((2, 2)))
    result = run("scan", tmp_path / "labels", "--roi", tmp_path / "fov")
    assert_one_line_error(result, 3, "m.tif: has pages of colours and pages")


def test_unreadable_baseline_fails_before_the_scan(tmp_path):
    # The masks' folder is missing too: the error names the baseline, read first.
    result = run("check", tmp_path / "nothing", "--baseline", tmp_path / "none.json",
                 "--max-drift", "0.1")  # fmt: skip
    assert_one_line_error(result, 3, "none.json", "cannot read report")
