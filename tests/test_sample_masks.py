"""The sample masks the README's quick start runs on: their counts, checked by hand."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from classweights import LabelSpec, compute_weights, scan
from helpers import REPO

pytestmark = pytest.mark.usefixtures("png_path")  # the kernel and the pure path alike

SAMPLES = REPO / "sample_masks"
VOID = LabelSpec(ignore_index=(255,))


def test_counts_match_the_hand_computed_table():
    counts = scan([SAMPLES], VOID).counts
    assert counts.pixels.tolist() == [81020, 26520, 7600, 60]
    assert counts.images.tolist() == [32, 32, 32, 4]
    assert counts.image_pixels.tolist() == [131072, 131072, 131072, 16384]
    assert (counts.files, counts.counted, counts.ignored) == (32, 115200, 15872)


@pytest.mark.parametrize(
    ("split", "pixels", "person_images"),
    [("train", [60675, 19920, 5760, 45], 3), ("val", [20345, 6600, 1840, 15], 1)],
)
def test_split_counts(split, pixels, person_images):
    counts = scan([SAMPLES / split], VOID).counts
    assert counts.pixels.tolist() == pixels
    assert counts.images[3] == person_images


def test_median_frequency_weights_of_the_samples():
    # f = n / image_pixels; the median of four is the mean of f_road and f_building.
    f = np.array([81020 / 131072, 26520 / 131072, 7600 / 131072, 60 / 16384])
    expected = ((f[1] + f[2]) / 2) / f
    weights = compute_weights(scan([SAMPLES], VOID).counts, "median").weights
    assert weights.tolist() == pytest.approx(expected.tolist(), rel=1e-15)


def test_committed_masks_are_what_the_generator_makes():
    spec = importlib.util.spec_from_file_location("generate", SAMPLES / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for split, numbers in generate.SPLITS.items():
        for i in numbers:
            with Image.open(SAMPLES / split / f"mask_{i:03d}.png") as image:
                assert image.mode == "P"
                assert np.array_equal(np.asarray(image), generate.make_mask(i))
