"""Sampling weights per image: each formula by hand and against the published code's steps."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict

import numpy as np
import pytest

from classweights.errors import WeightError
from classweights.per_image import Row, Table, read_rows
from classweights.sampling import Params, image_weights
from helpers import MASK_A, MASK_B, assert_one_line_error, run, run_json, save_mask

#: Four images; the last holds only ignored pixels. By eye: images holding class 0, 1, 2 =
#: 3, 1, 1 of M = 4; class pixels 240, 10, 50, N = 300.
ROWS = [
    Row("i0.png", 10, 10, 0, {0: 90, 1: 10}),
    Row("i1.png", 10, 10, 0, {0: 100}),
    Row("i2.png", 10, 10, 0, {0: 50, 2: 50}),
    Row("i3.png", 10, 10, 100, {}),
]
TABLE = Table.of(ROWS)


def test_repeat_factor_by_hand():
    # f = 3/4, 1/4, 1/4; t = 0.5: r = max(1, sqrt(2/3)) = 1, sqrt(2), sqrt(2).
    got = image_weights(TABLE, "repeat-factor", Params(threshold=0.5))
    assert got.weights.tolist() == pytest.approx([math.sqrt(2), 1.0, math.sqrt(2), 1.0])
    assert got.params == {"threshold": 0.5}
    assert got.paths == ("i0.png", "i1.png", "i2.png", "i3.png")


def detectron2_repeat_factors(dataset_dicts, repeat_thresh):
    """detectron2's ``repeat_factors_from_category_frequency``, step by step (torch aside)."""
    category_freq = defaultdict(int)
    for dataset_dict in dataset_dicts:
        cat_ids = {ann["category_id"] for ann in dataset_dict["annotations"]}
        for cat_id in cat_ids:
            category_freq[cat_id] += 1
    num_images = len(dataset_dicts)
    for k, v in category_freq.items():
        category_freq[k] = v / num_images
    category_rep = {
        cat_id: max(1.0, math.sqrt(repeat_thresh / cat_freq))
        for cat_id, cat_freq in category_freq.items()
    }
    rep_factors = []
    for dataset_dict in dataset_dicts:
        cat_ids = {ann["category_id"] for ann in dataset_dict["annotations"]}
        rep_factors.append(max({category_rep[cat_id] for cat_id in cat_ids}, default=1.0))
    return rep_factors


def _random_rows(seed: int, images: int = 40, classes: int = 6) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(images):
        held = rng.random(classes) < rng.uniform(0.05, 0.9, classes)
        pixels = {int(c): int(rng.integers(1, 5000)) for c in np.flatnonzero(held)}
        rows.append(Row(f"m{i:02d}.png", 64, 64, int(rng.integers(0, 50)), pixels))
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_repeat_factor_is_detectron2s(seed):
    rows = _random_rows(seed)
    dicts = [{"annotations": [{"category_id": c} for c in row.pixels]} for row in rows]
    for t in (0.001, 0.1, 0.5):
        expect = detectron2_repeat_factors(dicts, t)
        got = image_weights(Table.of(rows), "repeat-factor", Params(threshold=t)).weights
        assert got.tolist() == pytest.approx(expect, rel=1e-12)


def test_rare_class_by_hand():
    # f = 240/300, 10/300, 50/300; T = 1: P(c) = e^(1 - f_c) / sum. Holders: 3, 1, 1.
    e = [math.exp(1 - 0.8), math.exp(1 - 1 / 30), math.exp(1 - 1 / 6)]
    p = [x / sum(e) for x in e]
    expect = [p[0] / 3 + p[1], p[0] / 3, p[0] / 3 + p[2], 0.0]
    got = image_weights(TABLE, "rare-class", Params(temperature=1.0))
    assert got.weights.tolist() == pytest.approx(expect, rel=1e-12)
    assert got.weights.sum() == pytest.approx(1.0)


def daformer_image_probabilities(sample_class_stats, temperature, min_pixels):
    """DAFormer's ``get_rcs_class_probs`` and ``samples_with_class``, then the probability that
    ``get_rare_class_sample`` draws each file (class from P, then a holder uniformly)."""
    overall_class_stats = {}
    for s in sample_class_stats:
        s = dict(s)
        s.pop("file")
        for c, n in s.items():
            c = int(c)
            if c not in overall_class_stats:
                overall_class_stats[c] = n
            else:
                overall_class_stats[c] += n
    overall_class_stats = dict(sorted(overall_class_stats.items(), key=lambda item: item[1]))
    freq = np.array(list(overall_class_stats.values()), np.float64)
    freq = freq / np.sum(freq)
    freq = 1 - freq
    freq = np.exp(freq / temperature) / np.exp(freq / temperature).sum()  # torch.softmax
    classes, classprob = list(overall_class_stats), freq
    samples_with_class = {c: [] for c in classes}
    for s in sample_class_stats:
        for c, pixels in s.items():
            if c != "file" and pixels > min_pixels:
                samples_with_class[int(c)].append(s["file"])
    probability = defaultdict(float)
    for c, p in zip(classes, classprob, strict=True):
        for file in samples_with_class[c]:
            probability[file] += p / len(samples_with_class[c])
    return [probability[s["file"]] for s in sample_class_stats]


@pytest.mark.parametrize("seed", range(5))
def test_rare_class_is_daformers(seed):
    rows = _random_rows(seed)
    stats = [{"file": r.path, **{str(c): n for c, n in r.pixels.items()}} for r in rows]
    for temperature, min_pixels in ((0.01, 0), (0.1, 0), (1.0, 0), (0.5, 100)):
        expect = daformer_image_probabilities(stats, temperature, min_pixels)
        params = Params(temperature=temperature, min_pixels=min_pixels)
        got = image_weights(Table.of(rows), "rare-class", params).weights
        assert got.tolist() == pytest.approx(expect, rel=1e-9, abs=1e-300)


def test_rare_class_refuses_a_class_no_image_has_enough_of():
    with pytest.raises(WeightError, match=r"min_pixels 20 .*classes \[1\]"):
        image_weights(TABLE, "rare-class", Params(min_pixels=20))


def test_inverse_by_hand():
    # Inverse class weights: w = 300 / (3 n_c) = 5/12, 10, 2. Image 0: (90 w0 + 10 w1) / 100.
    w = [300 / (3 * 240), 10.0, 2.0]
    expect = [(90 * w[0] + 10 * w[1]) / 100, w[0], (50 * w[0] + 50 * w[2]) / 100, 0.0]
    got = image_weights(TABLE, "inverse")
    assert got.weights.tolist() == pytest.approx(expect, rel=1e-12)
    assert got.params == {"class_method": "inverse"}
    # Any class-weight method; the median-frequency weights by hand: f_c = n_c / image_pixels
    # = 240/300, 10/100, 50/100; median 0.5; w = 0.625, 5, 1.
    median = image_weights(TABLE, "inverse", Params(class_method="mfb"))
    assert median.weights.tolist() == pytest.approx([(90 * 0.625 + 50) / 100, 0.625, 0.8125, 0])


@pytest.fixture
def masks(tmp_path):
    save_mask(tmp_path / "masks" / "a.png", MASK_A)
    save_mask(tmp_path / "masks" / "b.png", MASK_B)
    rng = np.random.default_rng(0)
    for i in range(70):
        save_mask(tmp_path / "masks" / f"r{i:02d}.png", rng.integers(0, 1 + i % 4, (4, 6)))
    return tmp_path / "masks"


@pytest.mark.parametrize(
    "method",
    [
        ["--method", "repeat-factor", "--threshold", "0.3"],
        ["--method", "rare-class", "--temperature", "0.2"],
        ["--method", "inverse", "--class-method", "median"],
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_scan_and_its_per_image_file_give_the_same_weights(tmp_path, masks, method, suffix):
    rows = tmp_path / f"rows{suffix}"
    run_json("scan", masks, "--ignore-index", 255, "--per-image", rows, "-q")
    from_scan = run("image-weights", masks, "--ignore-index", 255, *method, "-q")
    from_file = run("image-weights", rows, *method)
    assert from_scan.exit_code == from_file.exit_code == 0, from_scan.stderr + from_file.stderr
    assert from_scan.stdout == from_file.stdout
    lines = list(csv.reader(io.StringIO(from_file.stdout)))
    assert lines[0] == ["path", "weight"]
    assert [line[0] for line in lines[1:]] == [r.path for r in read_rows(rows)]
    assert len(lines) == 73


def test_json_document(tmp_path, masks):
    doc = run_json(
        "image-weights",
        masks,
        "--ignore-index",
        255,
        "--method",
        "rare-class",
        "-q",
        "--format",
        "json",
    )
    assert doc["method"] == "rare-class"
    assert doc["params"] == {"temperature": 0.01, "min_pixels": 0}
    assert doc["images"] == len(doc["paths"]) == len(doc["weights"]) == 72
    assert sum(doc["weights"]) == pytest.approx(1.0)
    out = tmp_path / "w.json"
    run("image-weights", masks, "--ignore-index", 255, "--method", "inverse", "-q", "-o", out)
    assert out.read_text().startswith("path,weight\na.png,")


def test_options_of_another_method_are_usage_errors(masks):
    result = run("image-weights", masks, "--method", "inverse", "--threshold", "0.1")
    assert result.exit_code == 2
    assert "--threshold applies to --method repeat-factor" in result.stderr


def test_cli_names_the_flag(tmp_path, masks):
    result = run(
        "image-weights",
        masks,
        "--ignore-index",
        255,
        "--method",
        "rare-class",
        "--min-pixels",
        "1000",
        "-q",
    )
    assert result.exit_code == 3
    assert "--min-pixels 1000" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_missing_per_image_file_is_one_input_error(tmp_path):
    result = run("image-weights", tmp_path / "rows.parquet", "--method", "inverse")
    assert_one_line_error(result, 3, "rows.parquet", "cannot read")


def test_rare_class_at_a_tiny_temperature_is_the_limit_not_nan(masks):
    # (1 - f) / T overflowed to inf - inf = NaN below T ~ 1e-308; shifted by min f the logits
    # are <= 0: finite probabilities summing to 1, no numpy warning on stderr.
    result = run("image-weights", masks, "--ignore-index", 255, "--method", "rare-class",
                 "--temperature", "1e-320", "-q", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)  # strict: no NaN
    weights = np.array(doc["weights"])
    assert np.isfinite(weights).all() and weights.sum() == pytest.approx(1.0)
    rows = Table.of(
        Row(p, 1, 1, 0, r) for p, r in [("x", {0: 90, 1: 9}), ("y", {0: 99, 2: 1}), ("z", {1: 1})]
    )
    # Pixels 189, 10, 1: class 2 (y alone) is the rarest.
    got = image_weights(rows, "rare-class", Params(temperature=1e-320))
    assert got.weights.tolist() == [0.0, 1.0, 0.0]


def test_repeat_factor_threshold_is_a_share_of_the_images(masks):
    result = run("image-weights", masks, "--method", "repeat-factor", "--threshold", "1e308")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--threshold" in result.stderr and "0<x<=1" in result.stderr
    with pytest.raises(ValueError, match="threshold"):
        image_weights(TABLE, "repeat-factor", Params(threshold=2.0))
    doc = run_json(
        "image-weights", masks, "--ignore-index", 255, "--method", "repeat-factor",
        "--threshold", "1", "-q", "--format", "json",
    )
    assert all(math.isfinite(w) and w >= 1 for w in doc["weights"])


def test_a_weight_that_is_not_finite_is_refused():
    def bad(table, params):
        return np.array([1.0, math.nan, 1.0, math.inf]), {}

    from classweights import sampling

    sampling.METHODS["bad"] = bad
    try:
        with pytest.raises(WeightError, match=r"i1\.png"):
            image_weights(TABLE, "bad")
    finally:
        del sampling.METHODS["bad"]


def test_rare_class_with_no_pixel_counted_is_a_weight_error(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("path,height,width,ignored,pixels\na.png,2,2,4,\nb.png,1,1,1,\n")
    for method in ("rare-class", "inverse"):
        result = run("image-weights", rows, "--method", method)
        assert_one_line_error(result, 3, "no pixels")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("a.png,1,1,0,2000000000:1", "class id 2000000000"),
        ("a.png,1,1,0,65536:1", "class id 65536"),
        ("a.png,1,1,0,0:99999999999999999999999", "99999999999999999999999 pixels of class 0"),
        ("a.png,1,1,0,0:0", "0 pixels of class 0"),
        ("a.png,1,1,-1,0:1", "ignored -1"),
        ("a.png,1,1,9223372036854775807,0:1", "more than int64"),
    ],
)
def test_bad_rows_are_one_input_error(tmp_path, line, fragment):
    rows = tmp_path / "rows.csv"
    rows.write_text(f"path,height,width,ignored,pixels\n{line}\n")
    result = run("image-weights", rows, "--method", "repeat-factor")
    assert_one_line_error(result, 3, "rows.csv", "not a per-image file", fragment)


@pytest.mark.parametrize(
    "option",
    [
        ["--ignore-index", "0"],
        ["--num-classes", "2"],
        ["--map", "1:0"],
        ["--workers", "3"],
        ["--preset", "ade20k"],
        ["--glob", "*.png"],
    ],
)
def test_label_options_with_a_per_image_file_are_usage_errors(tmp_path, masks, option):
    rows = tmp_path / "rows.csv"
    run_json("scan", masks, "--ignore-index", 255, "--per-image", rows, "-q")
    result = run("image-weights", rows, "--method", "inverse", *option)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{option[0]} cannot apply to {rows}" in result.stderr
    assert "Traceback" not in result.stderr
