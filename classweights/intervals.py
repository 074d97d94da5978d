"""How far off weights from a sample of masks can be: a bootstrap over images.

Pixels within a mask are not independent (a class comes in regions, and an image holds a
scene), so the unit of sampling is the image: a bootstrap resample draws M images with
replacement from the M sampled, adds up their per-image counts (`per_image.Table`) into the
sums of `counting.ClassCounts`, and derives the weights from them exactly as from a scan
(any method, normalisation and missing policy). The 2.5th and 97.5th percentiles of each
weight over the resamples are its 95% interval (the percentile bootstrap: Efron and
Tibshirani, "An Introduction to the Bootstrap", 1993, chapter 13).

Every random choice comes from one seeded ``numpy.random.Generator``, so a run is repeated
exactly by its seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .counting import ClassCounts, LabelSpec
from .errors import InputError, WeightError
from .limits import MAX_RESAMPLES
from .masks import MaskFile
from .per_image import Row, Table
from .scan import ScanResult, Source, scan

T = TypeVar("T")

#: Resamples by default, and the confidence level of the intervals.
BOOTSTRAP, LEVEL = 1000, 0.95

#: Resamples drawn at once: a (chunk, images) matrix of multiplicities.
CHUNK = 100

#: ``weigh(counts)``: the weight vector of some counts (`weights.compute_weights`, set up).
Weigh = Callable[[ClassCounts], np.ndarray]


def reservoir(items: Iterable[T], size: int, rng: np.random.Generator) -> list[T]:
    """Return ``size`` items chosen uniformly at random from ``items``, in their order there.

    One pass, memory O(size) whatever the number of items: Vitter's algorithm R ("Random
    sampling with a reservoir", ACM TOMS 1985). All items when there are fewer.
    """
    if size < 1:
        raise ValueError(f"sample size must be at least 1, not {size}")
    kept: list[tuple[int, T]] = []
    for seen, item in enumerate(items):
        if seen < size:
            kept.append((seen, item))
        else:
            slot = int(rng.integers(0, seen + 1))
            if slot < size:
                kept[slot] = (seen, item)
    return [item for _, item in sorted(kept, key=lambda pair: pair[0])]


@dataclass(frozen=True)
class Interval:
    """Percentile-bootstrap intervals of the weights: ``low[c]`` to ``high[c]`` at ``level``."""

    low: np.ndarray
    high: np.ndarray
    level: float
    bootstrap: int
    images: int

    def half_width(self, weights: np.ndarray) -> np.ndarray:
        """Return how far each interval reaches from its weight, relative to it: the larger of
        ``high - w`` and ``w - low``, over ``|w|`` (inf for a zero weight). Percentile
        intervals are not symmetric about ``w``, so half of ``high - low`` would understate
        the longer side."""
        reach = np.maximum(self.high - weights, weights - self.low)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(weights != 0, reach / np.abs(weights), np.inf)


def bootstrap(
    table: Table,
    weigh: Weigh,
    *,
    num_classes: int | None = None,
    resamples: int = BOOTSTRAP,
    level: float = LEVEL,
    rng: np.random.Generator,
) -> Interval:
    """Return the percentile-bootstrap interval of every weight ``weigh`` gives.

    Each resample draws ``len(table)`` images with replacement (multiplicities from a
    multinomial), sums their rows into counts of ``num_classes`` classes and weighs them. A
    resample in which no pixel is counted (possible when most images hold only ignored
    pixels) has no weights and is drawn again.

    Raises `WeightError` when a resample cannot be weighed (``missing="error"`` and a class
    that some resample lacks: such a weight has no interval).
    """
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples must be in 1..{MAX_RESAMPLES:,}, not {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    n = len(table)
    if n == 0:
        raise InputError("no masks to resample")
    if not table.pixels.any():
        raise InputError("no pixels were counted (every pixel ignored, or no masks)")
    k = max(num_classes or 0, table.num_classes)
    pixels = table.dense(k)
    holds = (pixels > 0).astype(np.int64)
    image_pixels = holds * table.sizes[:, None]
    drawn: list[np.ndarray] = []
    while len(drawn) < resamples:
        times = rng.multinomial(n, np.full(n, 1.0 / n), size=min(CHUNK, resamples - len(drawn)))
        sums = (times @ pixels, times @ holds, times @ image_pixels, times @ table.ignored)
        for p, i, ip, ignored in zip(*sums, strict=True):
            counts = ClassCounts(p, i, ip, files=n, ignored=int(ignored))
            if counts.counted == 0:
                continue
            try:
                drawn.append(weigh(counts))
            except WeightError as error:
                raise WeightError(
                    f"a bootstrap resample cannot be weighed ({error}); "
                    "intervals need a missing policy other than error"
                ) from None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.array(drawn), [tail, 100 - tail], axis=0)
    return Interval(low, high, level, resamples, n)


#: ``until_stable``: masks read before the first check, and the least read between checks; a
#: check resamples every mask read so far, so the batches grow with it (a quarter of those
#: read), which keeps the checks few: about a dozen per tenfold.
FIRST_BATCH, MIN_BATCH = 50, 25

#: ``until_stable``: resamples of a check between batches (at most). Only a check that finds
#: the intervals narrow enough, or the last one, is made again with all the resamples asked
#: for, and decides; the others only say "read on", which a few hundred resamples tell.
QUICK_RESAMPLES = 200


@dataclass(frozen=True)
class Sample:
    """What `scan_sample` read: the scan's result, its per-image rows, the weights' intervals.

    ``found`` is the number of masks found, of which ``result`` counted a sample;
    ``interval`` is None without resamples; ``stable`` says whether every present class's
    interval came within the tolerance (None without ``until_stable``); ``worst`` is the
    largest relative half-width, and ``worst_class`` its class.
    """

    found: int
    result: ScanResult
    table: Table
    interval: Interval | None
    stable: bool | None
    worst: float
    worst_class: int | None


def scan_sample(
    paths: Iterable[str | os.PathLike],
    spec: LabelSpec | None,
    weigh: Weigh,
    *,
    sample: int | None = None,
    until_stable: float | None = None,
    seed: int | None = None,
    resamples: int = BOOTSTRAP,
    level: float = LEVEL,
    rows: Callable[[Sequence[Row]], None] | None = None,
    **options: Any,
) -> Sample:
    """Scan a random sample of the masks under ``paths`` and bootstrap its weights' intervals.

    With ``sample``, a uniform random subset of that many masks (`reservoir`), counted in
    path order; with neither ``sample`` nor ``until_stable``, all of them. With
    ``until_stable`` R, masks are read in a random order, in batches, until every present
    class's interval half-width is within R of its weight (relative), or all of them (at most
    ``sample``) are read; it needs ``resamples``, which may otherwise be 0 (no intervals).
    ``weigh`` gives the weights of counts
    (`weights.compute_weights`, set up); ``seed`` seeds every random choice; ``rows`` gets
    the per-image rows too; ``options`` are `scan.scan`'s.
    """
    if until_stable is not None and not until_stable > 0:
        raise ValueError(f"until_stable must be positive, not {until_stable}")
    if until_stable is not None and resamples < 1:
        raise ValueError(f"until_stable needs resamples, not {resamples}")
    rng = np.random.default_rng(seed)
    collected: list[Row] = []
    found: list[int] = []  # how many masks the listing holds

    def keep(batch: Sequence[Row]) -> None:
        collected.extend(batch)
        if rows is not None:
            rows(batch)

    if until_stable is None:

        def choose(masks: list[MaskFile]) -> list[MaskFile]:
            found.append(len(masks))
            return reservoir(masks, sample, rng) if sample else masks

        result = scan(paths, spec, select=choose, rows=keep, **options)
        return _assess(found[0], result, collected, weigh, resamples, level, rng, None)

    order: list[MaskFile] = []

    def take(masks: list[MaskFile]) -> list[MaskFile]:
        if not order:  # the first batch: one random order for the whole run
            found.append(len(masks))
            chosen = reservoir(masks, sample, rng) if sample else masks
            order.extend(chosen[i] for i in rng.permutation(len(chosen)))
        return order[read : read + size]

    paths = list(paths)
    read, size, parts, warnings = 0, FIRST_BATCH, [], {}
    while True:
        part = scan(paths, spec, select=take, rows=keep, **options)
        parts.append(part)
        warnings.update(dict.fromkeys(part.warnings))
        read += size
        counts = sum((p.counts for p in parts[1:]), parts[0].counts)
        result = ScanResult(
            counts,
            part.spec,
            Source.of(paths, order[:read]),
            names=part.names,
            warnings=tuple(warnings),
        )
        last = read >= len(order)
        quick = min(resamples, QUICK_RESAMPLES)
        assessed = _assess(found[0], result, collected, weigh, quick, level, rng, until_stable)
        if (assessed.stable or last) and quick < resamples:
            assessed = _assess(
                found[0], result, collected, weigh, resamples, level, rng, until_stable
            )
        if assessed.stable or last:
            return assessed
        size = max(MIN_BATCH, read // 4)


def _assess(
    found: int,
    result: ScanResult,
    collected: list[Row],
    weigh: Weigh,
    resamples: int,
    level: float,
    rng: np.random.Generator,
    tolerance: float | None,
) -> Sample:
    table = Table.of(collected)
    counts = result.counts
    if not resamples:
        return Sample(found, result, table, None, None, 0.0, None)
    interval = bootstrap(
        table, weigh, num_classes=counts.num_classes, resamples=resamples, level=level, rng=rng
    )
    relative = interval.half_width(weigh(counts))[counts.present]
    present = np.flatnonzero(counts.present)
    worst = int(np.argmax(relative)) if relative.size else None
    return Sample(
        found,
        result,
        table,
        interval,
        None if tolerance is None else bool((relative <= tolerance).all()),
        float(relative[worst]) if worst is not None else 0.0,
        int(present[worst]) if worst is not None else None,
    )
