"""Shards: ``--shard I/N`` takes a stable part of the masks, and ``merge`` adds the N parts up
to the whole scan, refusing a shard twice and naming the ones missing."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from classweights import LabelSpec, compute_weights, document, merge, scan
from helpers import assert_one_line_error, run, run_json, save_mask

SCAN = sys.modules["classweights.scan"]


def test_shard_of_is_the_first_8_bytes_of_the_names_sha256_mod_n():
    # Pinned: a shard must name the same masks on every machine and in every release.
    assert [SCAN.shard_of("a.png", 7), SCAN.shard_of("dir/b.png", 7)] == [1, 0]
    for name in ("a.png", "dir/b.png", "é/ü.tif"):
        digest = hashlib.sha256(name.encode()).digest()
        assert SCAN.shard_of(name, 1000) == int.from_bytes(digest[:8], "big") % 1000


@pytest.mark.parametrize("shard", [(0, 0), (2, 2), (-1, 3), ("a", 2), (1,)])
def test_a_shard_out_of_range_is_refused(tiny, shard):
    with pytest.raises(ValueError, match="shard must be"):
        scan([tiny], shard=shard)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    masks=st.lists(
        arrays(
            np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 6)
        ),
        min_size=1,
        max_size=14,
    ),
    count=st.integers(1, 6),
)
def test_the_merge_of_all_shards_equals_the_whole_scan(masks, count):
    spec = LabelSpec(num_classes=6, ignore_index=(6,))
    with tempfile.TemporaryDirectory() as folder:
        for i, mask in enumerate(masks):
            save_mask(Path(folder) / f"{i % 3}" / f"{i:03d}.png", mask, "P")
        whole = scan([folder], spec)
        parts = [(f"{i}.json", scan([folder], spec, shard=(i, count))) for i in range(count)]
    assert sum(part.source.files for _, part in parts) == whole.source.files == len(masks)
    merged = merge(parts, complete=True)
    assert merged.counts == whole.counts
    assert merged.warnings == ()
    for method in ("inverse", "median", "enet") if whole.counts.counted else ():
        mine, theirs = (
            document(result, compute_weights(result.counts, method)) for result in (merged, whole)
        )
        mine.pop("source"), theirs.pop("source")
        assert mine == theirs


@pytest.fixture
def shards(tmp_path):
    """Reports of shards 0/3, 1/3, 2/3 of 30 masks, and of the whole."""
    masks = tmp_path / "masks"
    rng = np.random.default_rng(3)
    for i in range(30):
        save_mask(masks / f"m{i:02d}.png", rng.integers(0, 4, size=(5, 6)), "P")
    common = ["--num-classes", "4", "-q"]
    for i in range(3):
        assert run("scan", masks, *common, "--shard", f"{i}/3", "-o", tmp_path / f"{i}.json")
    run("scan", masks, *common, "-o", tmp_path / "whole.json")
    return tmp_path


def test_shard_reports_merge_into_the_whole_through_the_command_line(shards):
    docs = [json.loads((shards / f"{i}.json").read_text()) for i in range(3)]
    assert [doc["source"]["shard"] for doc in docs] == [{"index": i, "count": 3} for i in range(3)]
    assert sum(doc["source"]["files"] for doc in docs) == 30
    assert all(doc["source"]["files"] for doc in docs)  # 30 masks: no shard is empty
    merged = run_json("merge", *(shards / f"{i}.json" for i in (2, 0, 1)), "--complete")
    whole = json.loads((shards / "whole.json").read_text())
    assert "shard" not in whole["source"]
    assert merged["source"]["paths"] == whole["source"]["paths"]  # once, not three times
    for key in ("source", "classweights"):
        merged.pop(key), whole.pop(key)
    assert merged == whole


def test_a_missing_shard_is_a_warning_or_with_complete_an_error(shards):
    result = run("merge", shards / "0.json", shards / "2.json")
    assert result.exit_code == 0
    assert "1 of 3 shards missing: 1/3" in result.stderr
    failed = run("merge", shards / "0.json", shards / "2.json", "--complete")
    assert_one_line_error(failed, 3, "1 of 3 shards missing: 1/3")


def test_a_shard_twice_is_refused(shards):
    (shards / "again.json").write_text((shards / "1.json").read_text())
    result = run("merge", shards / "0.json", shards / "1.json", shards / "again.json")
    assert_one_line_error(result, 3, "again.json", "is shard 1/3 again", "1.json")


def test_shards_of_another_split_are_refused(shards):
    masks = shards / "masks"
    run("scan", masks, "--num-classes", "4", "--shard", "1/2", "-o", shards / "half.json")
    result = run("merge", shards / "0.json", shards / "half.json")
    assert_one_line_error(result, 3, "half.json", "is shard 1/2", "one of 3 shards")


def test_a_shard_with_a_whole_scan_of_the_same_masks_is_refused(shards):
    result = run("merge", shards / "0.json", shards / "whole.json")
    assert_one_line_error(result, 3, "whole.json", "whole scan", "count twice")


@pytest.mark.parametrize("value", ["3/3", "1", "a/b", "-1/2", "1/0"])
def test_a_bad_shard_flag_is_a_usage_error(tiny, value):
    result = run("scan", tiny, "--shard", value)
    assert result.exit_code == 2
    assert "--shard" in result.stderr and "I/N" in result.stderr


def test_check_takes_a_shard_too(shards):
    masks = shards / "masks"
    docs = [
        run_json(
            "check", masks, "--shard", f"{i}/3", "--max-imbalance", "1e9", "--format", "json", "-q"
        )
        for i in range(3)
    ]
    assert [doc["ok"] for doc in docs] == [True] * 3
    files = [json.loads((shards / f"{i}.json").read_text())["source"]["files"] for i in range(3)]
    assert [doc["files"] for doc in docs] == files
