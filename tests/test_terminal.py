"""The terminal as people meet it: presets, -V, start-up cost, the table, progress, warnings."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from classweights.presets import PRESETS
from classweights.report import DIGITS
from classweights.weights import ENET_C
from helpers import MASK_A, MASK_B, run, run_json, save_mask


@pytest.fixture
def tiny(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    save_mask(tmp_path / "m" / "b.png", MASK_B)
    return tmp_path / "m"


def test_presets_name_shows_the_classes_in_any_case():
    result = run("presets", "CamVid")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["0", "Sky"] and lines[11].split() == ["10", "Bicyclist"]
    assert "ignored: 11" in lines
    cityscapes = run("presets", "cityscapes").stdout
    assert "  18  bicycle" in cityscapes and "7:0" in cityscapes and "*_labelIds.png" in cityscapes
    assert run("presets", "nope").exit_code == 2


def test_preset_names_are_case_insensitive(tiny):
    doc = run_json("scan", tiny, "--preset", "VOC", "-q")
    assert doc["num_classes"] == len(PRESETS["voc"].names)


def test_short_version_flag():
    assert run("-V").stdout == run("--version").stdout != ""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-V"]])
def test_help_and_version_import_no_numpy_nor_the_scan(args):
    code = (
        "import sys\n"
        "from classweights.cli import cli\n"
        f"try:\n    cli({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'rich')"
        " or m in ('classweights.scan', 'classweights.masks', 'classweights.weights')]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_help_shows_the_defaults_of_deferred_options():
    help_text = " ".join(run("scan", "--help").stdout.split())
    assert f"[default: ({ENET_C})" in help_text
    assert f"[default: ({DIGITS})" in help_text
    assert "[default: median]" in help_text and "torch-ce" in help_text


def terminal_display(width: int = 60):
    """A Display drawing on a fake terminal of ``width`` columns; returns it and its output."""
    import io

    from rich.console import Console

    from classweights.display import Display

    display = Display()
    out = io.StringIO()
    display.console = Console(file=out, force_terminal=True, width=width, color_system=None)
    return display, out


def test_the_document_comes_first_then_table_warnings_and_a_closing_line(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 1], [2, 2]])
    result = run("scan", tmp_path, "--num-classes", "4", "-o", tmp_path / "r.json")
    assert result.exit_code == 0 and result.stdout == ""
    err = result.stderr
    table, warning, closing = err.index("weights, normalize"), err.index("warning:"), err.index(
        "wrote "
    )
    assert table < warning < closing
    assert "classes with no pixels: 3" in err
    assert re.search(rf"wrote {re.escape(str(tmp_path / 'r.json'))}: 1 mask in \d+\.\d s", err)
    assert "1 mask, 4 pixels counted" in err  # singular


def test_closing_line_without_output_and_after_weights(tiny, tmp_path):
    result = run("scan", tiny, "--ignore-index", "255")
    assert re.search(r"done: 2 masks in \d+\.\d s, [\d,]+ masks/s\n$", result.stderr)
    run("scan", tiny, "--ignore-index", "255", "-q", "-o", tmp_path / "r.json")
    again = run("weights", tmp_path / "r.json", "--method", "enet")
    assert again.stderr.endswith("done\n")  # nothing scanned, no rate


def test_share_bar_is_log_scale():
    from classweights.display import SHARE_BAR_WIDTH, share_bar

    assert share_bar(1.0) == "█" * SHARE_BAR_WIDTH
    assert len(share_bar(1e-3)) == SHARE_BAR_WIDTH // 2  # 3 of 6 decades
    assert share_bar(1e-9) == "█"  # still seen
    assert share_bar(0) == ""


def test_table_has_a_share_bar_and_pos_weight_when_asked(tiny):
    plain = run("scan", tiny, "--ignore-index", "255").stderr
    assert "share (log)" in plain and "pos_weight" not in plain
    bce = run("scan", tiny, "--ignore-index", "255", "--for", "torch-bce").stderr
    assert "pos_weight" in bce and "2.75" in bce  # class 1: 22 / 8


def test_absent_classes_by_name_when_names_are_known(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 3], [11, 11]])  # CamVid: Sky and Road only
    err = run("scan", tmp_path, "--preset", "camvid").stderr
    assert "classes with no pixels: 1 Building, 2 Pole, 4 Pavement" in err


def test_skipped_files_are_counted_in_the_table(tiny):
    (tiny / "broken.png").write_bytes(b"not a png")
    err = run("scan", tiny, "--ignore-index", "255", "--skip-errors").stderr
    assert "1 file skipped (--skip-errors)" in " ".join(err.split())  # the caption may wrap


def test_warnings_wrap_at_word_boundaries_and_list_parts_one_per_line():
    display, out = terminal_display(width=40)
    words = ["every", "word", "of", "this", "warning", "stays", "whole", "when", "it", "wraps"]
    display.warn(" ".join(words) + " | a.png: label 9 | b.png: label 7")
    display.flush()
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert [w for line in lines[:-2] for w in line.replace("warning:", "").split()] == words
    assert lines[-2:] == ["  a.png: label 9", "  b.png: label 7"]


def test_progress_bar_draws_on_a_timer_with_spinner_and_elapsed_time():
    import time

    display, out = terminal_display(width=100)

    def redrawn(frames: int) -> bool:
        """Wait (up to 5 s, on a busy machine) until the bar is drawn more than ``frames``
        times, with no report in between: the timer redraws spinner and elapsed time."""
        deadline = time.monotonic() + 5
        while out.getvalue().count("scanning") <= frames and time.monotonic() < deadline:
            time.sleep(0.05)
        return out.getvalue().count("scanning") > frames

    with display.progress() as update:
        update(0, 40)
        assert redrawn(1)
        update(20, 40)
        assert redrawn(out.getvalue().count("scanning"))
        update(40, 40)
    drawn = out.getvalue()
    assert "scanning" in drawn and "20/40" in drawn and "40/40" in drawn
    assert "0:00:0" in drawn  # elapsed
    display.done(None)
    assert "done: 40 masks in 0." in out.getvalue()


# Pairing by sample id (--pair-key): the real DRIVE and Cityscapes layouts.


def drive(tmp_path):
    base = tmp_path / "DRIVE" / "training"
    for n in (21, 22):
        save_mask(base / "1st_manual" / f"{n}_manual1.gif", [[0, 255, 255], [0, 0, 255]])
        save_mask(base / "mask" / f"{n}_training_mask.gif", [[0, 1, 1], [0, 1, 1]])  # no corner
        save_mask(base / "images" / f"{n}_training.tif", [[9, 9, 9], [9, 9, 9]])
    return base


def test_drive_pairs_labels_regions_and_images_by_number(tmp_path):
    base = drive(tmp_path)
    stems = run("scan", base / "1st_manual", "--map", "255:1", "--roi", base / "mask")
    assert stems.exit_code == 3 and "no region mask 21_manual1.*" in stems.stderr
    doc = run_json(
        "scan", base / "1st_manual", "--map", "255:1", "--roi", base / "mask",
        "--pair-key", r"^(\d+)_", "-q",
    )  # fmt: skip
    # Per mask, inside the field of view: (0,1)=1 (0,2)=1 (1,1)=0 (1,2)=1: 1 background, 3 vessel.
    assert [c["pixels"] for c in doc["classes"]] == [2, 6]
    preset = run_json(
        "scan", base / "1st_manual", "--preset", "drive", "--roi", base / "mask", "-q"
    )
    assert [c["pixels"] for c in preset["classes"]] == [2, 6]
    ok = run("check", base / "1st_manual", "--preset", "drive", "--images", base / "images")
    assert ok.exit_code == 0 and ok.stdout == "ok: 2 masks, every rule holds\n"


def test_cityscapes_pairs_label_ids_with_left_images(tmp_path):
    gt, left = tmp_path / "gtFine" / "train", tmp_path / "leftImg8bit" / "train"
    for city, frame in (("aachen", "000000_000019"), ("bochum", "000001_000020")):
        save_mask(gt / city / f"{city}_{frame}_gtFine_labelIds.png", [[7, 8], [26, 0]])
        save_mask(left / city / f"{city}_{frame}_leftImg8bit.png", [[1, 2], [3, 4]])
    save_mask(left / "bochum" / "bochum_000009_000009_leftImg8bit.png", [[1, 2], [3, 4]])
    result = run("check", gt, "--preset", "cityscapes", "--images", left)
    assert result.exit_code == 1
    assert "1 image has no mask" in result.stdout
    assert "bochum_000009_000009_leftImg8bit.png" in result.stdout
    assert "masks have no image" not in result.stdout


def test_pair_key_must_be_a_regex_of_one_group_and_must_match(tmp_path):
    base = drive(tmp_path)
    bad = run("scan", base / "1st_manual", "--roi", base / "mask", "--pair-key", r"^\d+_")
    assert bad.exit_code == 2 and "0 groups" in bad.stderr
    bad = run("scan", base / "1st_manual", "--roi", base / "mask", "--pair-key", "(")
    assert bad.exit_code == 2 and "not a regular expression" in bad.stderr
    miss = run("scan", base / "1st_manual", "--roi", base / "mask", "--pair-key", "^(x)")
    assert miss.exit_code == 3 and "--pair-key '^(x)' finds no sample id in" in miss.stderr


def test_sizes_are_width_x_height():
    from classweights.masks import shape_text

    assert shape_text((4, 5)) == "5x4"  # numpy's (height, width)
    assert shape_text((3, 4, 5)) == "5x4x3"


# check's violations: wrapped for a terminal, one line each in a pipe, JSON never.


@pytest.fixture
def out_of_range(tmp_path):
    for n in range(3):
        save_mask(tmp_path / "m" / f"mask_{n}.png", [[0, 5], [9, 9]])
    return tmp_path / "m"


def test_check_wraps_violations_with_examples_one_per_line_in_a_terminal(
    out_of_range, monkeypatch
):
    import classweights.cli

    monkeypatch.chdir(out_of_range.parent)  # paths as the user typed them: m/mask_0.png
    args = ("check", "m", "--num-classes", "3")
    piped = run(*args)
    assert piped.exit_code == 1
    assert piped.stdout.splitlines() == [
        "num-classes: label 5 is outside 0..2 (--num-classes 3): 3 pixels in 3 files; e.g. "
        "m/mask_0.png (1 pixel), m/mask_1.png (1 pixel), m/mask_2.png (1 pixel)",
        "num-classes: label 9 is outside 0..2 (--num-classes 3): 6 pixels in 3 files; e.g. "
        "m/mask_0.png (2 pixels), m/mask_1.png (2 pixels), m/mask_2.png (2 pixels)",
        "2 violations in 3 masks",
    ]  # in a pipe or a file: one line each, for grep

    monkeypatch.setattr(classweights.cli, "_terminal_width", lambda: 40)
    shown = run(*args)
    assert shown.exit_code == 1
    assert shown.stdout.splitlines() == [
        "num-classes: label 5 is outside 0..2",
        "    (--num-classes 3): 3 pixels in 3",
        "    files",
        "  m/mask_0.png (1 pixel)",
        "  m/mask_1.png (1 pixel)",
        "  m/mask_2.png (1 pixel)",
        "num-classes: label 9 is outside 0..2",
        "    (--num-classes 3): 6 pixels in 3",
        "    files",
        "  m/mask_0.png (2 pixels)",
        "  m/mask_1.png (2 pixels)",
        "  m/mask_2.png (2 pixels)",
        "2 violations in 3 masks",
    ]
    as_json = run(*args, "--format", "json")  # never wrapped, terminal or not
    assert json.loads(as_json.stdout)["violations"][0]["examples"][0]["detail"] == "1 pixel"
    run(*args, "-o", "r.txt")
    assert (out_of_range.parent / "r.txt").read_text() == piped.stdout


def test_wrapping_never_cuts_a_path():
    from classweights.checks import Violation
    from classweights.display import wrapped_violations

    path = "a/very/long/path/that/does/not/fit/in/twenty/columns.png"
    text = wrapped_violations([Violation("readable", "1 file cannot be read", ((path, "x"),))],
                              "1 violation in 1 mask", 20)  # fmt: skip
    assert f"  {path}" in text.splitlines()


def test_the_rate_is_masks_over_the_time_since_the_start():
    from rich.progress import Progress

    from classweights.display import _RateColumn

    now = [0.0]
    progress = Progress(get_time=lambda: now[0], disable=True)
    task_id = progress.add_task("scanning", total=40)
    now[0] = 1.5
    progress.update(task_id, completed=1)
    now[0] = 1.5001
    progress.update(task_id, completed=3)  # the first two tasks finish together
    task = progress.tasks[0]
    assert task.speed > 1000  # rich's own estimate, from the last updates
    assert str(_RateColumn().render(task)) == "2 masks/s"
