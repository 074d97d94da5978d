"""Label files that look wrong are refused, not guessed at: repeated class names, value maps and
colour maps that give a float, a boolean or a key twice; and a damaged NIfTI mask is an
unreadable mask like any other."""

from __future__ import annotations

import gzip
import json
import logging
import struct

import numpy as np
import pytest

from classweights import read_histogram
from classweights.errors import LabelFileError, MaskError
from classweights.labelmaps import load_map, parse_data
from helpers import MASK_A, MASK_B, assert_one_line_error, run, run_json, save_mask


@pytest.fixture
def masks(tmp_path):
    """MASK_A and MASK_B: ids 0, 1, 2 and 255."""
    save_mask(tmp_path / "masks" / "a.png", MASK_A, "P")
    save_mask(tmp_path / "masks" / "b.png", MASK_B, "P")
    return tmp_path / "masks"


# Class names


def test_repeated_class_name_in_a_text_file_is_exit_3_naming_both_lines(masks, tmp_path):
    (tmp_path / "names.txt").write_text("a\na\nc\nd\n")
    words = "names.txt: class name 'a' is given twice: lines 1 and 2"
    result = run("scan", masks, "--ignore-index", 255, "--class-names", tmp_path / "names.txt")
    assert_one_line_error(result, 3, words)
    # check would hold the first `a` to --min-share and let the second break the rule unseen.
    result = run(
        "check", masks, "--ignore-index", 255, "--class-names", tmp_path / "names.txt",
        "--min-share", "a=0.5", "-q",
    )  # fmt: skip
    assert_one_line_error(result, 3, words)


@pytest.mark.parametrize(
    ("name", "text"),
    [("names.json", '["a", "b", "a"]'), ("names.yaml", "- a\n- b\n- a\n")],
)
def test_repeated_class_name_in_a_list_is_exit_3_naming_both_entries(masks, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    result = run("scan", masks, "--ignore-index", 255, "--class-names", tmp_path / name)
    assert_one_line_error(result, 3, f"{name}: class name 'a' is given twice: entries 0 and 2")


def test_names_that_differ_are_read(masks, tmp_path):
    (tmp_path / "names.txt").write_text("a\nb\nab\n")
    doc = run_json(
        "scan", masks, "-q", "--ignore-index", 255, "--class-names", tmp_path / "names.txt"
    )
    assert [c["name"] for c in doc["classes"]] == ["a", "b", "ab"]


# Value maps


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("map.json", '{"255": 3.5}', "map.json: key 255: '255': 3.5 is not a pair of integers"),
        ("map.json", '{"255": true}', "map.json: key 255: '255': True is not a pair of integers"),
        ("map.json", '{"255": 2.0}', "map.json: key 255: '255': 2.0 is not a pair of integers"),
        ("pairs.json", "[[255.5, 2]]", "pairs.json: entry 0: 255.5: 2 is not a pair of integers"),
        ("pairs.json", "[[false, 2]]", "pairs.json: entry 0: False: 2 is not a pair of integers"),
        ("map.yaml", "255: 3.5\n", "map.yaml: key 255: 255: 3.5 is not a pair of integers"),
        ("map.yaml", "255: yes\n", "map.yaml: key 255: 255: True is not a pair of integers"),
        ("map.json", '{"255": 3, "255": 2}', "map.json: is not valid: key '255' is given twice"),
        ("map.yaml", "255: 3\n255: 2\n", "map.yaml: is not valid: line 2: key 255 is given twice"),
    ],
)
def test_map_file_with_a_float_boolean_or_repeated_key_is_exit_3(
    masks, tmp_path, name, text, words
):
    (tmp_path / name).write_text(text)
    result = run("scan", masks, "--map-file", tmp_path / name, "--num-classes", 4, "-q")
    assert_one_line_error(result, 3, words)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("map.json", '{"255": 2}'),
        ("map.json", '{"255": "2"}'),  # a value quoted as a string, as the key always is
        ("map.yaml", "255: 2\n"),
        ("map.yaml", "'255': '2'\n"),
        ("pairs.json", '[["255", "2"]]'),
        ("map.csv", "src,dst\n255,2\n"),
    ],
)
def test_map_file_of_integers_works_as_before(masks, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    doc = run_json("scan", masks, "-q", "--map-file", tmp_path / name, "--method", "inverse")
    assert doc["map"] == [[255, 2]]
    assert [c["pixels"] for c in doc["classes"]] == [20, 8, 4]


def test_parse_data_refuses_a_key_given_twice_in_json_and_yaml():
    with pytest.raises(ValueError, match=r"^key 'a' is given twice$"):
        parse_data('{"x": {"a": 1, "a": 1}}', as_json=True)
    with pytest.raises(ValueError, match=r"^line 3: key 'a' is given twice$"):
        parse_data("x:\n  a: 1\n  a: 1\n", as_json=False)
    assert parse_data('{"a": 1, "b": {"a": 2}}', as_json=True) == {"a": 1, "b": {"a": 2}}


def test_load_map_names_the_float(tmp_path):
    (tmp_path / "map.json").write_text('{"7": 0, "8": 1.5}')
    with pytest.raises(LabelFileError) as caught:
        load_map(tmp_path / "map.json")
    assert caught.value.message == "key 8: '8': 1.5 is not a pair of integers"


# Colour maps


@pytest.fixture
def colour_masks(tmp_path):
    """One RGB mask: 3 pixels of (128, 64, 128), 1 of black."""
    from PIL import Image

    array = np.array([[[128, 64, 128], [128, 64, 128]], [[128, 64, 128], [0, 0, 0]]], np.uint8)
    (tmp_path / "colour").mkdir()
    Image.fromarray(array).save(tmp_path / "colour" / "a.png")
    return tmp_path / "colour"


BLACK = {"id": 1, "color": "#000000"}


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        (
            "colors.json",
            json.dumps([{"id": 0.5, "color": [128, 64, 128]}, BLACK]),
            "colors.json: entry 0: id 0.5 is not an integer",
        ),
        (
            "colors.json",
            json.dumps([{"id": True, "color": [128, 64, 128]}, BLACK]),
            "colors.json: entry 0: id True is not an integer",
        ),
        (
            "colors.json",
            json.dumps([{"id": 0, "color": [0.5, 0, 0]}, BLACK]),
            "colors.json: entry 0: [0.5, 0, 0] is not a colour",
        ),
        (
            "colors.json",
            json.dumps([{"id": 0, "color": [128.0, 64, 128]}, BLACK]),
            "colors.json: entry 0: [128.0, 64, 128] is not a colour",
        ),
        (
            "colors.json",
            json.dumps([{"id": 0, "color": [True, 0, 0]}, BLACK]),
            "colors.json: entry 0: [True, 0, 0] is not a colour",
        ),
        (
            "colors.json",
            '[{"id": 0, "color": [128, 64, 128], "id": 1}]',
            "colors.json: is not valid: key 'id' is given twice",
        ),
        (
            "colors.csv",
            "id,r,g,b\n0,128.0,64,128\n1,0,0,0\n",
            "colors.csv: line 2: ['128.0', '64', '128'] is not a colour",
        ),
        ("colors.csv", "id,color\n0.0,#804080\n1,#000000\n", "colors.csv: line 2: id '0.0' is not"),
    ],
)
def test_colour_map_with_a_float_boolean_or_repeated_key_is_exit_3(
    colour_masks, tmp_path, name, text, words
):
    (tmp_path / name).write_text(text)
    result = run("scan", colour_masks, "--colors", tmp_path / name, "-q")
    assert_one_line_error(result, 3, words)


@pytest.mark.parametrize(
    "entries",
    [
        [{"id": 0, "color": [128, 64, 128]}, BLACK],
        [{"id": "0", "color": ["128", "64", "128"]}, {"id": "1", "color": "0,0,0"}],
    ],
)
def test_colour_map_of_integers_works_as_before(colour_masks, tmp_path, entries):
    (tmp_path / "colors.json").write_text(json.dumps(entries))
    doc = run_json("scan", colour_masks, "-q", "--colors", tmp_path / "colors.json")
    assert [c["pixels"] for c in doc["classes"]] == [3, 1]
    assert doc["colors"] == [["#000000", 1], ["#804080", 0]]


# Damaged NIfTI volumes


def nifti_bytes() -> bytes:
    """A valid NIfTI-1 volume of 4x5x3 int16 voxels, as bytes."""
    nibabel = pytest.importorskip("nibabel")
    volume = (np.arange(60, dtype=np.int16) % 3).reshape(4, 5, 3)
    return nibabel.Nifti1Image(volume, np.eye(4)).to_bytes()


def unknown_datatype() -> bytes:
    data = bytearray(nifti_bytes())
    data[70:72] = struct.pack("<h", 1028)  # the header's datatype code
    return bytes(data)


#: Each damaged volume and the words of its error, as nibabel says them.
DAMAGED = {
    "garbage.nii": (lambda: b"garbage", "cannot read mask: Binary block is wrong size"),
    "garbage.nii.gz": (
        lambda: gzip.compress(b"garbage" * 10),
        "cannot read mask: Binary block is wrong size",
    ),
    "datatype.nii": (unknown_datatype, "cannot read mask: data code 1028 not recognized"),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_nifti_is_exit_3_in_one_line(tmp_path, name):
    content, words = DAMAGED[name]
    (tmp_path / name).write_bytes(content())
    assert_one_line_error(run("scan", tmp_path / name, "-q"), 3, f"{name}: {words}")


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_nifti_is_skipped_and_listed_with_skip_errors(masks, name):
    content, words = DAMAGED[name]
    (masks / name).write_bytes(content())
    result = run("scan", masks, "--ignore-index", 255, "--skip-errors")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["errors"] == [{"file": str(masks / name), "error": words}]
    assert doc["totals"]["files"] == 2 and doc["source"]["files"] == 3
    assert f"skipped {masks / name}: cannot read mask" in result.stderr


def test_damaged_nifti_header_logs_nothing_of_its_own(tmp_path, caplog):
    (tmp_path / "datatype.nii").write_bytes(unknown_datatype())
    with caplog.at_level(logging.DEBUG), pytest.raises(MaskError) as caught:
        read_histogram(tmp_path / "datatype.nii")
    assert caught.value.message == "cannot read mask: data code 1028 not recognized"
    assert caplog.records == []  # nibabel's log would be a second line on stderr
    assert not logging.getLogger("nibabel.global").disabled  # and is on again for others


def test_sound_nifti_still_reads(tmp_path):
    (tmp_path / "v.nii").write_bytes(nifti_bytes())
    assert read_histogram(tmp_path / "v.nii").counts.tolist() == [20, 20, 20]


def test_values_beyond_64_bits_are_refused_in_files_and_the_library(masks, tmp_path):
    (tmp_path / "map.csv").write_text("1,99999999999999999999\n")
    result = run("scan", masks, "--map-file", tmp_path / "map.csv", "-q")
    assert_one_line_error(result, 3, "map.csv: row 1: 99999999999999999999 is outside the 64-bit")
    from classweights import LabelSpec

    with pytest.raises(ValueError, match="mapping holds 1180591620717411303424, outside the 64"):
        LabelSpec(mapping={2**70: 1})


def test_one_name_for_two_colour_classes_is_refused(masks, tmp_path):
    (tmp_path / "colors.csv").write_text('id,color,name\n0,"0,0,0",road\n1,"1,1,1",road\n')
    result = run("scan", masks, "--colors", tmp_path / "colors.csv", "-q")
    assert_one_line_error(result, 3, "colors.csv", "class name 'road' is given to classes 0 and 1")
