"""Pixels left out, counted and shown: outside the --roi regions, of colours not in the colour
map (--unknown-colors ignore), and files passed over (--skip-errors)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from classweights import LabelSpec, load, scan
from classweights.report import document
from classweights.weights import compute_weights
from helpers import run, run_json, save_mask

#: Inside the region (1): (0,0)=0 (0,1)=1 (1,1)=2 (1,2)=0, so classes [2, 1, 1] per mask;
#: outside (0): (0,2) and (1,0), 2 pixels per mask.
MASK = [[0, 1, 1], [2, 2, 0]]
REGION = [[1, 1, 0], [0, 1, 1]]


@pytest.fixture
def with_regions(tmp_path):
    for name in ("a", "c"):  # one in each of two shards
        save_mask(tmp_path / "m" / f"{name}.png", MASK)
        save_mask(tmp_path / "roi" / f"{name}.png", REGION)
    return tmp_path / "m", tmp_path / "roi"


def caption(stderr: str) -> str:
    return " ".join(stderr.split())  # the table's caption may wrap


def test_pixels_outside_the_regions_are_counted_and_shown(with_regions):
    masks, regions = with_regions
    result = run("scan", masks, "--roi", regions, "--num-classes", "3")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["pixels"] for c in doc["classes"]] == [4, 2, 2]
    assert doc["left_out"] == {"outside_roi": 4, "unknown_colors": 0, "skipped_files": 0}
    assert doc["totals"]["ignored"] == 0  # outside a region is not "ignored"
    assert "left out: 4 pixels outside the regions (--roi)" in caption(result.stderr)


def test_without_regions_nothing_is_left_out(with_regions):
    masks, _ = with_regions
    result = run("scan", masks, "--num-classes", "3")
    assert json.loads(result.stdout)["left_out"] == {
        "outside_roi": 0,
        "unknown_colors": 0,
        "skipped_files": 0,
    }
    assert "left out" not in result.stderr


def test_outside_pixels_survive_the_cache_and_add_up_in_merge(with_regions, tmp_path):
    masks, regions = with_regions
    cache = tmp_path / "h.sqlite"
    args = ("scan", masks, "--roi", regions, "--num-classes", "3", "--cache", cache, "-q")
    first, again = run_json(*args), run_json(*args)  # the second from the cache
    assert first["left_out"]["outside_roi"] == again["left_out"]["outside_roi"] == 4
    for index in (0, 1):
        run("scan", masks, "--roi", regions, "--num-classes", "3", "--shard", f"{index}/2",
            "-q", "-o", tmp_path / f"s{index}.json")  # fmt: skip
    merged = run_json("merge", tmp_path / "s0.json", tmp_path / "s1.json", "-q")
    assert merged["left_out"]["outside_roi"] == 4


def test_the_library_counts_them_too(with_regions):
    masks, regions = with_regions
    result = scan(masks, LabelSpec(num_classes=3), regions=regions)
    assert (result.counts.outside, result.counts.unknown_colors) == (4, 0)


def colour_mask(path, rows):
    palette = {0: (128, 64, 128), 1: (244, 35, 232), 7: (1, 2, 3)}
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array([[palette[v] for v in row] for row in rows], np.uint8)).save(path)


def test_pixels_of_unknown_colours_are_counted_and_shown(tmp_path):
    colour_mask(tmp_path / "c" / "a.png", [[0, 7, 1], [7, 7, 0]])  # 3 of colour 7: not mapped
    colours = tmp_path / "colors.json"
    colours.write_text(json.dumps([{"id": 0, "color": "#804080"}, {"id": 1, "color": "#f423e8"}]))
    args = ("scan", tmp_path / "c", "--colors", colours, "--unknown-colors", "ignore")
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["pixels"] for c in doc["classes"]] == [2, 1]
    assert doc["totals"]["ignored"] == 3
    assert doc["left_out"] == {"outside_roi": 0, "unknown_colors": 3, "skipped_files": 0}
    assert "left out: 3 pixels of colours not in the colour map" in caption(result.stderr)


def test_skipped_files_are_counted_in_the_document_and_the_table(with_regions):
    masks, _ = with_regions
    (masks / "broken.png").write_bytes(b"not a png")
    result = run("scan", masks, "--num-classes", "3", "--skip-errors")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["left_out"]["skipped_files"] == 1 and len(doc["errors"]) == 1
    assert "left out: 1 file skipped (--skip-errors)" in caption(result.stderr)


def test_every_reason_in_one_caption(tmp_path, with_regions):
    masks, regions = with_regions
    (masks / "broken.png").write_bytes(b"not a png")
    save_mask(regions / "broken.png", REGION)
    text = caption(run("scan", masks, "--roi", regions, "--num-classes", "3",
                       "--skip-errors").stderr)  # fmt: skip
    assert "left out: 4 pixels outside the regions (--roi), 1 file skipped" in text


def saved(tmp_path, with_regions) -> dict:
    masks, regions = with_regions
    result = scan(masks, LabelSpec(num_classes=3), regions=regions)
    return document(result, compute_weights(result.counts))


def test_reports_without_left_out_still_load(tmp_path, with_regions):
    doc = saved(tmp_path, with_regions)
    del doc["left_out"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    assert load(path).counts.outside == 0
    again = run("weights", path)
    assert again.exit_code == 0 and "left out" not in again.stderr


def test_left_out_is_read_back_strictly(tmp_path, with_regions):
    doc = saved(tmp_path, with_regions)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    assert load(path).counts.outside == 4
    for bad in ({"outside_roi": -1}, {"outside_roi": 1.5}, {"skipped_files": 2}, []):
        path.write_text(json.dumps({**doc, "left_out": bad}))
        result = run("weights", path)
        assert result.exit_code == 3 and result.stdout == "", bad
        assert "r.json" in result.stderr


def test_the_page_says_what_was_left_out(with_regions):
    masks, regions = with_regions
    page = run("scan", masks, "--roi", regions, "--num-classes", "3", "--format", "html", "-q")
    assert page.exit_code == 0
    assert '<th class="name">left out</th>' in page.stdout
    assert "4 pixels outside the regions (--roi)" in page.stdout
    plain = run("scan", masks, "--num-classes", "3", "--format", "html", "-q").stdout
    assert '<th class="name">left out</th><td class="name">nothing</td>' in plain
