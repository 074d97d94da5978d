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
from classweights.masks import Histogram
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


SPECS = [
    LabelSpec(),
    LabelSpec(ignore_index=(255,)),
    LabelSpec(num_classes=5, ignore_index=(255, 65535)),
    LabelSpec(mapping=((1, 0), (2, 0), (255, 3))),  # many values onto one class
    LabelSpec(reduce_zero_label=True),
    LabelSpec(allowed_values=(0, 1, 2, 255)),
    LabelSpec(colors=((0xFF0000, 1), (0x00FF00, 2)), ignore_index=(255,)),
    # two colours of one class, and a class id outside num_classes:
    LabelSpec(colors=((0xFF0000, 1), (0x00FF00, 1), (0x0000FF, 300)), num_classes=4),
    LabelSpec(colors=((0xFF0000, 2), (0x00FF00, 0)), unknown_colors="ignore"),
]

#: Index values in and out of the lookup table (negative, above 65535), and colours.
index_values = st.one_of(st.integers(0, 9), st.sampled_from([255, 65535, 70000, -3]))
colour_values = st.sampled_from([0xFF0000, 0x00FF00, 0x0000FF])


@st.composite
def histograms(draw, values):
    distinct = sorted(draw(st.lists(values, unique=True, max_size=6)))
    counts = draw(st.lists(st.integers(1, 10**6), min_size=len(distinct), max_size=len(distinct)))
    return Histogram(
        np.array(distinct, np.int64), np.array(counts, np.int64), values is colour_values
    )


@settings(max_examples=200, deadline=None)
@given(
    spec=st.sampled_from(SPECS),
    masks=st.lists(st.one_of(histograms(index_values), histograms(colour_values)), max_size=16),
)
def test_adding_masks_at_once_equals_adding_them_one_by_one(spec, masks):
    if not spec.colors:
        masks = [m for m in masks if not m.colour]  # an error without a colour map
    paths = [f"{i:02d}.png" for i in range(len(masks))]
    one_by_one, at_once = ClassCounts.zeros(), ClassCounts.zeros()
    for mask, path in zip(masks, paths, strict=True):
        one_by_one.add_mask(mask, spec, path)
    at_once.add_masks(masks, spec, paths)
    assert at_once == one_by_one + ClassCounts.zeros()  # + sorts the unexpected values
