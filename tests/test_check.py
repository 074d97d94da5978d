"""classweights check: each rule pinned by data breaking exactly it, and data breaking none."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import MASK_A, MASK_B, assert_one_line_error, run, save_mask

GOOD = ["--num-classes", "3", "--ignore-index", "255"]


@pytest.fixture
def good(tmp_path):
    """The two hand-made masks (pixels [20, 8, 2], 2 void), with images of the same size."""
    save_mask(tmp_path / "masks" / "a.png", MASK_A, "P")
    save_mask(tmp_path / "masks" / "b.png", MASK_B, "P")
    for name in ("a", "b"):
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "images" / f"{name}.jpg")
    return tmp_path


ALL_RULES = [
    *GOOD,
    "--allowed-values", "0-2,255",
    "--require-classes", "all",
    "--min-share", "2=0.05",
    "--max-imbalance", "10",
]  # fmt: skip


def test_a_dataset_that_breaks_no_rule_exits_0(good, tmp_path):
    run("scan", good / "masks", *GOOD, "-o", tmp_path / "baseline.json")
    result = run(
        "check", good / "masks", *ALL_RULES, "--images", good / "images",
        "--baseline", tmp_path / "baseline.json", "--max-drift", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout
    assert result.stdout == "ok: 2 masks, every rule holds\n"


def violations(result) -> list[str]:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    return result.stdout.splitlines()[:-1]


def test_num_classes_names_the_value_the_pixels_and_files(good):
    save_mask(good / "masks" / "c.png", [[0, 3, 3], [7, 0, 0]], "P")
    lines = violations(run("check", good / "masks", *GOOD))
    assert lines == [
        "num-classes: label 3 is outside 0..2 (--num-classes 3): 2 pixels in 1 file; "
        f"e.g. {good / 'masks' / 'c.png'} (2 pixels)",
        "num-classes: label 7 is outside 0..2 (--num-classes 3): 1 pixel in 1 file; "
        f"e.g. {good / 'masks' / 'c.png'} (1 pixel)",
    ]


def test_examples_are_at_most_five_files(good):
    for i in range(7):
        save_mask(good / "masks" / f"z{i}.png", [[9]], "P")
    (line,) = violations(run("check", good / "masks", *GOOD))
    assert "label 9" in line and "7 files" in line
    assert line.count(".png (1 pixel)") == 5


def test_allowed_values(good):
    save_mask(good / "masks" / "c.png", [[0, 254]], "P")
    (line,) = violations(run("check", good / "masks", "--allowed-values", "0-2,255"))
    assert line.startswith("allowed-values: value 254 is not one of the allowed values: 1 pixel")
    assert "c.png (1 pixel)" in line


def test_require_classes_by_name_and_id(good, tmp_path):
    (tmp_path / "names.txt").write_text("background\nroad\nperson\nrider\n")
    args = ["--ignore-index", "255", "--class-names", tmp_path / "names.txt"]
    (line,) = violations(run("check", good / "masks", *args, "--require-classes", "all"))
    assert line == "require-classes: class 3 (rider) never occurs"
    ok = run("check", good / "masks", *args, "--require-classes", "0,road,person")
    assert ok.exit_code == 0


def test_unknown_class_name_is_exit_3(good):
    result = run("check", good / "masks", *GOOD, "--require-classes", "bus")
    assert_one_line_error(result, 3, "no class named 'bus'")


def test_min_share(good):
    # class 2 holds 2 of 30 pixels: 6.67%
    (line,) = violations(run("check", good / "masks", *GOOD, "--min-share", "2=0.1"))
    assert line == "min-share: class 2 has 6.6667% of the pixels, less than 10.0000%"


def test_max_imbalance(good):
    # class 0 / class 2 = 20 / 2 = 10
    (line,) = violations(run("check", good / "masks", *GOOD, "--max-imbalance", "9.5"))
    assert line == "max-imbalance: class 0 has 10.0 times the pixels of class 2, more than 9.5"


def test_images_missing_extra_and_other_size(good):
    Image.new("RGB", (4, 4)).save(good / "images" / "orphan.png")
    save_mask(good / "masks" / "lonely.png", [[0]], "P")
    Image.new("RGB", (5, 4)).save(good / "images" / "b.jpg")
    lines = violations(run("check", good / "masks", *GOOD, "--images", good / "images"))
    assert lines == [
        f"images: 1 mask has no image; e.g. {good / 'masks' / 'lonely.png'} (alone)",
        f"images: 1 image has no mask; e.g. {good / 'images' / 'orphan.png'} (alone)",
        "images: 1 mask differs in size from their image; "
        f"e.g. {good / 'masks' / 'b.png'} (4x4, its image 5x4)",  # width x height
    ]


def test_drift_from_a_baseline(good, tmp_path):
    run("scan", good / "masks", *GOOD, "-o", tmp_path / "baseline.json")
    save_mask(good / "masks" / "c.png", np.full((4, 4), 2), "P")  # class 2: 2 -> 18 of 46
    lines = violations(
        run("check", good / "masks", *GOOD, "--baseline", tmp_path / "baseline.json",
            "--max-drift", "0.1")
    )  # fmt: skip
    assert lines == [
        "max-drift: class 0 share moved from 66.6667% to 43.4783%, by 23.19 points, more than 10",
        "max-drift: class 2 share moved from 6.6667% to 39.1304%, by 32.46 points, more than 10",
    ]


def test_unreadable_masks_are_violations_not_crashes(good):
    (good / "masks" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (line,) = violations(run("check", good / "masks", *GOOD))
    assert line.startswith("readable: 1 file cannot be read; e.g. ")
    assert "broken.png (cannot read mask" in line


def test_json_format_for_machines(good):
    save_mask(good / "masks" / "c.png", [[5]], "P")
    result = run("check", good / "masks", *GOOD, "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["files"] == 3
    (violation,) = doc["violations"]
    assert violation["rule"] == "num-classes"
    assert violation["examples"] == [{"file": str(good / "masks" / "c.png"), "detail": "1 pixel"}]


def test_check_usage_errors(good):
    result = run("check", good / "masks", "--max-drift", "0.1")
    assert result.exit_code == 2 and "--baseline and --max-drift go together" in result.stderr
    result = run("check", good / "masks", "--min-share", "person")
    assert result.exit_code == 2 and "is not CLASS=SHARE" in result.stderr
    result = run("check", good / "masks", "--allowed-values", "0-x")
    assert result.exit_code == 2 and "is not a value or a range" in result.stderr


def test_check_that_cannot_run_is_exit_3(tmp_path):
    result = run("check", tmp_path / "nothing", "--num-classes", 2)
    assert_one_line_error(result, 3, "no such file or directory")


def test_pre_commit_hook_runs_classweights_check():
    import yaml

    from helpers import REPO

    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "classweights-check"
    assert hook["entry"] == "classweights check" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
