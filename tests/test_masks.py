"""Reading masks: every index mode counted exactly, and finding masks on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classweights import InputError, MaskError, find_masks, read_histogram
from helpers import save_mask


def mode_of(path) -> str:
    with Image.open(path) as image:
        return image.mode


def as_dict(histogram):
    return dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True))


IDS = np.array([[0, 0, 3, 3, 3], [0, 7, 7, 255, 255]])
IDS_COUNTS = {0: 3, 3: 3, 7: 2, 255: 2}


@pytest.mark.parametrize("mode", ["L", "P"])
def test_8bit_modes_count_pixel_values(tmp_path, mode):
    assert as_dict(read_histogram(save_mask(tmp_path / "m.png", IDS, mode))) == IDS_COUNTS


def test_palette_indices_are_labels_whatever_the_colours(tmp_path):
    # A scrambled palette: index 3 is drawn white, index 0 red. The colours must not matter.
    image = Image.fromarray(IDS.astype(np.uint8))
    image.putpalette([255, 0, 0] + [0] * 6 + [255, 255, 255] + [9] * (252 * 3))
    image.save(tmp_path / "p.png")
    assert mode_of(tmp_path / "p.png") == "P"
    assert as_dict(read_histogram(tmp_path / "p.png")) == IDS_COUNTS


def test_bilevel_mode_gives_labels_0_and_1(tmp_path):
    Image.fromarray(IDS > 5).save(tmp_path / "b.png")
    assert mode_of(tmp_path / "b.png") == "1"
    assert as_dict(read_histogram(tmp_path / "b.png")) == {0: 6, 1: 4}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_masks_keep_all_16_bits(tmp_path, suffix):
    ids = np.array([[0, 256, 256], [1000, 65535, 1000]])
    path = save_mask(tmp_path / f"m{suffix}", ids, "I;16")
    assert mode_of(path).startswith("I;16")
    assert as_dict(read_histogram(path)) == {0: 1, 256: 2, 1000: 2, 65535: 1}


def test_32bit_masks(tmp_path):
    ids = np.array([[0, 70000, 70000], [-5, 3, 3]])
    path = save_mask(tmp_path / "m.tif", ids, "I")
    assert as_dict(read_histogram(path)) == {-5: 1, 0: 1, 3: 2, 70000: 2}


@pytest.mark.parametrize("fmt", ["bmp", "gif", "tiff"])
def test_other_containers(tmp_path, fmt):
    path = save_mask(tmp_path / f"m.{fmt}", IDS, "P")
    assert as_dict(read_histogram(path)) == IDS_COUNTS


def test_multipage_tiff_counts_every_page(tmp_path):
    pages = [Image.fromarray(np.full((2, 3), v, np.uint8)) for v in (1, 2, 2)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    assert as_dict(read_histogram(tmp_path / "stack.tif")) == {1: 6, 2: 12}


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int64, bool])
def test_npy_integer_arrays_of_any_shape(tmp_path, dtype):
    volume = np.zeros((2, 3, 4), dtype)
    volume[0, 0, :2] = 1
    np.save(tmp_path / "v.npy", volume)
    assert as_dict(read_histogram(tmp_path / "v.npy")) == {0: 22, 1: 2}


def test_npy_floats_only_when_integral(tmp_path):
    np.save(tmp_path / "ok.npy", np.array([[1.0, 2.0], [2.0, 0.0]], np.float32))
    assert as_dict(read_histogram(tmp_path / "ok.npy")) == {0: 1, 1: 1, 2: 2}
    np.save(tmp_path / "bad.npy", np.array([[1.0, 2.5]]))
    with pytest.raises(MaskError, match=r"bad.npy: holds the non-integral value 2.5"):
        read_histogram(tmp_path / "bad.npy")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_masks_count_packed_colours(tmp_path, mode):
    image = Image.new(mode, (3, 2), (128, 64, 0, 255)[: len(mode)])
    image.putpixel((0, 0), (0, 0, 255, 0)[: len(mode)])  # alpha is not part of the colour
    image.save(tmp_path / "c.png")
    histogram = read_histogram(tmp_path / "c.png")
    assert histogram.colour
    assert as_dict(histogram) == {0x0000FF: 1, 0x804000: 5}


def test_other_modes_are_refused(tmp_path):
    Image.new("LA", (2, 2)).save(tmp_path / "la.png")
    with pytest.raises(MaskError) as error:
        read_histogram(tmp_path / "la.png")
    assert str(error.value).startswith(f"{tmp_path / 'la.png'}: mode LA image is not a mask")


def test_unreadable_files_name_the_file(tmp_path):
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(MaskError, match=r"text.png: cannot read mask"):
        read_histogram(tmp_path / "text.png")


def make_tree(root: Path) -> None:
    for name in ("b/2.png", "a/1.png", "a/0.tif", "top.png", "notes.txt", ".hidden.png"):
        save_mask(root / name, IDS) if name.endswith((".png", ".tif")) else None
    (root / "notes.txt").write_text("not a mask")


def test_find_masks_recursive_sorted_and_filtered(tmp_path):
    make_tree(tmp_path)
    found = find_masks([tmp_path])
    # In str order of the relative name across folders: a stream that can be fingerprinted
    # (and sharded) as it comes, without holding the list.
    assert [m.name for m in found] == ["a/0.tif", "a/1.png", "b/2.png", "top.png"]
    assert found[-1].path == os.path.join(tmp_path, "top.png")


def test_find_masks_glob_option_and_glob_paths(tmp_path):
    make_tree(tmp_path)
    assert [m.name for m in find_masks([tmp_path], "*.tif")] == ["a/0.tif"]
    assert [m.name for m in find_masks([tmp_path], "b/*.png")] == ["b/2.png"]
    matched = find_masks([str(tmp_path / "*" / "*.png")])
    assert [Path(m.path).name for m in matched] == ["1.png", "2.png"]


def test_find_masks_files_directly_and_no_repeats(tmp_path):
    make_tree(tmp_path)
    found = find_masks([tmp_path / "a" / "1.png", tmp_path / "a"])
    assert [m.name for m in found] == ["0.tif", "1.png"]  # a/1.png once, by either name


def test_a_folder_given_again_through_a_link_is_listed_once(tmp_path):
    make_tree(tmp_path)
    os.symlink(tmp_path / "a", tmp_path / "linked")
    found = find_masks([tmp_path / "a", tmp_path / "linked"])
    assert [m.name for m in found] == ["0.tif", "1.png"]
    # Two links to one file are two masks (git-annex, DVC: equal masks, one stored object).
    os.symlink(tmp_path / "a" / "1.png", tmp_path / "a" / "2.png")
    assert [m.name for m in find_masks([tmp_path / "a", tmp_path / "linked"])] == [
        "0.tif", "1.png", "2.png"
    ]


def test_find_masks_survives_a_symlink_loop(tmp_path):
    make_tree(tmp_path)
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert len(find_masks([tmp_path])) == 4


def test_find_masks_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        find_masks([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no masks found"):
        find_masks([tmp_path / "empty"])
    with pytest.raises(InputError, match=r"no masks found matching '\*\.npy'"):
        find_masks([tmp_path], "*.npy")


def test_a_damaged_npz_is_refused_with_the_reason(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip archive at all")
    with pytest.raises(MaskError, match=r"bad\.npz: cannot read mask: File is not a zip file$"):
        read_histogram(tmp_path / "bad.npz")
    good = tmp_path / "good.npz"
    np.savez_compressed(good, labels=np.array([[1, 1], [2, 3]], np.uint8))
    damaged = bytearray(good.read_bytes())
    damaged[60] ^= 0xFF  # inside the compressed member: its CRC or its inflate fails
    (tmp_path / "member.npz").write_bytes(bytes(damaged))
    with pytest.raises(MaskError, match=r"member\.npz: cannot read mask: "):
        read_histogram(tmp_path / "member.npz")
    histogram = read_histogram(good)
    counts = dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True))
    assert counts == {1: 2, 2: 1, 3: 1}
