"""Benchmark the scan beyond one machine's default path: each line a ratio to the local default
scan measured in the same run.

- ``dask``: ``scan --executor dask`` (a local cluster of as many worker processes as cores,
  started by the command) against the default local scan, on 2,000 512x512 palette masks.
- ``cache``: a ``--cache`` re-scan of 20,000 unchanged 512x512 masks against a full scan of
  them (the cache must make it at least 10x faster), and the same with 1% of them changed.
- ``memory``: the peak resident memory of the scan's main process on 20,000 and on 200,000
  tiny masks (the listing streams, so the two should be within 10% of each other).

Runs are interleaved (A B A B ...) and medians reported: the machines this runs on are shared.
Datasets are generated deterministically under ``bench/data/beyond/`` on the first run.
`main` prints the lines; ``bench/run.py`` may call `lines` to add them to its own report.

Usage: python bench/beyond.py [--data DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from run import SCAN_CODE  # reports the peak memory of a scan's main process and workers

SEED = 20261129
GENERATOR_VERSION = 1
MASKS, SIZE = 2000, 512  # the reference set: 2,000 masks of 512x512
CACHE_COPIES = 10  # 20,000 masks: hard links to the reference set
TINY_COUNTS = (20_000, 200_000)
CHANGED = 0.01  # the share of masks changed between a cached scan and the next


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- datasets ---------------------------------------------------------------------------


def draw(index: int) -> None:
    """Write mask ``index`` of the reference set: rectangles of 19 classes and void (255)."""
    rng = np.random.default_rng([SEED, index])
    labels = np.repeat(np.repeat(rng.integers(0, 19, (8, 8)), 64, 0), 64, 1).astype(np.uint8)
    for _ in range(rng.integers(4, 12)):
        top, left, height, width = rng.integers(0, SIZE, 4) // [1, 1, 3, 3]
        labels[top : top + height, left : left + width] = rng.choice([*range(19), 255])
    Image.fromarray(labels).save(_reference_dir / f"{index:05d}.png")


_reference_dir = Path()


def _init(directory: Path) -> None:
    global _reference_dir
    _reference_dir = directory


def reference(directory: Path) -> None:
    directory.mkdir(parents=True)
    with multiprocessing.Pool(os.cpu_count(), _init, (directory,)) as pool:
        pool.map(draw, range(MASKS), chunksize=50)


def links(source: Path, directory: Path, count: int) -> None:
    """Fill ``directory`` with ``count`` hard links to the files of ``source``, renamed."""
    directory.mkdir(parents=True)
    files = sorted(source.iterdir())
    for number in range(count):
        os.link(files[number % len(files)], directory / f"{number:06d}.png")


def tiny(directory: Path, count: int) -> None:
    """``count`` hard links to 4x4 masks: the listing's cost, not the decoding's."""
    directory.mkdir(parents=True)
    one = directory / "source.png"
    for number in range(count):
        if number % 50_000 == 0:  # a file system allows a file some 65,000 links at most
            one.unlink(missing_ok=True)
            Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) % 3).save(one)
        os.link(one, directory / f"{number:06d}.png")
    one.unlink()


def ensure(directory: Path, make: Callable[[Path], None], manifest: dict) -> Path:
    """Make ``directory`` unless it holds the dataset ``manifest`` describes (written last)."""
    marker = directory.parent / f"{directory.name}.json"
    if marker.exists() and json.loads(marker.read_text()) == manifest:
        return directory
    log(f"generating {directory} ...")
    shutil.rmtree(directory, ignore_errors=True)
    make(directory)
    marker.write_text(json.dumps(manifest) + "\n")
    return directory


# --- measurements -----------------------------------------------------------------------


def scan(directory: Path, *options: str) -> tuple[float, int]:
    """Run ``classweights scan`` and return its wall-clock seconds and main-process peak KiB."""
    command = [sys.executable, "-c", SCAN_CODE, "scan", str(directory), "-q", *options]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    lines = done.stderr.splitlines()
    if done.returncode != 0:
        raise RuntimeError(f"scan {directory} {' '.join(options)} failed: {lines[:1]}")
    _, main, _ = lines[-1].split()  # the marker, main process, largest worker
    return seconds, int(main)


def interleaved(runs: int, *measures: Callable[[], float]) -> list[float]:
    """Run each measure ``runs`` times, taking turns, and return the median of each."""
    results: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for result, measure in zip(results, measures, strict=True):
            result.append(measure())
    return [statistics.median(result) for result in results]


def touch(files: list[Path]) -> None:
    """Change the modification time of ``files`` (all of a hard link's names change)."""
    for path in files:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, time.time_ns() + 10**9))


def lines(data: Path, runs: int = 3) -> Iterator[str]:
    """Measure, and yield one line per comparison as it is made."""
    base = data / "beyond"
    manifest = {"version": GENERATOR_VERSION, "seed": SEED, "masks": MASKS, "size": SIZE}
    masks = ensure(base / "2000x512", reference, manifest)
    many = ensure(
        base / "20000x512",
        lambda d: links(masks, d, MASKS * CACHE_COPIES),
        {**manifest, "copies": CACHE_COPIES},
    )
    tinies = [
        ensure(base / f"tiny{count}", lambda d, n=count: tiny(d, n), {"count": count})
        for count in TINY_COUNTS
    ]

    log("dask local cluster against the local default ...")
    local, dask = interleaved(
        runs,
        lambda: scan(masks, "--ignore-index", "255")[0],
        lambda: scan(masks, "--ignore-index", "255", "--executor", "dask")[0],
    )
    yield (
        f"dask local cluster, {MASKS:,} {SIZE}x{SIZE}: local {local:.2f} s, "
        f"dask {dask:.2f} s, dask/local {dask / local:.2f}"
    )

    log("--cache re-scans against full scans ...")
    cache = base / "histograms.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cache}{suffix}").unlink(missing_ok=True)
    scan(many, "--ignore-index", "255", "--cache", str(cache))  # fill it
    originals = sorted(masks.iterdir())
    changed = originals[: round(MASKS * CHANGED)]  # 1% of the originals: 1% of the links

    def changed_rescan() -> float:
        touch(changed)
        return scan(many, "--ignore-index", "255", "--cache", str(cache))[0]

    full, cached, partly = interleaved(
        runs,
        lambda: scan(many, "--ignore-index", "255")[0],
        lambda: scan(many, "--ignore-index", "255", "--cache", str(cache))[0],
        changed_rescan,
    )
    verdict = "ok" if full / cached >= 10 else "BELOW the 10x asked"
    yield (
        f"--cache re-scan, {MASKS * CACHE_COPIES:,} {SIZE}x{SIZE} unchanged: full {full:.2f} s, "
        f"cached {cached:.2f} s, speed-up {full / cached:.1f}x ({verdict})"
    )
    yield (f"--cache re-scan, {CHANGED:.0%} changed: {partly:.2f} s, speed-up {full / partly:.1f}x")

    log("peak memory of the main process on tiny masks ...")
    peaks = [
        statistics.median(scan(directory)[1] for _ in range(max(1, runs // 2)))
        for directory in tinies
    ]
    small, large = (kib / 1024 for kib in peaks)
    verdict = "ok" if abs(large / small - 1) <= 0.10 else "NOT within the 10% asked"
    yield (
        f"peak memory of the main process, tiny masks: {TINY_COUNTS[0]:,}: {small:.0f} MB, "
        f"{TINY_COUNTS[1]:,}: {large:.0f} MB, ratio {large / small:.2f} ({verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parent / "data",
        help="where the datasets are generated and reused [default: bench/data]",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; median of {args.runs} interleaved runs, whole processes")
    for line in lines(args.data.resolve(), args.runs):
        print(line, flush=True)


if __name__ == "__main__":
    main()
