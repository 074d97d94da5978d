"""The counting model: remap, ignore, range checks, and sums that add up."""

from __future__ import annotations

import numpy as np
import pytest

from classweights import ClassCounts, LabelSpec, MaskError
from classweights.counting import Unexpected, convention_error, unexpected_summary
from classweights.masks import Histogram


def histogram(values, counts, colour=False):
    return Histogram(np.array(values, np.int64), np.array(counts, np.int64), colour)


def counts_of(masks, spec=None):
    spec = spec or LabelSpec()
    total = ClassCounts.zeros(spec.num_classes or 0)
    for values, counts in masks:
        total.add_mask(histogram(values, counts), spec, "m.png")
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


def test_fixed_num_classes_keeps_absent_classes_and_tallies_larger_labels():
    spec = LabelSpec(num_classes=4, ignore_index=(255,))
    counts = counts_of([([0, 2, 255], [3, 1, 1])], spec)
    assert counts.pixels.tolist() == [3, 0, 1, 0]
    assert counts.unexpected == {}
    counts = counts_of([([0, 4], [3, 1]), ([4, 9], [2, 2])], spec)
    assert counts.pixels.tolist() == [3, 0, 0, 0]
    assert counts.unexpected[("label", 4)] == Unexpected(3, 2, [("m.png", 1), ("m.png", 2)])
    assert counts.unexpected[("label", 9)].pixels == 2
    summary = unexpected_summary(counts, spec)
    assert summary.startswith(
        "m.png: label 4 is outside 0..3 (num_classes=4) (3 pixels in 2 files)"
    )
    assert "pass ignore_index=4" in summary and "label 9" in summary


def test_negative_and_huge_labels_are_unexpected_unless_mapped_or_ignored():
    counts = counts_of([([-1, 0, 70000], [1, 1, 1])])
    assert list(counts.unexpected) == [("label", -1), ("label", 70000)]
    summary = unexpected_summary(counts, LabelSpec())
    assert "label -1 is negative" in summary and "label 70000 is too large" in summary
    spec = LabelSpec(ignore_index=(-1,), mapping=((70000, 2),))
    counts = counts_of([([-1, 0, 70000], [1, 1, 1])], spec)
    assert counts.pixels.tolist() == [1, 0, 1] and counts.unexpected == {}


def test_examples_are_the_first_files_by_path_whatever_the_order():
    spec = LabelSpec(num_classes=1)
    parts = []
    for i in (7, 3, 9, 1, 5, 8, 2):
        part = ClassCounts.zeros(1)
        part.add_mask(histogram([0, 1], [1, 1]), spec, f"{i}.png")
        parts.append(part)
    forward = sum(parts[1:], parts[0])
    backward = sum(parts[-2::-1], parts[-1])
    assert forward == backward
    assert [p for p, _ in forward.unexpected[("label", 1)].examples] == [
        "1.png", "2.png", "3.png", "5.png", "7.png"
    ]  # fmt: skip


def test_reduce_zero_label_as_mmsegmentation():
    spec = LabelSpec(num_classes=150, ignore_index=(255,), reduce_zero_label=True)
    counts = counts_of([([0, 1, 150, 255], [4, 3, 2, 1])], spec)
    assert counts.ignored == 5  # raw 0 and raw 255
    assert counts.pixels[0] == 3 and counts.pixels[149] == 2
    assert counts.pixels.sum() == 5


def test_colours_become_ids_and_unknown_colours_are_tallied_or_ignored():
    colours = ((0x804080, 0), (0xF423E8, 1), (0x000000, 255))
    masks = [([0x000000, 0x804080, 0xF423E8, 0x123456], [1, 5, 2, 3])]
    spec = LabelSpec(ignore_index=(255,), colors=colours)
    counts = ClassCounts.zeros()
    for values, pixels in masks:
        counts.add_mask(histogram(values, pixels, colour=True), spec, "c.png")
    assert counts.pixels.tolist() == [5, 2] and counts.ignored == 1
    assert counts.unexpected == {("colour", 0x123456): Unexpected(3, 1, [("c.png", 3)])}
    assert unexpected_summary(counts, spec).startswith(
        "c.png: colour #123456 is not in the colour map (3 pixels in 1 file); add it"
    )
    lenient = LabelSpec(ignore_index=(255,), colors=colours, unknown_colors="ignore")
    counts = ClassCounts.zeros()
    counts.add_mask(histogram(*masks[0], colour=True), lenient, "c.png")
    assert counts.pixels.tolist() == [5, 2] and counts.ignored == 4 and not counts.unexpected
    assert counts.unknown_colors == 3  # left out: among the 4 ignored


def test_colour_mask_without_colour_map_is_an_error():
    with pytest.raises(MaskError, match=r"c.png: is a colour \(RGB\) mask; .* colors=FILE"):
        ClassCounts.zeros().add_mask(histogram([0], [1], colour=True), LabelSpec(), "c.png")


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
        ([0, 1, 2, 255], "like classes and a void value, not classes 0..255: 4 of 256 ids"),
        ([0, 255], "pass --ignore-index 255, or --map 255:1, or --num-classes 256 to keep them"),
        ([0, 128, 255], "--map 128:1 --map 255:2"),
        ([0, 127, 254], "look sparse, not classes 0..254"),
        ([0, 1000, 2000], "--ignore-index 2000, or --map 1000:1 --map 2000:2, or --num-classes"),
        ([0, 1, 65535], "--ignore-index 65535, or --map 65535:DST, or --num-classes 65536"),
        ([0, 2, 15, 255], "--ignore-index 255, or --map 255:DST, or --num-classes 256"),  # VOC
        ([*range(21), 255], "22 of 256 ids occur (0, 1, 2, 3, 4, 5, ...)"),
        (list(range(256)), "256 of the 256 values 0..255 occur: these look like photographs"),
        ([0, 2, 15], None),  # sparse, but small: a few classes of a small sample
        (list(range(12)), None),  # CamVid's void 11 is dense: cannot be told from a class
        (list(range(34)), None),
    ],
)
def test_convention_error(labels, expected):
    counts = counts_of([(labels, [1] * len(labels))])
    error = convention_error(counts, LabelSpec())
    assert (error is None) if expected is None else (expected in error.command_line())
    assert convention_error(counts, LabelSpec(num_classes=70000)) is None
    if error is not None:  # the library names parameters, not flags
        assert "num_classes=" in str(error) and "--" not in str(error)
