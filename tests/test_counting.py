"""The counting model: remap, ignore, range checks, and sums that add up."""

from __future__ import annotations

import numpy as np
import pytest

from classweights import ClassCounts, LabelSpec, MaskError
from classweights.counting import sparse_label_hint


def histogram(values, counts):
    return np.array(values, np.int64), np.array(counts, np.int64)


def counts_of(masks, spec=None):
    spec = spec or LabelSpec()
    total = ClassCounts.zeros(spec.num_classes or 0)
    for values, counts in masks:
        total.add_mask(*histogram(values, counts), spec, "m.png")
    return total


def test_add_mask_counts_pixels_images_and_image_pixels():
    spec = LabelSpec(ignore_index=(255,))
    counts = counts_of([([0, 1], [12, 4]), ([0, 1, 2, 255], [8, 4, 2, 2])], spec)
    assert counts.pixels.tolist() == [20, 8, 2]
    assert counts.images.tolist() == [2, 2, 1]
    # image_pixels holds every pixel of the masks where the class occurs, ignored ones too.
    assert counts.image_pixels.tolist() == [32, 32, 16]
    assert (counts.files, counts.ignored, counts.counted) == (2, 2, 30)
    assert counts.pixels.dtype == np.int64


def test_map_runs_before_ignore_and_may_merge_values():
    # 255 -> 1 makes a binary mask; 7 -> 0 merges with 0; 9 -> 200 then 200 is ignored.
    spec = LabelSpec(ignore_index=(200,), mapping=((255, 1), (7, 0), (9, 200)))
    counts = counts_of([([0, 7, 9, 255], [5, 3, 2, 6])], spec)
    assert counts.pixels.tolist() == [8, 6]
    assert counts.images.tolist() == [1, 1]
    assert counts.image_pixels.tolist() == [16, 16]
    assert counts.ignored == 2


def test_fixed_num_classes_keeps_absent_classes_and_rejects_larger_labels():
    spec = LabelSpec(num_classes=4, ignore_index=(255,))
    counts = counts_of([([0, 2, 255], [3, 1, 1])], spec)
    assert counts.pixels.tolist() == [3, 0, 1, 0]
    with pytest.raises(MaskError) as error:
        counts_of([([0, 4], [3, 1])], spec)
    assert str(error.value).startswith("m.png: label 4 is outside 0..3 (--num-classes 4)")
    assert "--ignore-index 4" in str(error.value)


def test_negative_and_huge_labels_are_errors_naming_the_value():
    with pytest.raises(MaskError, match="label -1 is negative"):
        counts_of([([-1, 0], [1, 1])])
    with pytest.raises(MaskError, match="label 70000 is too large"):
        counts_of([([0, 70000], [1, 1])])
    # ...unless they are mapped or ignored.
    spec = LabelSpec(ignore_index=(-1,), mapping=((70000, 2),))
    assert counts_of([([-1, 0, 70000], [1, 1, 1])], spec).pixels.tolist() == [1, 0, 1]


def test_sums_add_up_and_pad_to_the_larger_class_count():
    a = counts_of([([0, 1], [3, 1])])
    b = counts_of([([0, 3], [2, 2])])
    total = a + b
    assert total.pixels.tolist() == [5, 1, 0, 2]
    assert total.images.tolist() == [2, 1, 0, 1]
    assert total.image_pixels.tolist() == [8, 4, 0, 4]
    assert total == counts_of([([0, 1], [3, 1]), ([0, 3], [2, 2])])
    assert total.files == 2


def test_spec_is_canonical():
    assert LabelSpec(ignore_index=(255, 0, 255)) == LabelSpec(ignore_index=(0, 255))
    assert LabelSpec(mapping=((5, 1), (2, 0))).mapping == ((2, 0), (5, 1))
    with pytest.raises(ValueError, match="mapped twice"):
        LabelSpec(mapping=((1, 2), (1, 3)))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([0, 1, 2, 255], "did you mean --ignore-index 255?"),
        ([0, 255], "did you mean --ignore-index 255, or --map 255:1 for a binary mask?"),
        ([0, 1, 65535], "--ignore-index 65535"),
        ([0, 2, 15], None),  # sparse, but no void value: nothing to suggest
        ([0, 1, 2], None),
    ],
)
def test_sparse_label_hint(labels, expected):
    counts = counts_of([(labels, [1] * len(labels))])
    hint = sparse_label_hint(counts, LabelSpec())
    assert (hint is None) if expected is None else (expected in hint)
    assert sparse_label_hint(counts, LabelSpec(num_classes=70000)) is None
