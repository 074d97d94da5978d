"""Bootstrap intervals of the weights from a sample of masks, and the sampling itself."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from classweights.intervals import FIRST_BATCH, Interval, bootstrap, reservoir
from classweights.per_image import Row, Table
from classweights.weights import compute_weights
from helpers import assert_one_line_error, run, run_json, save_mask


def test_reservoir_keeps_the_listing_order_and_is_seeded():
    items = [f"m{i:03d}" for i in range(100)]
    chosen = reservoir(iter(items), 10, np.random.default_rng(1))
    assert len(chosen) == 10 and chosen == sorted(chosen) and set(chosen) <= set(items)
    assert chosen == reservoir(items, 10, np.random.default_rng(1))
    assert reservoir(items, 500, np.random.default_rng(1)) == items


def test_reservoir_is_uniform():
    # Each of 20 items is kept with probability 5/20; over 4000 draws its count is binomial
    # with mean 1000 and sd 27: all 20 within 5 sd.
    rng = np.random.default_rng(7)
    kept = np.zeros(20)
    for _ in range(4000):
        kept[reservoir(range(20), 5, rng)] += 1
    assert np.abs(kept - 1000).max() < 5 * 27.4


def _table(dense: np.ndarray, ignored: np.ndarray) -> Table:
    """A table from an (images, classes) pixel matrix: the per-image count vectors."""
    image, label = np.nonzero(dense)
    return Table(
        tuple(f"m{i}" for i in range(len(dense))),
        dense.sum(axis=1) + ignored,
        ignored,
        image.astype(np.int64),
        label.astype(np.int64),
        dense[image, label],
    )


def _population(rng: np.random.Generator, images: int = 4000) -> Table:
    """Count vectors of a synthetic population: classes held at different rates (the rarest
    by one image in ten), region sizes varying from image to image, some pixels ignored. Six
    classes: with an odd count the median class weighs exactly 1 in every sample."""
    rates = np.array([0.95, 0.6, 0.35, 0.2, 0.12, 0.1])
    scale = np.array([4000.0, 1500.0, 600.0, 250.0, 150.0, 100.0])
    holds = rng.random((images, 6)) < rates
    dense = np.where(holds, rng.gamma(2.0, scale / 2.0, (images, 6)).astype(np.int64) + 1, 0)
    ignored = rng.integers(0, 300, images)
    return _table(dense, ignored)


@pytest.mark.parametrize(("method", "normalize"), [("median", "none"), ("inverse", "pixels")])
def test_95_percent_intervals_cover_the_true_weights(method, normalize):
    """Repeated samples of 250 images from a population of 4,000 whose weights are known:
    each class's interval covers its true weight in 90-99% of the trials. 300 trials: the
    rate's sd is about 1.3 points, so the bounds are 3-4 sd from 95% (seeds 0-2 checked by
    hand: every rate within 0.91-0.98)."""
    rng = np.random.default_rng(2026)
    population = _population(rng)
    dense, ignored = population.dense(), population.ignored

    def weigh(counts):
        return compute_weights(counts, method, normalize=normalize).weights

    truth = weigh(population.counts())
    trials, covered = 300, np.zeros(6)
    for _ in range(trials):
        chosen = rng.choice(len(population), 250, replace=False)
        interval = bootstrap(_table(dense[chosen], ignored[chosen]), weigh, resamples=200, rng=rng)
        covered += (interval.low <= truth) & (truth <= interval.high)
    rate = covered / trials
    assert ((rate >= 0.90) & (rate <= 0.99)).all(), rate


def test_the_stopping_rule_takes_the_longer_side_of_the_interval():
    # Percentile intervals are asymmetric: w = 1 in [0.5, 2] reaches 1.0 above it (half the
    # width, 0.75, would understate it); w = -2 in [-3, -1.5] reaches 1 below, 0.5 relative.
    interval = Interval(np.array([0.5, -3.0, 1.0]), np.array([2.0, -1.5, 1.0]), 0.95, 10, 5)
    got = interval.half_width(np.array([1.0, -2.0, 0.0]))
    assert got.tolist() == [1.0, 0.5, np.inf]


def test_bootstrap_of_identical_images_has_no_width():
    rows = [Row(f"m{i}", 2, 2, 1, {0: 2, 1: 1}) for i in range(10)]
    table = Table.of(rows)

    def weigh(counts):
        return compute_weights(counts, "inverse").weights

    interval = bootstrap(table, weigh, resamples=50, rng=np.random.default_rng(0))
    # w = N / (K n_c) = 30 / (2 * 20), 30 / (2 * 10)
    assert interval.low.tolist() == interval.high.tolist() == [0.75, 1.5]
    assert interval.images == 10 and interval.bootstrap == 50 and interval.level == 0.95


@pytest.fixture
def masks(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(120):
        ids = rng.integers(0, 3, (6, 8))
        if i % 4 == 0:
            ids[:2, :2] = 3
        ids[0, -1] = 255
        save_mask(tmp_path / "masks" / f"m{i:03d}.png", ids)
    return tmp_path / "masks"


def test_sample_counts_n_masks_and_gives_every_weight_an_interval(masks):
    args = ("scan", masks, "--ignore-index", 255, "--sample", 40, "-q")
    doc = run_json(*args)
    assert doc["totals"]["files"] == doc["source"]["files"] == 40
    interval = doc["interval"]
    assert set(interval) == {"low", "high", "level", "bootstrap", "images", "seed", "widest"}
    assert (interval["level"], interval["bootstrap"], interval["images"]) == (0.95, 1000, 40)
    assert len(interval["low"]) == len(interval["high"]) == doc["num_classes"] == 4
    assert all(lo <= hi for lo, hi in zip(interval["low"], interval["high"], strict=True))
    # Seeded: the same run gives the same bytes, whatever the workers; another seed differs.
    again = run(*args, "--workers", 1)
    assert again.stdout == run(*args, "--workers", 3).stdout
    assert json.loads(again.stdout) == doc
    assert run_json(*args, "--seed", 1)["source"] != doc["source"]


def test_sample_with_per_image_rows_writes_the_sampled_masks(tmp_path, masks):
    out = tmp_path / "rows.csv"
    doc = run_json("scan", masks, "--ignore-index", 255, "--sample", 10, "--per-image", out, "-q")
    lines = out.read_text().splitlines()[1:]
    assert len(lines) == 10 and lines == sorted(lines)
    assert sum(int(line.split(",")[3]) for line in lines) == doc["totals"]["ignored"]


def test_bootstrap_zero_counts_the_sample_alone(masks):
    doc = run_json("scan", masks, "--ignore-index", 255, "--sample", 30, "--bootstrap", 0, "-q")
    assert "interval" not in doc and doc["totals"]["files"] == 30


def test_bootstrap_alone_resamples_every_mask(masks):
    doc = run_json("scan", masks, "--ignore-index", 255, "--bootstrap", 100, "-q")
    assert doc["totals"]["files"] == 120 and doc["interval"]["bootstrap"] == 100


def test_stderr_table_shows_the_intervals_and_a_note(masks):
    result = run("scan", masks, "--ignore-index", 255, "--sample", 20)
    assert result.exit_code == 0
    assert "95% interval" in result.stderr
    assert "counted a random sample of 20 of 120 masks (seed 0)" in result.stderr


def test_until_stable_stops_once_every_interval_is_narrow_enough(masks):
    loose = run("scan", masks, "--ignore-index", 255, "--until-stable", 10)
    assert loose.exit_code == 0, loose.stderr
    doc = json.loads(loose.stdout)
    assert doc["totals"]["files"] == FIRST_BATCH < 120  # the first batch is enough
    assert doc["interval"]["stable"] is True and doc["interval"]["until_stable"] == 10
    assert (
        f"read {FIRST_BATCH} of 120 masks in a random order (seed 0): stable within 10"
        in loose.stderr
    )
    tight = run("scan", masks, "--ignore-index", 255, "--until-stable", 0.0001)
    doc = json.loads(tight.stdout)
    assert doc["totals"]["files"] == 120 and doc["interval"]["stable"] is False
    assert "read 120 of 120 masks" in tight.stderr and "not stable" in tight.stderr
    assert (
        run("scan", masks, "--ignore-index", 255, "--until-stable", 0.0001).stdout == tight.stdout
    )


def test_until_stable_needs_resamples(masks):
    result = run("scan", masks, "--until-stable", 0.1, "--bootstrap", 0)
    assert result.exit_code == 2 and "--until-stable needs --bootstrap" in result.stderr


def test_missing_error_has_no_interval_when_a_resample_lacks_a_class(tmp_path):
    save_mask(tmp_path / "m" / "a.png", [[0, 1]])
    for i in range(5):
        save_mask(tmp_path / "m" / f"b{i}.png", [[0, 0]])
    result = run("scan", tmp_path / "m", "--bootstrap", 200, "--missing", "error")
    assert_one_line_error(result, 3, "bootstrap resample", "missing policy other than error")


def test_without_resamples_nothing_is_resampled(tmp_path):
    save_mask(tmp_path / "m" / "a.png", [[0, 1]])
    for i in range(5):
        save_mask(tmp_path / "m" / f"b{i}.png", [[0, 0]])
    args = ("scan", tmp_path / "m", "--sample", 6, "--bootstrap", 0, "--missing", "error", "-q")
    doc = run_json(*args)
    assert "interval" not in doc and doc["totals"]["files"] == 6


def test_a_sample_says_so_in_the_document_and_is_not_merged(tmp_path, masks):
    out = tmp_path / "s.json"
    args = ("scan", masks, "--ignore-index", 255, "--sample", 30, "--bootstrap", 0, "-q")
    doc = run_json(*args)
    assert doc["sample"] == {"masks": 30, "found": 120, "seed": 0}
    assert "interval" not in doc
    out.write_text(run(*args).stdout)
    result = run("merge", out, out)
    assert_one_line_error(result, 3, str(out), "random sample (30 of 120 masks)", "not a shard")
    # weights again from it: still a sample
    assert run_json("weights", out, "--method", "inverse", "-q")["sample"] == doc["sample"]
    stable = run_json("scan", masks, "--ignore-index", 255, "--until-stable", 10, "-q")
    assert stable["sample"] == {"masks": 50, "found": 120, "seed": 0, "order": "random"}
    widest = stable["interval"]["widest"]
    assert widest["class"] in range(4) and 0 <= widest["relative"] <= 10
    # A full scan with intervals (--bootstrap alone) is no sample.
    assert "sample" not in run_json("scan", masks, "--ignore-index", 255, "--bootstrap", 50, "-q")


def test_csv_has_the_intervals(masks):
    args = ("scan", masks, "--ignore-index", 255, "--sample", 40, "-q")
    doc = run_json(*args)
    result = run(*args, "--format", "csv")
    assert result.exit_code == 0 and result.stderr == ""
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(lines[0])[-2:] == ["low", "high"]
    assert [float(line["low"]) for line in lines] == doc["interval"]["low"]
    assert [float(line["high"]) for line in lines] == doc["interval"]["high"]
    plain = run("scan", masks, "--ignore-index", 255, "-q", "--format", "csv").stdout
    assert plain.splitlines()[0].endswith(",weight")


def test_until_stable_decides_with_every_resample_asked_for(masks, monkeypatch):
    # Checks between batches use QUICK_RESAMPLES; the check that stops is made with all.
    from classweights import intervals
    from classweights.counting import LabelSpec

    asked = []
    real = intervals.bootstrap

    def recording(table, weigh, **how):
        asked.append((len(table), how["resamples"]))
        return real(table, weigh, **how)

    monkeypatch.setattr(intervals, "bootstrap", recording)
    monkeypatch.setattr(intervals, "QUICK_RESAMPLES", 20)  # few, to keep the test fast
    sample = intervals.scan_sample(
        [masks],
        LabelSpec(ignore_index=(255,)),
        lambda counts: compute_weights(counts, "median").weights,
        until_stable=0.0001,
        seed=0,
        resamples=50,
        workers=1,
    )
    assert sample.stable is False and len(sample.table) == 120
    assert asked[-1] == (120, 50) and sample.interval.bootstrap == 50
    assert asked[:-2] and all(r == 20 for _, r in asked[:-1])
    assert [n for n, _ in asked[:-1]] == sorted({n for n, _ in asked[:-1]})
