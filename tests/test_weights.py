"""Weight methods pinned to hand-computed numbers, and the invariants every method must keep."""

from __future__ import annotations

import math

import numpy as np
import pytest

from classweights import METHODS, MISSING, NORMALIZATIONS, ClassCounts, Params, compute_weights
from classweights.errors import InputError, WeightError
from classweights.weights import pos_weight


def make_counts(pixels, images=None, image_pixels=None) -> ClassCounts:
    pixels = np.array(pixels, np.int64)
    images = np.array(images if images is not None else (pixels > 0).astype(int), np.int64)
    image_pixels = np.array(image_pixels if image_pixels is not None else images * 100, np.int64)
    return ClassCounts(pixels, images, image_pixels, files=int(images.max(initial=0)))


# The two masks of tests/helpers.py: pixels [20, 8, 2] (N = 30), image_pixels [32, 32, 16].
TINY = make_counts([20, 8, 2], [2, 2, 1], [32, 32, 16])
# The same with a fourth class that never occurs.
TINY_ABSENT = make_counts([20, 8, 2, 0], [2, 2, 1, 0], [32, 32, 16, 0])


def weights(counts=TINY, method="median", **kwargs) -> list[float]:
    return compute_weights(counts, method, **kwargs).weights.tolist()


def test_inverse_is_n_over_k_n_c():
    # 30 / (3 * [20, 8, 2])
    assert weights(method="inverse") == pytest.approx([0.5, 1.25, 5.0], rel=1e-15)
    assert weights(method="balanced") == weights(method="inverse")


def test_median_frequency_uses_image_pixels_of_the_images_where_the_class_occurs():
    # f = [20/32, 8/32, 2/16] = [0.625, 0.25, 0.125]; median 0.25 -> [0.4, 1, 2].
    # (With all pixels as denominator, f_2 would be 2/32 and w_2 would be 4.)
    assert weights(method="median") == pytest.approx([0.4, 1.0, 2.0], rel=1e-15)
    assert weights(method="mfb") == weights(method="median")


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    # f = [0.5, 0.3, 0.2, 0.1]: median 0.25, not the mean (0.275) of all four.
    counts = make_counts([50, 30, 20, 10], [1, 1, 1, 1], [100, 100, 100, 100])
    assert weights(counts, "median") == pytest.approx([0.5, 0.25 / 0.3, 1.25, 2.5], rel=1e-15)


def test_enet_is_one_over_log_c_plus_p():
    # p = [20/30, 8/30, 2/30] of the counted pixels (the ignored ones are not in N).
    expected = [1 / math.log(1.02 + n / 30) for n in (20, 8, 2)]
    assert weights(method="enet") == pytest.approx(expected, rel=1e-15)
    assert weights(method="enet")[2] == pytest.approx(12.0315, abs=1e-4)  # 1 / ln(1.0867)
    custom = [1 / math.log(1.1 + n / 30) for n in (20, 8, 2)]
    assert weights(method="enet", params=Params(enet_c=1.1)) == pytest.approx(custom, rel=1e-15)


def test_sqrt_is_one_over_root_p():
    assert weights(method="sqrt") == pytest.approx([1.5**0.5, 3.75**0.5, 15**0.5], rel=1e-15)


def test_effective_number_with_default_beta():
    beta = 1 - 1 / 30
    expected = np.array([(1 - beta) / (1 - beta**n) for n in (20, 8, 2)])
    expected *= 3 / expected.sum()  # the paper's normalisation: the K weights sum to K
    result = compute_weights(TINY, "effective")
    assert result.weights.tolist() == pytest.approx(expected, rel=1e-12)
    assert result.weights.sum() == pytest.approx(3, rel=1e-15)
    assert result.params == {"beta": beta}
    # beta = 0 is uniform, as Cui et al. note; beta -> 1 tends to inverse frequency.
    assert weights(method="effective", params=Params(beta=0.0)) == [1.0, 1.0, 1.0]
    near_one = weights(method="effective", params=Params(beta=1 - 1e-9))
    products = np.array(near_one) * [20, 8, 2]
    assert products / products[0] == pytest.approx([1, 1, 1], rel=1e-6)


def test_effective_stays_exact_for_pixel_counts():
    # A Cityscapes-sized count: 1 - beta^n must not cancel to 0 or lose the class ratio.
    counts = make_counts([2_000_000_000, 1_000_000])
    w = weights(counts, "effective")
    n = 2_001_000_000
    beta = 1 - 1 / n  # the float the method uses; normalised, (1 - beta) cancels out
    expected = [1 / -math.expm1(c * math.log1p(beta - 1)) for c in (2_000_000_000, 1_000_000)]
    expected = [2 * e / sum(expected) for e in expected]
    assert w == pytest.approx(expected, rel=1e-12)
    assert w[1] > w[0]


def test_uniform():
    assert weights(method="uniform") == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("none", [0.5, 1.25, 5.0]),
        ("mean", [0.5 / 2.25, 1.25 / 2.25, 5.0 / 2.25]),
        ("sum", [0.5 / 6.75, 1.25 / 6.75, 5.0 / 6.75]),
        ("pixels", [0.5, 1.25, 5.0]),  # inverse already gives the average pixel weight 1
        ("max", [0.1, 0.25, 1.0]),
        ("min", [1.0, 2.5, 10.0]),
    ],
)
def test_normalizations_of_inverse(normalize, expected):
    assert weights(method="inverse", normalize=normalize) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize("missing", ["zero", "max", "one"])
def test_every_combination_is_finite_and_normalized(method, normalize, missing):
    counts = make_counts([900, 0, 70, 25, 5, 0], [9, 0, 7, 5, 1, 0], [900, 0, 700, 500, 100, 0])
    result = compute_weights(counts, method, normalize=normalize, missing=missing)
    w = result.weights
    assert np.isfinite(w).all() and (w >= 0).all()
    assert result.absent == [1, 5]
    p = counts.pixels / counts.counted
    holds = {
        "mean": w.mean(),
        "sum": w.sum(),
        "pixels": (w * p).sum(),
        "max": w.max(),
        "min": w[w > 0].min(),
    }
    if normalize != "none":
        assert holds[normalize] == pytest.approx(1.0, abs=1e-12)
    present = w[[0, 2, 3, 4]]
    filled = {"zero": 0.0, "max": present.max(), "one": None}[missing]
    if filled is not None:
        assert w[1] == w[5] == pytest.approx(filled, rel=1e-15)
    if missing == "one" and normalize == "none":
        assert w[1] == w[5] == 1.0


@pytest.mark.parametrize("method", ["inverse", "enet", "sqrt", "effective"])
def test_rarer_class_gets_larger_weight(method):
    rng = np.random.default_rng(7)
    for _ in range(20):
        pixels = rng.integers(1, 10**7, size=8)
        w = weights(make_counts(pixels), method)
        order = np.argsort(pixels)
        assert np.all(np.diff(np.array(w)[order]) <= 0)


def test_median_invariants():
    rng = np.random.default_rng(11)
    for _ in range(20):
        images = rng.integers(1, 50, size=7)
        image_pixels = images * 10_000
        pixels = rng.integers(1, 9_000, size=7) * images
        counts = make_counts(pixels, images, image_pixels)
        w = np.array(weights(counts, "median"))
        freq = pixels / image_pixels
        assert sorted(w)[3] == pytest.approx(1.0, rel=1e-15)  # the median class weighs 1
        assert np.all(np.diff(w[np.argsort(freq)]) <= 0)


def test_inverse_invariant_sum_of_weight_times_pixels_is_n():
    rng = np.random.default_rng(3)
    for _ in range(20):
        pixels = rng.integers(0, 10**9, size=12)
        pixels[rng.integers(0, 12)] = 0  # an absent class does not break it
        w = np.array(weights(make_counts(pixels), "inverse"))
        assert (w * pixels).sum() == pytest.approx(pixels.sum(), rel=1e-12)


def test_missing_error_names_the_classes():
    with pytest.raises(WeightError, match=r"classes \[3\] have no pixels"):
        compute_weights(TINY_ABSENT, "inverse", missing="error")


def test_absent_class_with_every_method_and_policy_gives_no_nan():
    for method in METHODS:
        for missing in ("zero", "max", "one"):
            result = compute_weights(TINY_ABSENT, method, missing=missing)
            assert np.isfinite(result.weights).all()
            assert result.absent == [3]
            assert np.isfinite(result.pos_weight).all()


def test_absent_class_does_not_change_present_weights():
    for method in METHODS:
        assert weights(TINY_ABSENT, method)[:3] == pytest.approx(weights(TINY, method), rel=1e-15)


def test_clip_bounds_the_output_but_keeps_zero_filled_classes_zero():
    w = weights(TINY_ABSENT, "inverse", clip=(1.0, 4.0))
    assert w == [1.0, 1.25, 4.0, 0.0]
    assert weights(TINY_ABSENT, "inverse", missing="max", clip=(None, 4.0)) == [0.5, 1.25, 4.0, 4.0]


def test_pos_weight_binary_and_one_vs_rest():
    assert pos_weight(make_counts([30, 10])) == [3.0]  # negatives / positives, one logit
    assert pos_weight(TINY) == pytest.approx([10 / 20, 22 / 8, 28 / 2], rel=1e-15)
    assert pos_weight(TINY_ABSENT) == pytest.approx([0.5, 2.75, 14.0, 0.0], rel=1e-15)
    assert pos_weight(TINY_ABSENT, "one")[3] == 1.0
    assert pos_weight(make_counts([30, 0]), "max") == [1.0]  # nothing to take a max of


def test_nothing_counted_is_an_input_error():
    with pytest.raises(InputError, match="no pixels were counted"):
        compute_weights(make_counts([0, 0]), "median")


def test_registries_are_what_the_cli_offers():
    assert list(METHODS) == ["inverse", "median", "enet", "sqrt", "effective", "uniform"]
    assert list(NORMALIZATIONS) == ["none", "mean", "sum", "pixels", "max", "min"]
    assert list(MISSING) == ["zero", "max", "one", "error"]
