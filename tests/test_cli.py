"""The command line end to end: stdout is one document, stderr is for people, errors one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from classweights import METHODS, __version__
from helpers import assert_one_line_error, run, run_json, save_mask


def test_scan_prints_one_json_document_and_a_table_on_stderr(tiny):
    result = run("scan", tiny, "--ignore-index", "255")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert list(doc) == [
        "classweights", "method", "normalize", "missing", "params", "clip", "num_classes",
        "ignore_index", "map", "reduce_zero_label", "colors", "reading", "weights", "pos_weight",
        "classes",
        "totals", "left_out", "absent", "errors", "source",
    ]  # fmt: skip
    assert doc["classweights"] == __version__
    assert (doc["method"], doc["normalize"], doc["missing"]) == ("median", "none", "zero")
    assert doc["num_classes"] == 3 and doc["ignore_index"] == [255]
    assert doc["weights"] == [0.4, 1.0, 2.0]
    assert doc["pos_weight"] == [0.5, 2.75, 14.0]
    assert doc["classes"][2] == {
        "id": 2, "name": None, "pixels": 2, "images": 1, "image_pixels": 16,
        "frequency": 0.0666667, "weight": 2.0,
    }  # fmt: skip
    assert doc["totals"] == {"files": 2, "pixels": 30, "ignored": 2}
    assert doc["absent"] == []
    assert doc["source"]["files"] == 2 and doc["source"]["paths"] == [str(tiny)]
    assert doc["source"]["fingerprint"].startswith("sha256:")
    assert "median weights" in result.stderr and "30 pixels counted" in result.stderr
    assert "{" not in result.stderr


def test_void_label_without_ignore_index_is_refused(tiny):
    # Issue 9, item 6: a hint that scrolls away is not enough; the document is not written.
    result = run("scan", tiny)
    assert result.exit_code == 3 and result.stdout == ""
    assert "look like classes and a void value, not classes 0..255" in result.stderr
    assert "pass --ignore-index 255, or --map 255:DST, or --num-classes 256" in result.stderr
    doc = run_json("scan", tiny, "--num-classes", 256, "-q")  # kept, as asked
    assert doc["num_classes"] == 256


def test_quiet_leaves_stderr_empty(tiny):
    result = run("scan", tiny, "-q", "--ignore-index", 255)
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("method", [*METHODS, "balanced", "mfb"])
def test_weights_from_a_saved_report_equal_a_fresh_scan(tiny, tmp_path, method):
    report = tmp_path / "r.json"
    assert (
        run("scan", tiny, "--ignore-index", "255", "--num-classes", "4", "-o", report).exit_code
        == 0
    )
    options = ["--method", method, "--normalize", "pixels", "--missing", "max"]
    fresh = run("scan", tiny, "--ignore-index", "255", "--num-classes", "4", *options)
    again = run("weights", report, *options)
    assert again.exit_code == 0
    assert again.stdout == fresh.stdout


def test_yaml_report_reads_back_like_json(tiny, tmp_path):
    run("scan", tiny, "--ignore-index", "255", "--format", "yaml", "-o", tmp_path / "r.yaml")
    doc = yaml.safe_load((tmp_path / "r.yaml").read_text())
    assert doc["weights"] == [0.4, 1.0, 2.0]
    assert (
        run("weights", tmp_path / "r.yaml").stdout
        == run("scan", tiny, "--ignore-index", "255").stdout
    )


def test_list_and_csv_formats(tiny):
    listed = run("scan", tiny, "--ignore-index", "255", "--method", "inverse", "--format", "list")
    assert listed.stdout == "[0.5, 1.25, 5.0]\n"
    table = run("scan", tiny, "--ignore-index", "255", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [r["pixels"] for r in rows] == ["20", "8", "2"]
    assert rows[0] == {
        "id": "0", "name": "", "pixels": "20", "images": "2", "image_pixels": "32",
        "frequency": "0.666667", "weight": "0.4",
    }  # fmt: skip


def test_digits_rounds_weights_and_frequencies(tiny):
    doc = run_json("scan", tiny, "--ignore-index", "255", "--method", "enet", "--digits", "3")
    assert doc["weights"] == [1.91, 3.97, 12.0]  # 1 / ln(1.02 + [2/3, 4/15, 1/15])
    assert doc["classes"][1]["frequency"] == 0.267


@pytest.fixture
def many(tmp_path):
    """80 masks: enough for the scan to start a pool of workers."""
    root = tmp_path / "many"
    rng = np.random.default_rng(5)
    for i in range(80):
        ids = rng.integers(0, 5, size=(9, 7))
        ids[0, :] = 255
        save_mask(root / f"{i % 3}" / f"m{i:02d}.png", ids, "P")
    return root


def test_output_is_byte_identical_whatever_the_worker_count(many):
    outputs = {run("scan", many, "--ignore-index", "255", "--workers", n).stdout for n in (1, 2, 3)}
    assert len(outputs) == 1
    doc = json.loads(outputs.pop())
    assert doc["totals"] == {"files": 80, "pixels": 80 * 8 * 7, "ignored": 80 * 7}


def test_merge_of_halves_equals_the_scan_of_the_whole(many, tmp_path):
    common = ["--ignore-index", "255", "--num-classes", "5"]
    run("scan", many / "0", many / "1", *common, "-o", tmp_path / "a.json")
    run("scan", many / "2", *common, "-o", tmp_path / "b.yaml", "--format", "yaml")
    merged = run_json("merge", tmp_path / "a.json", tmp_path / "b.yaml", "--method", "enet")
    whole = run_json("scan", many, *common, "--method", "enet")
    assert merged.pop("source")["files"] == whole.pop("source")["files"] == 80
    assert merged == whole


def test_merge_refuses_reports_with_other_settings(tiny, tmp_path):
    run("scan", tiny, "--ignore-index", "255", "-o", tmp_path / "a.json")
    run("scan", tiny, "--ignore-index", "255", "--num-classes", "5", "-o", tmp_path / "b.json")
    result = run("merge", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "m.json")
    assert_one_line_error(result, 3, "b.json", "--num-classes is 5 here but 3 in")
    assert not (tmp_path / "m.json").exists()


def test_output_file_is_written_whole_and_nothing_else_is_left(tiny, tmp_path):
    out = tmp_path / "out" / "weights.json"
    out.parent.mkdir()
    result = run("scan", tiny, "--ignore-index", "255", "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["weights"] == [0.4, 1.0, 2.0]
    assert [p.name for p in out.parent.iterdir()] == ["weights.json"]


def test_label_out_of_range_is_exit_3_naming_file_and_value(tiny, tmp_path):
    result = run(
        "scan", tiny, "--num-classes", "2", "--ignore-index", "255", "-o", tmp_path / "o.json"
    )
    assert_one_line_error(result, 3, "b.png", "label 2 is outside 0..1 (--num-classes 2)")
    assert not (tmp_path / "o.json").exists()


def test_colour_mask_is_exit_3_naming_the_file(tmp_path):
    Image.new("RGB", (3, 3)).save(tmp_path / "rgb.png")
    assert_one_line_error(run("scan", tmp_path), 3, "rgb.png", "colour (RGB) mask", "--colors FILE")


def test_missing_error_is_exit_3(tiny):
    result = run("scan", tiny, "--ignore-index", "255", "--num-classes", "4", "--missing", "error")
    assert_one_line_error(result, 3, "classes [3] have no pixels")


def test_nothing_to_scan_is_exit_3(tmp_path):
    assert_one_line_error(run("scan", tmp_path / "nope"), 3, "nope: no such file or directory")
    assert_one_line_error(run("scan", tmp_path), 3, "no masks found")


def test_unreadable_report_is_exit_3(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    assert_one_line_error(run("weights", tmp_path / "bad.json"), 3, "bad.json", "not a JSON")
    (tmp_path / "other.json").write_text('{"weights": [1]}')
    assert_one_line_error(run("weights", tmp_path / "other.json"), 3, "not a classweights report")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "bogus"], "Invalid value for '--method'"),
        (["--map", "255"], "is not SRC:DST"),
        (["--map", "a:b"], "is not SRC:DST with integer values"),
        (["--clip-min", "3", "--clip-max", "1"], "--clip-min 3.0 is above --clip-max 1.0"),
        (["--enet-c", "1"], "Invalid value for '--enet-c'"),
        (["--beta", "1"], "Invalid value for '--beta'"),
        # nan passes every bound, inf the open ones: both reached the weights (tracebacks).
        (["--clip-min", "nan"], "'--clip-min': nan is not a finite number"),
        (["--clip-max", "inf"], "'--clip-max': inf is not a finite number"),
        (["--method", "enet", "--enet-c", "inf"], "'--enet-c': inf is not a finite number"),
        (["--method", "effective", "--beta", "nan"], "'--beta': nan is not a finite number"),
        (["--sample", "2", "--until-stable", "nan"], "'--until-stable': nan is not a finite"),
        (["--num-classes", "99999999999999999999"], "is not in the range 1<=x<=1048576"),
        (["--map", "255:99999999999999999999"], "is not in the range -9223372036854775808<="),
        (["--ignore-index", "-99999999999999999999"], "is not in the range -9223372036854775808"),
        (["--sample", "2", "--bootstrap", "99999999999999"], "is not in the range 0<=x<=100000"),
    ],
)
def test_usage_errors_are_exit_2(tiny, args, message):
    result = run("scan", tiny, *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-imbalance", "nan"], "'--max-imbalance': nan is not a finite number"),
        (["--allowed-values", "3-1"], "'3-1' runs backwards; write 1-3"),
        (["--allowed-values", "0-99999999999999999999"], "holds more than 1,048,576 values"),
    ],
)
def test_check_usage_errors_are_exit_2(tiny, args, message):
    result = run("check", tiny, "--ignore-index", "255", *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""


def test_the_library_holds_the_same_bounds():
    from classweights import LabelSpec, Params, compute_weights
    from classweights.counting import ClassCounts

    with pytest.raises(ValueError, match=r"num_classes must be in 1\.\.1,048,576, not 1048577"):
        LabelSpec(num_classes=2**20 + 1)
    counts = ClassCounts.zeros(2)
    counts.pixels[:] = [3, 1]
    with pytest.raises(ValueError, match="enet_c must be a finite number above 1"):
        compute_weights(counts, "enet", params=Params(enet_c=float("inf")))


def test_map_makes_a_binary_mask_of_0_255(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 255, 255], [0, 0, 255]])
    doc = run_json("scan", tmp_path, "--map", "255:1", "--method", "inverse")
    assert doc["map"] == [[255, 1]]
    assert [c["pixels"] for c in doc["classes"]] == [3, 3]
    assert doc["pos_weight"] == [1.0]


def test_version_and_python_dash_m():
    version, kernel = run("--version").stdout.splitlines()  # the PNG path: tests/test_png.py
    assert version == f"classweights, version {__version__}"
    assert kernel.startswith("PNG kernel: ")
    done = subprocess.run(
        [sys.executable, "-m", "classweights", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("scan", "weights", "merge"):
        assert command in done.stdout


def test_messages_name_the_file_and_read_as_sentences(tiny, tmp_path):
    # From a review of the command line: each of these lacked the file, or a word.
    report = tmp_path / "r.json"
    assert run("scan", tiny, "--ignore-index", "255", "-q", "-o", report).exit_code == 0
    doc = json.loads(report.read_text())
    for entry in doc["classes"]:
        entry["pixels"] = entry["images"] = 0
    doc["totals"]["ignored"] += doc["totals"]["pixels"]
    doc["totals"]["pixels"] = 0
    report.write_text(json.dumps(doc))
    assert_one_line_error(
        run("weights", report, "-q"), 3, "r.json", "counts no pixel (every pixel ignored)"
    )
    rows = tmp_path / "rows.csv"
    assert run("scan", tiny, "--ignore-index", "255", "-q", "--per-image", rows).exit_code == 0
    rows.write_text(rows.read_text().splitlines()[0] + "\n")  # the header alone
    result = run("image-weights", rows, "--method", "inverse", "-q")
    assert result.exit_code == 3 and result.stderr.strip() == f"Error: {rows}: no images to weigh"
    result = run("check", tiny, "--ignore-index", "255", "--require-classes", "foo", "-q")
    assert result.stderr.strip().endswith(
        "no class named 'foo'; classes have no names: give an id in 0..2"
    )
