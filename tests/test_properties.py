"""Properties over random masks: exact counts, merges that add up, any number of workers."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from classweights import ClassCounts, LabelSpec, scan
from helpers import save_mask

SCAN = sys.modules["classweights.scan"]

masks_strategy = st.lists(
    arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 6)),
    min_size=1,
    max_size=12,
)


def reference(masks: list[np.ndarray], ignore: int) -> ClassCounts:
    """Counts by the definition, one numpy call per quantity."""
    k = max(int(m[m != ignore].astype(int).max(initial=-1)) for m in masks) + 1
    counts = ClassCounts.zeros(k)
    for m in masks:
        kept = m[m != ignore]
        per_class = np.bincount(kept, minlength=k)
        counts.pixels += per_class
        counts.images += per_class > 0
        counts.image_pixels += (per_class > 0) * m.size
        counts.ignored += int((m == ignore).sum())
        counts.files += 1
    return counts


def write(masks: list[np.ndarray], folder: Path, modes: list[str]) -> None:
    for i, (mask, mode) in enumerate(zip(masks, modes, strict=False)):
        save_mask(folder / f"{i:03d}.png", mask, mode)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks=masks_strategy, modes=st.lists(st.sampled_from(["P", "L", "I;16"]), min_size=12))
def test_counts_equal_a_numpy_reference(masks, modes):
    with tempfile.TemporaryDirectory() as folder:
        write(masks, Path(folder), modes)
        counts = scan([folder], LabelSpec(ignore_index=(6,))).counts
    expected = reference(masks, ignore=6)
    if expected.num_classes:
        assert counts == expected
    else:
        assert counts.counted == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks=masks_strategy, split=st.integers(0, 12))
def test_merge_of_a_random_split_equals_the_whole(masks, split):
    spec = LabelSpec(num_classes=7)
    with tempfile.TemporaryDirectory() as folder:
        write(masks, Path(folder), ["P"] * len(masks))
        files = sorted(Path(folder).glob("*.png"))
        whole = scan([folder], spec).counts
        parts = [files[:split], files[split:]]
        added = sum((scan(part, spec).counts for part in parts if part), ClassCounts.zeros(7))
    assert added == whole


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks=masks_strategy.filter(lambda m: len(m) >= 4))
def test_same_counts_for_1_2_and_3_workers(masks):
    spec = LabelSpec(num_classes=6, ignore_index=(6,))
    pool_min = SCAN.POOL_MIN_FILES
    SCAN.POOL_MIN_FILES = 0  # a pool even for a handful of files
    try:
        with tempfile.TemporaryDirectory() as folder:
            write(masks, Path(folder), ["P"] * len(masks))
            results = [scan([folder], spec, workers=n).counts for n in (1, 2, 3)]
    finally:
        SCAN.POOL_MIN_FILES = pool_min
    assert results[0] == results[1] == results[2]
