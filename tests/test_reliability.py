"""Never silently wrong (issue 9): each failure found by adversarial testing, pinned with the
smallest file that shows it. The documented outcome is asserted: exact counts, or the exit code
with one stderr line naming the file, no traceback, no file left by -o, the device or link intact.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import MASK_A, REPO, assert_one_line_error, run, run_json, save_mask


@pytest.fixture
def masks(tmp_path: Path) -> Path:
    """One 4x4 mask: 12 pixels of 0, 4 of 1."""
    save_mask(tmp_path / "masks" / "a.png", MASK_A, "P")
    return tmp_path / "masks"


def command(*args: object, **kwargs) -> subprocess.CompletedProcess:
    """Run the console script's entry point in a real process."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "classweights", *map(str, args)],
        text=True,
        timeout=60,
        cwd=REPO,
        **kwargs,
    )


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


# 1. -o: written in place on a device or FIFO, through the link's target, "-" is stdout.

OUTPUT_COMMANDS = {
    "scan": lambda masks, report: ["scan", masks],
    "check": lambda masks, report: ["check", masks, "--num-classes", 2],
    "weights": lambda masks, report: ["weights", report],
    "merge": lambda masks, report: ["merge", report],
}


@pytest.fixture
def report(masks: Path, tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    assert run("scan", masks, "-q", "-o", path).exit_code == 0
    return path


@pytest.mark.parametrize("name", OUTPUT_COMMANDS)
def test_output_to_dev_null_leaves_the_device(masks, report, name):
    before = os.stat("/dev/null")
    result = run(*OUTPUT_COMMANDS[name](masks, report), "-q", "-o", "/dev/null")
    assert result.exit_code == 0, result.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


@pytest.mark.parametrize("name", OUTPUT_COMMANDS)
def test_output_to_a_fifo_is_written_in_place(masks, report, tmp_path, name):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run(*OUTPUT_COMMANDS[name](masks, report), "-q", "-o", fifo)
    reader.join(timeout=20)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received and received[0].strip()
    if name != "check":
        assert json.loads(received[0])["totals"]["pixels"] == 16


@pytest.mark.parametrize("name", OUTPUT_COMMANDS)
def test_output_through_a_symlink_replaces_its_target(masks, report, tmp_path, name):
    target = tmp_path / "real.json"
    target.write_text("stale")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = run(*OUTPUT_COMMANDS[name](masks, report), "-q", "-o", link)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() not in ("", "stale")
    assert no_temporary_files(tmp_path)


def test_output_through_a_dangling_symlink_creates_its_target(masks, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "new.json")
    assert run("scan", masks, "-q", "-o", link).exit_code == 0
    assert link.is_symlink()
    assert json.loads((tmp_path / "new.json").read_text())["totals"]["pixels"] == 16


def test_output_through_a_loop_of_links_is_refused_before_the_scan(masks, tmp_path):
    # Writing would have replaced the link by a file.
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    result = run("scan", masks, "-q", "-o", tmp_path / "a.json")
    assert result.exit_code == 2 and "Too many levels of symbolic links" in result.stderr
    assert (tmp_path / "a.json").is_symlink() and (tmp_path / "b.json").is_symlink()
    from classweights import InputError
    from classweights.report import write_output

    with pytest.raises(InputError, match=r"a\.json: cannot write: Too many levels of symbolic"):
        write_output(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").is_symlink()


def test_an_empty_output_path_is_a_usage_error(masks):
    result = run("scan", masks, "-q", "-o", "")
    assert result.exit_code == 2 and "an empty path" in result.stderr


def test_a_replaced_output_keeps_its_permissions(masks, tmp_path):
    private = tmp_path / "private.json"
    private.write_text("old")
    private.chmod(0o600)
    assert run("scan", masks, "-q", "-o", private).exit_code == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert json.loads(private.read_text())["totals"]["pixels"] == 16
    fresh = tmp_path / "fresh.json"
    assert run("scan", masks, "-q", "-o", fresh).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_per_image_rows_and_the_document_in_one_file_is_a_usage_error(masks, tmp_path):
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "same.csv")
    for output in (tmp_path / "same.csv", link):
        result = run("scan", masks, "-q", "--per-image", tmp_path / "same.csv", "-o", output)
        assert result.exit_code == 2 and "--per-image and -o are one file" in result.stderr
    assert not (tmp_path / "same.csv").exists()


def test_a_standard_stream_closed_by_the_caller(masks, tmp_path):
    # stdout closed: the document has nowhere to go (exit 3, said on stderr); with -o it is
    # written. stderr closed: the exit code alone says how the run ended, and nothing meant
    # for stderr lands in the output file, which took its free descriptor before.
    closed = command("scan", masks, "-q", preexec_fn=lambda: os.close(1))
    assert closed.returncode == 3
    assert closed.stderr.strip() == "Error: stdout: cannot write: it is closed (give -o FILE)"
    out = tmp_path / "o.json"
    written = command("scan", masks, "-o", out, preexec_fn=lambda: os.close(1))
    assert written.returncode == 0 and json.loads(out.read_text())["totals"]["pixels"] == 16
    quiet = command("scan", masks, "-o", out, "--num-classes", "1",
                    preexec_fn=lambda: os.close(2))  # fmt: skip
    assert quiet.returncode == 3 and quiet.stdout == ""  # label 1 is outside 0..0
    shown = command("scan", masks, "-o", out, preexec_fn=lambda: os.close(2))
    assert shown.returncode == 0 and json.loads(out.read_text())["totals"]["pixels"] == 16


def test_output_dash_is_stdout(masks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = run_json("scan", masks, "-q", "-o", "-")
    assert doc["totals"]["pixels"] == 16
    assert not (tmp_path / "-").exists()


def test_failed_write_leaves_no_file(masks, tmp_path, monkeypatch):
    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / "out" / "o.json"
    out.parent.mkdir()
    result = run("scan", masks, "-q", "-o", out)
    assert_one_line_error(result, 3, "o.json", "No space left on device")
    assert list(out.parent.iterdir()) == []


def test_output_to_a_full_device_is_one_line(masks):
    result = run("scan", masks, "-q", "-o", "/dev/full")
    assert_one_line_error(result, 3, "/dev/full", "cannot write: No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# 15. stdout on a full disk: one line, exit 3.


def test_stdout_on_a_full_disk(masks):
    with open("/dev/full", "w") as full:
        result = command("scan", masks, "-q", stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "Error: stdout: cannot write: No space left on device"
    ]


# 9. The size guard covers every TIFF page, .npy and .npz headers and NIfTI volumes.


def test_tiff_second_page_is_held_to_max_pixels(tmp_path):
    small = Image.fromarray(np.zeros((2, 2), np.uint8))
    large = Image.fromarray(np.zeros((40, 30), np.uint8))
    small.save(tmp_path / "stack.tif", save_all=True, append_images=[large])
    result = run("scan", tmp_path, "--max-pixels", 100)
    assert_one_line_error(
        result, 3, "stack.tif", "is 30x40, page 2, = 1,200 pixels, more than --max-pixels 100"
    )
    doc = run_json("scan", tmp_path, "-q", "--max-pixels", 1200)
    assert doc["totals"]["pixels"] == 1204


def npy_bytes(shape: tuple[int, ...], data: bytes) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return header.getvalue() + data  # the header starts with the magic


def test_npy_header_is_held_to_max_pixels_before_reading(tmp_path):
    # 36 bytes of data under a header that says 10000x10000: refused on the header alone.
    (tmp_path / "bomb.npy").write_bytes(npy_bytes((10000, 10000), bytes(36)))
    result = run("scan", tmp_path)
    assert_one_line_error(result, 3, "bomb.npy", "is 10000x10000 = 100,000,000 pixels")


def test_npz_member_header_is_held_to_max_pixels(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.npy", npy_bytes((3, 4), bytes(12)))
    result = run("scan", tmp_path, "--max-pixels", 11)
    assert_one_line_error(result, 3, "bomb.npz", "is 4x3 = 12 pixels, more than --max-pixels 11")
    assert run_json("scan", tmp_path, "-q", "--max-pixels", 12)["totals"]["pixels"] == 12


def test_nifti_header_is_held_to_max_pixels(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = np.zeros((2, 3, 4), np.uint8)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    result = run("scan", tmp_path, "--max-pixels", 23)
    assert_one_line_error(result, 3, "v.nii.gz", "is 4x3x2 = 24 pixels, more than --max-pixels 23")
    assert run_json("scan", tmp_path, "-q", "--max-pixels", 24)["totals"]["pixels"] == 24


# 12. A .npy is read, never memory-mapped: a short file is refused, not a SIGBUS.


def test_truncated_npy_is_refused(tmp_path):
    (tmp_path / "short.npy").write_bytes(npy_bytes((4, 4), bytes(10)))
    result = run("scan", tmp_path)
    assert_one_line_error(result, 3, "short.npy", "is shorter than its header says: 10 of 16 bytes")


def test_npy_counts_exactly(tmp_path):
    np.save(tmp_path / "m.npy", np.array([[0, 1, 1], [2, 2, 2]], np.int32).T)  # Fortran order
    doc = run_json("scan", tmp_path, "-q")
    assert [c["pixels"] for c in doc["classes"]] == [1, 2, 3]


# 11. Only regular files are read.


def test_fifo_in_a_folder_is_skipped(masks):
    os.mkfifo(masks / "hang.png")
    doc = run_json("scan", masks, "-q")
    assert doc["source"]["files"] == 1
    assert [c["pixels"] for c in doc["classes"]] == [12, 4]
    result = run("check", masks, "--num-classes", 2, "-q")
    assert result.exit_code == 0 and result.stdout.startswith("ok: 1 mask,")


def test_fifo_given_as_a_path_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "hang.png")
    result = run("scan", tmp_path / "hang.png")
    assert_one_line_error(result, 3, "hang.png: is not a regular file")


def test_glob_reaching_a_device_is_refused():
    result = run("scan", "/dev/zer[o]")
    assert_one_line_error(result, 3, "/dev/zero: is not a regular file")


def test_reading_refuses_what_is_not_a_regular_file(tmp_path):
    from classweights import MaskError, read_histogram

    os.mkfifo(tmp_path / "hang.png")
    with pytest.raises(MaskError, match=r"hang\.png: is not a regular file"):
        read_histogram(tmp_path / "hang.png")


# 15. No traceback: names that are not UTF-8 are counted, and so are deeply nested folders.


def test_file_name_that_is_not_utf8(tmp_path):
    folder = os.fsencode(tmp_path)
    name = os.fsdecode(folder + b"/bad\xff.png")
    save_mask(Path(name), MASK_A, "L")
    doc = run_json("scan", tmp_path, "-q")
    assert [c["pixels"] for c in doc["classes"]] == [12, 4]
    assert run("scan", tmp_path, "-q", "--format", "yaml").exit_code == 0
    Path(name).write_bytes(b"broken")
    assert_one_line_error(run("scan", tmp_path), 3, "bad\\xff.png: cannot read mask")


def test_deeply_nested_folders_are_counted(tmp_path):
    root = folder = str(tmp_path / "deep")
    os.mkdir(folder)
    for _ in range(1100):
        folder += "/d"
        os.mkdir(folder)
    save_mask(Path(folder) / "a.png", MASK_A, "L")
    try:
        doc = run_json("scan", root, "-q")
        assert doc["totals"]["pixels"] == 16 and doc["source"]["files"] == 1
    finally:  # bottom up: pytest's clean-up (shutil.rmtree) recurses too
        os.remove(Path(folder) / "a.png")
        while folder != root:
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def ignore_ctrl_c_until_the_entry_point() -> None:
    # Python's own start-up, before the entry point's first line, is the interpreter's: the
    # child starts with SIGINT ignored, which Python keeps, until the entry point sets its own
    # handler. On a loaded machine that start-up alone can outlast the shortest delay.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(tmp_path):
    # From the first import of the package to the end of the run: exit 130 and one line, or
    # a finished run.
    out = tmp_path / "o.json"
    codes = []
    for delay in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "classweights",
                "scan",
                "sample_masks",
                "-o",
                out,
                "--ignore-index",
                "255",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            preexec_fn=ignore_ctrl_c_until_the_entry_point,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr, (delay, stderr)
        assert stdout == ""
        codes.append(process.returncode)
        if process.returncode == 130:
            assert stderr.splitlines()[-1:] == ["interrupted"], (delay, stderr)
            # Interrupted before the document was written: no file. After it (the table and
            # closing line come after the document): the whole document, never a part of it.
            assert no_temporary_files(tmp_path)
            if out.exists():
                assert json.loads(out.read_text())["totals"]["files"] == 32
                out.unlink()
        else:
            assert process.returncode == 0, (delay, stderr)
            out.unlink()
    assert 130 in codes


# 10. Reports are untrusted input.


def scanned(masks: Path, tmp_path: Path, name: str = "r.json", *extra: object) -> dict:
    doc = run_json("scan", masks, "-q", *extra)
    (tmp_path / name).write_text(json.dumps(doc))
    return doc


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: &x [1, 2]\nb: *x\n", "line 1: YAML anchors and aliases are not read"),
        ("!!python/object:os.system x\n", "YAML tags (tag:yaml.org,2002:python/object"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 16 levels"),
    ],
)
@pytest.mark.parametrize("command", ["weights", "merge"])
def test_yaml_report_without_aliases_tags_or_deep_nesting(tmp_path, text, words, command):
    (tmp_path / "r.yaml").write_text(text)
    result = run(command, tmp_path / "r.yaml", "-o", tmp_path / "o.json")
    assert_one_line_error(result, 3, "r.yaml", "not a JSON or YAML report", words)
    assert not (tmp_path / "o.json").exists()


def test_deeply_nested_json_report(tmp_path):
    (tmp_path / "r.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run("weights", tmp_path / "r.json")
    assert_one_line_error(result, 3, "r.json", "nested deeper than 16 levels")


def test_yaml_alias_bomb_in_a_baseline(masks, tmp_path):
    nested = (f"{c}: &{c} [*{p}, *{p}]\n" for p, c in zip("ab", "bc", strict=True))
    bomb = "a: &a [x, x]\n" + "".join(nested)
    (tmp_path / "b.yaml").write_text(bomb)
    result = run(
        "check", masks, "--num-classes", 2, "--baseline", tmp_path / "b.yaml", "--max-drift", 0.1
    )
    assert_one_line_error(result, 3, "b.yaml", "anchors and aliases")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["classes"][0].update(pixels=-2), "class 0's pixels is -2, not a count"),
        (lambda d: d["classes"][0].update(pixels=10.7), "class 0's pixels is 10.7, not a count"),
        (lambda d: d["classes"][1].update(images=True), "class 1's images is True, not a count"),
        (lambda d: d["classes"][0].update(pixels=2**62), "not a count"),
        (
            lambda d: d.update(num_classes=2_000_000_000),
            '"num_classes" is 2000000000 but 2 classes',
        ),
        (lambda d: d.update(num_classes=2e9), '"num_classes" is 2000000000.0, not a count'),
        (lambda d: d["classes"].pop(), '"num_classes" is 2 but 1 classes are listed'),
        (lambda d: d["totals"].update(pixels=17), "its class counts do not add up"),
        (lambda d: d["source"].update(files=5), "5 files were listed but 1 counted"),
        (lambda d: d.update(reduce_zero_label="yes"), "reduce_zero_label is 'yes'"),
        (lambda d: d["classes"][0].update(name=float("nan")), "class 0's name is nan"),
    ],
)
def test_report_counts_and_sizes_are_checked(masks, tmp_path, change, words):
    doc = scanned(masks, tmp_path)
    change(doc)
    (tmp_path / "r.json").write_text(json.dumps(doc))
    result = run("weights", tmp_path / "r.json")
    assert_one_line_error(result, 3, "r.json", "not a classweights report", words)


@pytest.mark.parametrize("name", ["2024-01-01", "!!binary aGk=", "!!set {a, b}", ".nan"])
def test_class_names_yaml_reads_as_other_things_are_refused(masks, tmp_path, name):
    doc = scanned(masks, tmp_path)
    text = yaml_text(doc).replace("name: null", f"name: {name}", 1)
    (tmp_path / "r.yaml").write_text(text)
    result = run("weights", tmp_path / "r.yaml")
    assert_one_line_error(result, 3, "r.yaml")
    assert "class 0's name is" in result.stderr or "YAML tags" in result.stderr


def yaml_text(doc: dict) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def test_weights_recomputed_from_counts_not_read(masks, tmp_path):
    doc = scanned(masks, tmp_path)
    doc["weights"] = [99.0, 99.0]
    doc["classes"][0]["frequency"] = -1.0
    (tmp_path / "r.json").write_text(json.dumps(doc))
    again = run_json("weights", tmp_path / "r.json", "-q")
    assert again["weights"] == [0.666667, 2.0]
    assert [c["frequency"] for c in again["classes"]] == [0.75, 0.25]


# 16. An unreadable report is exit 3 and one line, not click's usage error.


@pytest.mark.parametrize("command", ["weights", "merge"])
def test_unreadable_report_is_exit_3(tmp_path, command):
    assert_one_line_error(run(command, tmp_path), 3, str(tmp_path), "cannot read report")
    os.mkfifo(tmp_path / "r.json")
    result = run(command, tmp_path / "r.json")
    assert_one_line_error(result, 3, "r.json", "is not a regular file")


def test_unreadable_baseline_is_exit_3(masks, tmp_path):
    result = run("check", masks, "--num-classes", 2, "--baseline", tmp_path, "--max-drift", 0.1)
    assert_one_line_error(result, 3, "cannot read report")


# 7. Every reading setting is in the report; merge refuses what cannot be added up.


def test_reading_settings_are_recorded(masks, tmp_path):
    save_mask(tmp_path / "roi" / "a.png", np.ones((4, 4)), "L")
    doc = run_json("scan", masks, "-q", "--roi", tmp_path / "roi", "--max-pixels", 100)
    assert doc["reading"] == {
        "unknown_colors": "error",
        "regions": str(tmp_path / "roi"),
        "npz_key": None,
        "max_pixels": 100,
    }
    assert run_json("scan", masks, "-q")["reading"]["max_pixels"] is None  # the default


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--roi", "ROI"], "--roi is used here but off in"),
        (["--max-pixels", 100], "--max-pixels is 100 here but None in"),
        (["--npz-key", "labels"], "--npz-key is labels here but None in"),
    ],
)
def test_merge_refuses_reports_read_another_way(tmp_path, options, words):
    save_mask(tmp_path / "one" / "a.png", MASK_A, "L")
    save_mask(tmp_path / "two" / "b.png", MASK_A, "L")
    save_mask(tmp_path / "ROI" / "b.png", np.ones((4, 4)), "L")
    options = [tmp_path / "ROI" if o == "ROI" else o for o in options]
    assert run("scan", tmp_path / "one", "-q", "-o", tmp_path / "1.json").exit_code == 0
    result = run("scan", tmp_path / "two", "-q", "-o", tmp_path / "2.json", *options)
    assert result.exit_code == 0, result.stderr
    result = run("merge", tmp_path / "1.json", tmp_path / "2.json")
    assert_one_line_error(result, 3, "2.json", words)


def test_merge_refuses_the_same_dataset_twice(masks, tmp_path):
    scanned(masks, tmp_path, "1.json")
    scanned(masks, tmp_path, "2.json")
    result = run("merge", tmp_path / "1.json", tmp_path / "2.json")
    assert_one_line_error(result, 3, "2.json", "counts the same files as", "1.json")
    result = run("merge", tmp_path / "1.json", tmp_path / "1.json")
    assert_one_line_error(result, 3, "counts the same files as")


def test_merge_refuses_a_report_of_a_folder_inside_another_ones(tmp_path):
    for name in ("train/a.png", "train/b.png", "val/c.png"):
        save_mask(tmp_path / "masks" / name, MASK_A, "P")
    for name, folder in (("full", "masks"), ("train", "masks/train"), ("val", "masks/val")):
        assert run("scan", tmp_path / folder, "-q", "-o", tmp_path / f"{name}.json").exit_code == 0
    result = run("merge", tmp_path / "train.json", tmp_path / "full.json")
    assert_one_line_error(
        result, 3, "train.json: scanned", "masks/train, inside", "that", "full.json scanned"
    )
    merged = run_json("merge", tmp_path / "train.json", tmp_path / "val.json", "-q")
    assert merged["totals"] == run_json("scan", tmp_path / "masks", "-q")["totals"]


# 6. A class count inferred from a void or binary convention is refused, with the ways out.


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([0, 255], "look like a binary mask, not classes 0..255: 2 of 256 ids occur (0, 255)"),
        ([0, 128, 255], "pass --ignore-index 255, or --map 128:1 --map 255:2, or --num-classes"),
        ([0, 127, 254], "look sparse, not classes 0..254: 3 of 255 ids occur (0, 127, 254)"),
    ],
)
def test_convention_without_its_flag_is_refused(tmp_path, values, words):
    save_mask(tmp_path / "m" / "a.png", [values * 2], "L")
    result = run("scan", tmp_path / "m", "-o", tmp_path / "o.json")
    assert_one_line_error(result, 3, words, "--num-classes")
    assert not (tmp_path / "o.json").exists()
    maps = [a for rank, v in enumerate(values[1:], start=1) for a in ("--map", f"{v}:{rank}")]
    doc = run_json("scan", tmp_path / "m", "-q", *maps)  # the way out the message gives
    assert [c["pixels"] for c in doc["classes"]] == [2] * len(values)
    doc = run_json("scan", tmp_path / "m", "-q", "--num-classes", max(values) + 1)
    assert doc["num_classes"] == max(values) + 1


def test_sparse_16_bit_ids_and_photographs_are_refused(tmp_path):
    save_mask(tmp_path / "m" / "a.png", [[0, 1000, 2000]], "I;16")
    result = run("scan", tmp_path / "m")
    assert_one_line_error(result, 3, "--map 1000:1 --map 2000:2")
    save_mask(tmp_path / "p" / "photo.png", np.arange(256).reshape(16, 16), "L")
    result = run("scan", tmp_path / "p")
    assert_one_line_error(result, 3, "256 of the 256 values 0..255 occur")


def test_dense_ids_are_never_refused(tmp_path):
    save_mask(tmp_path / "m" / "camvid.png", [list(range(12))], "L")  # 11 may be void: unknown
    assert run_json("scan", tmp_path / "m", "-q")["num_classes"] == 12


def test_library_refusal_names_parameters(tmp_path):
    from classweights import InputError, scan

    save_mask(tmp_path / "m" / "a.png", [[0, 255]], "L")
    with pytest.raises(InputError) as caught:
        scan([tmp_path / "m"], workers=1)
    text = str(caught.value)
    assert "ignore_index=(255,), or mapping=((255, 1),), or num_classes=256" in text
    assert "--" not in text


def test_check_without_any_rule_is_a_usage_error(masks):
    result = run("check", masks)
    assert result.exit_code == 2 and "no rule to check" in result.stderr
    assert result.stdout == ""


# 5. Cityscapes trainIds is a preset of its own; a glob that contradicts a preset is refused.


def cityscapes_folder(tmp_path: Path) -> Path:
    root = tmp_path / "gtFine"
    # labelIds: 7 road, 26 car; trainIds: 0 road, 13 car, 255 ignored.
    save_mask(root / "a_gtFine_labelIds.png", [[7, 7, 26, 0]], "L")
    save_mask(root / "a_gtFine_labelTrainIds.png", [[0, 0, 13, 255]], "L")
    return root


def test_cityscapes_trainids_preset(tmp_path):
    root = cityscapes_folder(tmp_path)
    doc = run_json("scan", root, "--preset", "cityscapes-trainids", "-q")
    assert doc["num_classes"] == 19 and doc["map"] == [] and doc["ignore_index"] == [255]
    assert doc["source"]["files"] == 1
    pixels = {c["name"]: c["pixels"] for c in doc["classes"] if c["pixels"]}
    assert pixels == {"road": 2, "car": 1} and doc["totals"]["ignored"] == 1
    # The labelIds of the same image give the same counts through the cityscapes preset.
    labelids = run_json("scan", root, "--preset", "cityscapes", "-q")
    assert [c["pixels"] for c in labelids["classes"]] == [c["pixels"] for c in doc["classes"]]


def test_glob_contradicting_the_preset_is_a_usage_error(tmp_path):
    root = cityscapes_folder(tmp_path)
    result = run("scan", root, "--preset", "cityscapes", "--glob", "*_labelTrainIds.png")
    assert result.exit_code == 2 and result.stdout == ""
    assert "contradicts --preset cityscapes, which reads *_labelIds.png files" in result.stderr
    assert "use --preset cityscapes-trainids" in result.stderr
    narrower = run_json("scan", root, "--preset", "cityscapes", "--glob", "a_*_labelIds.png", "-q")
    assert narrower["source"]["files"] == 1


# 13. Tallies of unexpected values are bounded: 1,000 values, then "and N more".


def test_unexpected_values_are_tallied_up_to_a_thousand(tmp_path):
    ids = np.arange(19, 19 + 1500, dtype=np.int32).reshape(30, 50)  # 1,500 labels out of range
    np.save(tmp_path / "instances.npy", ids)
    result = run("check", tmp_path, "--num-classes", 19)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1000 + 2
    assert lines[0].startswith("num-classes: label 19 is outside 0..18")
    assert lines[999].startswith("num-classes: label 1018 is outside 0..18")
    assert lines[1000] == (
        "num-classes: and more values past the first 1,000: 500 pixels not listed one by one"
    )
    result = run("scan", tmp_path, "--num-classes", 19)
    assert_one_line_error(result, 3, "label 19 is outside 0..18", "and 997 more values")
    assert "500 pixels of them not listed" in result.stderr


def test_bounded_tally_is_the_same_whatever_the_order():
    from classweights.counting import MORE, ClassCounts, LabelSpec
    from classweights.masks import Histogram

    spec = LabelSpec(num_classes=1)
    parts = []
    for start in (1, 700, 1400):  # three masks whose values overlap
        counts = ClassCounts.zeros(1)
        values = np.arange(start, start + 900, dtype=np.int64)
        counts.add_mask(Histogram(values, np.ones(900, np.int64)), spec, f"m{start}")
        parts.append(counts)
    forward = parts[0] + parts[1] + parts[2]
    backward = parts[2] + (parts[1] + parts[0])
    assert forward.unexpected == backward.unexpected
    assert len(forward.unexpected) == 1001
    kept = [k for k in forward.unexpected if k != MORE]
    assert kept == [("label", v) for v in range(1, 1001)]
    total = sum(t.pixels for t in forward.unexpected.values())
    # Kept: 1..699 and 901..1000 once, 700..900 in two masks: 1,201 pixels.
    assert forward.unexpected[("label", 800)].pixels == 2
    assert total == 2700 and forward.unexpected[MORE].pixels == 2700 - 1201


# 16. One line whatever the file name; check's dangling link; a JPEG by its content.


def test_newline_in_a_file_name_never_splits_the_error_line(tmp_path):
    (tmp_path / "a\nb.png").write_bytes(b"broken")
    result = run("scan", tmp_path)
    assert_one_line_error(result, 3, "a\\nb.png: cannot read mask")
    result = run("check", tmp_path, "--num-classes", 2)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith("readable: 1 file cannot be read; e.g. ")
    assert "a\\nb.png (cannot read mask" in result.stdout
    assert len(result.stdout.splitlines()) == 2
    save_mask(tmp_path / "ok" / "tab\there.png", [[0, 255]], "L")
    result = run("scan", tmp_path / "ok", "--num-classes", 2, "--skip-errors")
    assert_one_line_error(result, 3, "label 255 is outside 0..1", "tab\\there.png")


def test_check_reports_a_dangling_link_as_a_violation(masks, tmp_path):
    os.symlink(tmp_path / "nowhere.png", masks / "dangling.png")
    result = run("check", masks, "--num-classes", 2)
    assert result.exit_code == 1, result.stderr
    assert result.stdout.startswith("readable: 1 file cannot be read; e.g. ")
    assert "dangling.png (cannot read mask: No such file or directory)" in result.stdout
    assert_one_line_error(run("scan", masks), 3, "dangling.png", "No such file or directory")


def test_jpeg_named_png_gets_the_lossy_warning(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "looks.png", format="JPEG")
    result = run("scan", tmp_path)
    assert result.exit_code == 0
    assert "1 of 1 masks are JPEG: lossy compression" in result.stderr
    (tmp_path / "looks.png").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "png.jpg", format="PNG")
    result = run("scan", tmp_path)  # a PNG named .jpg is not lossy
    assert result.exit_code == 0 and "lossy" not in result.stderr


def test_output_to_dev_stdout_writes_the_pipe(masks):
    result = command("scan", masks, "-q", "-o", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["pixels"] == 16
    assert os.path.islink("/dev/stdout")


def test_class_names_must_be_names(masks, tmp_path):
    (tmp_path / "names.yaml").write_text("- 2024-01-01\n- road\n")
    result = run("scan", masks, "--class-names", tmp_path / "names.yaml")
    assert_one_line_error(result, 3, "names.yaml", "is not a list of class names")
    (tmp_path / "names.yaml").write_text("- no\n- road\n")  # YAML 1.1: False
    result = run("scan", masks, "--class-names", tmp_path / "names.yaml")
    assert_one_line_error(result, 3, "names.yaml", "is not a list of class names")
    (tmp_path / "names.yaml").write_text("- 'no'\n- road\n")
    assert (
        run_json("scan", masks, "-q", "--class-names", tmp_path / "names.yaml")["classes"][0][
            "name"
        ]
        == "no"
    )
    (tmp_path / "names.yaml").write_text("- !!binary aGk=\n- road\n")
    result = run("scan", masks, "--class-names", tmp_path / "names.yaml")
    assert_one_line_error(result, 3, "names.yaml", "YAML tags")


def test_output_to_a_device_needs_no_writable_folder(masks, monkeypatch):
    real_access = os.access
    # As for a user who is not root: /dev itself is not writable, /dev/null is.
    monkeypatch.setattr(os, "access", lambda p, m: p != "/dev" and real_access(p, m))
    assert run("scan", masks, "-q", "-o", "/dev/null").exit_code == 0
    result = run("scan", masks, "-q", "-o", "/dev/new.json")
    assert result.exit_code == 2 and "cannot write into /dev" in result.stderr


def test_a_closed_stdout_is_one_line_even_without_the_interpreters_teardown():
    # The console script exits without the interpreter's teardown, after flushing: a pipe
    # whose reader is gone is still one line, not an "Exception ignored" at exit.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "classweights", "scan", "sample_masks", "-q", "--ignore-index",
             "255"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 3
    assert done.stderr == "Error: stdout: cannot write: Broken pipe\n"
