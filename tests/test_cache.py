"""``--cache FILE``: a re-scan reads only new and changed masks, forgets vanished ones, and
gives the document a fresh scan gives."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from classweights import InputError, LabelSpec, scan
from classweights.masks import ReadOptions
from helpers import MASK_A, MASK_B, run, run_json, save_mask

SCAN = sys.modules["classweights.scan"]


@pytest.fixture
def reads(monkeypatch):
    """The names of the masks decoded, in this process (the scans below run with workers=1)."""
    names: list[str] = []
    read = SCAN.read_histogram

    def counting(mask, options):
        names.append(mask.name)
        return read(mask, options)

    monkeypatch.setattr(SCAN, "read_histogram", counting)
    return names


def folder_of(tmp_path, count: int = 6):
    root = tmp_path / "masks"
    rng = np.random.default_rng(11)
    for i in range(count):
        save_mask(root / f"{i % 2}" / f"m{i}.png", rng.integers(0, 4, size=(6, 5)), "P")
    return root


def rewrite(path, ids) -> None:
    """Change a mask: new pixels, and a modification time that surely differs."""
    stat = os.stat(path)
    save_mask(path, ids, "P")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def rows(cache) -> list[str]:
    with sqlite3.connect(cache) as db:
        return [name for (name,) in db.execute("SELECT name FROM histograms ORDER BY name")]


def test_a_rescan_reads_only_new_and_changed_masks_and_equals_a_fresh_scan(tmp_path, reads):
    root, cache = folder_of(tmp_path), tmp_path / "histograms.sqlite"
    spec = LabelSpec(ignore_index=(3, 255))  # MASK_B, added below, holds the void 255
    first = scan([root], spec, workers=1, cache=cache)
    assert sorted(reads) == sorted(f"{i % 2}/m{i}.png" for i in range(6))
    assert first.counts == scan([root], spec, workers=1).counts
    reads.clear()

    again = scan([root], spec, workers=1, cache=cache)
    assert reads == []  # nothing changed, nothing read
    assert again.counts == first.counts and again.source == first.source

    save_mask(root / "1" / "new.png", MASK_B, "P")  # added
    rewrite(root / "0" / "m2.png", MASK_A)  # changed
    (root / "1" / "m3.png").unlink()  # deleted
    updated = scan([root], spec, workers=1, cache=cache)
    assert sorted(reads) == ["0/m2.png", "1/new.png"]
    fresh = scan([root], spec, workers=1)
    assert updated.counts == fresh.counts and updated.source == fresh.source
    assert "1/m3.png" not in rows(cache) and len(rows(cache)) == 6


def test_the_document_is_the_fresh_scans_through_the_command_line(tmp_path):
    root, cache = folder_of(tmp_path, 80), tmp_path / "c.sqlite"  # 80: a pool of workers
    fresh = run("scan", root, "--num-classes", "4", "-q").stdout
    assert run("scan", root, "--num-classes", "4", "-q", "--cache", cache).stdout == fresh
    assert len(rows(cache)) == 80
    rewrite(root / "0" / "m0.png", MASK_A)
    fresh = run("scan", root, "--num-classes", "4", "-q").stdout
    assert run("scan", root, "--num-classes", "4", "-q", "--cache", cache).stdout == fresh


def test_label_settings_reuse_the_cache_and_reading_settings_do_not(tmp_path, reads):
    root, cache = folder_of(tmp_path), tmp_path / "c.sqlite"
    scan([root], LabelSpec(), workers=1, cache=cache)
    reads.clear()
    remapped = LabelSpec(num_classes=3, mapping=((3, 0),))
    result = scan([root], remapped, workers=1, cache=cache)
    assert reads == []  # the map is applied to the cached raw values
    assert result.counts == scan([root], remapped, workers=1).counts
    reads.clear()
    scan([root], LabelSpec(), workers=1, cache=cache, options=ReadOptions(max_pixels=10**6))
    assert len(reads) == 6  # another pixel limit: read again


def test_shards_sharing_a_cache_keep_each_others_masks(tmp_path, reads):
    root, cache = folder_of(tmp_path, 12), tmp_path / "c.sqlite"
    for index in range(3):
        scan([root], workers=1, shard=(index, 3), cache=cache)
    assert len(rows(cache)) == 12
    reads.clear()
    for index in range(3):
        scan([root], workers=1, shard=(index, 3), cache=cache)
    assert reads == []


def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path):
    root, cache = folder_of(tmp_path), tmp_path / "c.sqlite"
    cache.write_bytes(b"SQLite format 3\x00" + b"and then damaged pages, " * 100)
    result = run("scan", root, "--cache", cache)
    assert result.exit_code == 0, result.stderr
    assert "the cache was damaged" in result.stderr and "rebuilt it" in result.stderr
    assert json.loads(result.stdout)["totals"] == run_json("scan", root)["totals"]
    assert len(rows(cache)) == 6
    again = run("scan", root, "--cache", cache)
    assert "damaged" not in again.stderr


def test_a_cache_that_is_a_folder_is_refused(tmp_path):
    root = folder_of(tmp_path)
    (tmp_path / "c").mkdir()
    with pytest.raises(InputError, match="c: cannot use as a cache: not a regular file"):
        scan([root], cache=tmp_path / "c")
    result = run("scan", root, "--cache", tmp_path / "c", "-q")
    assert (
        result.exit_code == 2 and "'--cache'" in result.stderr and "is a directory" in result.stderr
    )


def test_two_runs_sharing_a_cache_do_not_corrupt_it(tmp_path, reads):
    root, cache = folder_of(tmp_path, 150), tmp_path / "c.sqlite"
    command = [sys.executable, "-m", "classweights", "scan", root, "-q", "--cache", cache]
    runs = [
        subprocess.Popen([*map(str, command), "--workers", "2"], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in runs]
    assert [process.returncode for process in runs] == [0, 0]
    assert outputs[0] == outputs[1] == run("scan", root, "-q").stdout_bytes
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(rows(cache)) == 150
    scan([root], workers=1, cache=cache)
    assert reads == []


def test_a_cached_colour_mask_without_a_colour_map_is_an_error_or_skipped(tmp_path, reads):
    from PIL import Image

    from classweights import MaskError

    root, cache = tmp_path / "masks", tmp_path / "c.sqlite"
    save_mask(root / "a.png", MASK_A, "P")
    Image.fromarray(np.full((2, 3, 3), 255, np.uint8)).save(root / "b.png")  # all white
    coloured = LabelSpec(colors=((0xFFFFFF, 0),))
    scan([root], coloured, workers=1, cache=cache)
    assert len(rows(cache)) == 2
    reads.clear()
    with pytest.raises(MaskError, match=r"b\.png: is a colour"):
        scan([root], workers=1, cache=cache)
    skipped = scan([root], workers=1, cache=cache, skip_errors=True)
    assert reads == []
    assert [path for path, _ in skipped.counts.errors] == [str(root / "b.png")]
    assert skipped.counts == scan([root], workers=1, skip_errors=True).counts


def test_masks_of_one_name_in_two_folders_keep_their_own_histograms(tmp_path, reads):
    # A glob over two folders names both masks 0001.npy; with the same size and modification
    # time (a tarball's masks, extracted), one histogram was handed to both.
    for city, label in (("city1", 0), ("city2", 3)):
        path = tmp_path / "data" / city / "labels" / "0001.npy"
        path.parent.mkdir(parents=True)
        np.save(path, np.full((4, 4), label, np.uint8))
        os.utime(path, ns=(1_700_000_000 * 10**9,) * 2)
    glob, cache, spec = str(tmp_path / "data" / "*" / "labels"), tmp_path / "c.sqlite", LabelSpec()
    fresh = scan(glob, spec, workers=1)
    assert fresh.counts.pixels.tolist() == [16, 0, 0, 16]
    assert scan(glob, spec, workers=1, cache=cache).counts == fresh.counts
    assert rows(cache) == ["0001.npy", "0001.npy"]
    reads.clear()
    assert scan(glob, spec, workers=1, cache=cache).counts == fresh.counts
    assert reads == []  # both from the cache, each its own
    (tmp_path / "data" / "city1" / "labels" / "0001.npy").unlink()
    assert scan(glob, spec, workers=1, cache=cache).counts.pixels.tolist() == [0, 0, 0, 16]
    assert rows(cache) == ["0001.npy"]  # the vanished one forgotten, the other kept


def test_another_programs_database_is_refused_and_left_as_it_is(tmp_path):
    root, cache = folder_of(tmp_path), tmp_path / "theirs.sqlite"
    with sqlite3.connect(cache) as db:
        db.execute("CREATE TABLE histograms (a, b)")
        db.execute("INSERT INTO histograms VALUES (1, 2)")
    before = cache.read_bytes()
    result = run("scan", root, "--cache", cache, "-q")
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.strip() == (
        f"Error: {cache}: cannot use as a cache: an SQLite database of another program "
        "(its tables are left as they are)"
    )
    assert cache.read_bytes() == before


def test_a_row_whose_histogram_was_written_over_is_read_again(tmp_path, reads):
    root, cache = folder_of(tmp_path), tmp_path / "c.sqlite"
    fresh = scan([root], workers=1, cache=cache)
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE histograms SET histogram = x'0102' WHERE name = '0/m0.png'")
    reads.clear()
    assert scan([root], workers=1, cache=cache).counts == fresh.counts
    assert reads == ["0/m0.png"]
    reads.clear()
    scan([root], workers=1, cache=cache)
    assert reads == []  # and kept again


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_is(tmp_path):
    # A report given for --cache by mistake was wiped and made a cache.
    root, report = folder_of(tmp_path), tmp_path / "full.json"
    report.write_text(run("scan", root, "-q").stdout)
    before = report.read_bytes()
    result = run("scan", root, "--cache", report, "-q")
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.strip() == (
        f"Error: {report}: cannot use as a cache: not an SQLite file (left as it is)"
    )
    assert report.read_bytes() == before
    (tmp_path / "empty.sqlite").touch()  # an empty file is a new cache
    assert run("scan", root, "--cache", tmp_path / "empty.sqlite", "-q").exit_code == 0
    assert len(rows(tmp_path / "empty.sqlite")) == 6


def test_a_cache_in_a_folder_that_is_not_there_is_a_usage_error(tmp_path):
    result = run("scan", folder_of(tmp_path), "--cache", tmp_path / "nowhere" / "c.sqlite", "-q")
    assert result.exit_code == 2 and "--cache" in result.stderr
    assert "no such folder" in result.stderr and "Traceback" not in result.stderr


def test_a_cache_left_half_made_is_made_again_and_a_row_of_text_is_read_again(tmp_path, reads):
    # A run of an older version stopped between making the table and setting the version:
    # the table alone, with a cache's columns, is this program's, not another's.
    root, cache = folder_of(tmp_path), tmp_path / "c.sqlite"
    with sqlite3.connect(cache) as db:
        db.execute("CREATE TABLE histograms (settings, name, size, version, colour, histogram)")
    fresh = scan([root], workers=1, cache=cache)
    assert len(rows(cache)) == 6
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE histograms SET histogram = 'text' WHERE name = '0/m0.png'")
    reads.clear()
    assert scan([root], workers=1, cache=cache).counts == fresh.counts
    assert reads == ["0/m0.png"]
