"""Bad input everywhere: one line naming the file, the documented exit code, no half file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from classweights import cli as cli_module
from helpers import MASK_A, assert_one_line_error, run, save_mask


@pytest.fixture
def masks(tmp_path):
    save_mask(tmp_path / "masks" / "a.png", MASK_A, "P")
    return tmp_path / "masks"


def broken_files(folder):
    """Each broken file and the words its error must hold."""
    good = save_mask(folder / "good.png", MASK_A, "P").read_bytes()
    return {
        "truncated.png": (good[: len(good) // 2], "cannot read mask"),
        "empty.png": (b"", "cannot read mask"),
        "text.png": (b"just some text\n", "not an image format Pillow knows"),
    }


@pytest.mark.parametrize("name", ["truncated.png", "empty.png", "text.png"])
def test_broken_mask_is_exit_3_and_leaves_no_output(tmp_path, name):
    data, words = broken_files(tmp_path / "in")[name]
    (tmp_path / "in" / name).write_bytes(data)
    out = tmp_path / "out.json"
    result = run("scan", tmp_path / "in", "-o", out)
    assert_one_line_error(result, 3, name, words)
    assert not out.exists() and list(tmp_path.glob("*.json*")) == []


def test_decompression_bomb_guard(masks, tmp_path):
    # 4x4 = 16 pixels: over a limit of 15, under the default.
    result = run("scan", masks, "--max-pixels", "15", "-o", tmp_path / "o.json")
    assert_one_line_error(result, 3, "a.png", "4x4 = 16 pixels, more than --max-pixels 15")
    assert not (tmp_path / "o.json").exists()
    assert run("scan", masks, "-q").exit_code == 0


def test_dangling_link_and_link_loop(masks, tmp_path):
    os.symlink(tmp_path / "nowhere.png", masks / "dangling.png")
    assert_one_line_error(run("scan", masks), 3, "dangling.png", "No such file or directory")
    os.remove(masks / "dangling.png")
    os.symlink(masks / "loop2.png", masks / "loop1.png")
    os.symlink(masks / "loop1.png", masks / "loop2.png")
    assert_one_line_error(run("scan", masks), 3, "loop1.png", "Too many levels of symbolic links")


def test_unreadable_file(masks, monkeypatch):
    real_open = os.open  # masks are opened by os.open (masks.open_regular)

    def refuse(path, *args, **kwargs):
        if str(path).endswith("a.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    assert_one_line_error(run("scan", masks), 3, "a.png", "Permission denied")


def test_empty_directory_and_glob_matching_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("scan", tmp_path / "empty"), 3, "empty: no masks found")
    result = run("scan", str(tmp_path / "*.png"))
    assert_one_line_error(result, 3, "*.png: no masks found")
    result = run("scan", tmp_path, "--glob", "*.tif")
    assert_one_line_error(result, 3, "no masks found matching '*.tif'")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{broken", "not a JSON or YAML report"),
        ("[1, 2, 3]", "not a classweights report"),
        ('{"classes": []}', "not a classweights report (no 'num_classes' field)"),
        (": : :", "not a JSON or YAML report"),
    ],
)
@pytest.mark.parametrize("command", ["weights", "merge"])
def test_malformed_report(tmp_path, content, words, command):
    (tmp_path / "r.json").write_text(content)
    result = run(command, tmp_path / "r.json", "-o", tmp_path / "o.json")
    assert_one_line_error(result, 3, "r.json", words)
    assert not (tmp_path / "o.json").exists()


def test_unreadable_report(tmp_path):
    assert_one_line_error(run("weights", tmp_path / "none.json"), 3, "none.json", "cannot read")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00garbage")
    assert_one_line_error(run("merge", tmp_path / "bad.json"), 3, "bad.json", "cannot read")


def test_skip_errors_goes_on_and_lists_the_failures(masks):
    (masks / "broken.png").write_bytes(b"not a png")
    result = run("scan", masks, "--skip-errors")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["totals"]["files"] == 1 and doc["source"]["files"] == 2
    why = "cannot read mask: not an image format Pillow knows"
    assert doc["errors"] == [{"file": str(masks / "broken.png"), "error": why}]
    assert f"skipped {masks / 'broken.png'}: cannot read mask" in result.stderr


def test_keyboard_interrupt_exits_130_quietly(masks, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "scan", interrupted)
    result = run("scan", masks, "-o", masks.parent / "o.json")
    assert result.exit_code == 130
    assert result.stdout == "" and result.stderr == "interrupted\n"
    assert not (masks.parent / "o.json").exists()


#: The command line, with the mask named *wait.png taking a minute to read: it says when it
#: starts (a file beside it), so a test can interrupt a scan that is surely past start-up.
SLOW_SCAN = """
import importlib, pathlib, time
from classweights.cli import main
scan = importlib.import_module("classweights.scan")  # the module (the CLI imports it lazily)
real = scan.read_histogram
def slow(mask, options):
    if mask.path.endswith("wait.png"):
        pathlib.Path(mask.path + ".started").touch()
        time.sleep(60)
    return real(mask, options)
scan.read_histogram = slow
main()
"""


@pytest.mark.parametrize("files", [3, 80])  # in this process, and with a pool of workers
def test_ctrl_c_stops_a_real_scan(tmp_path, files):
    for i in range(files):
        save_mask(tmp_path / f"m{i:03d}.png", MASK_A, "P")
    save_mask(tmp_path / "m000_wait.png", MASK_A, "P")
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SCAN, "scan", tmp_path, "-o", tmp_path / "o.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "m000_wait.png.started").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    assert stdout == "" and stderr == "interrupted\n"
    assert not (tmp_path / "o.json").exists()
