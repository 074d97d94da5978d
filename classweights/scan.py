"""The scan driver: find the masks, count them on all cores, and say what was scanned."""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from .counting import ClassCounts, LabelSpec, sparse_label_hint, unexpected_summary
from .errors import InputError, MaskError
from .masks import (
    LOSSY_SUFFIXES,
    MaskFile,
    ReadOptions,
    find_masks,
    pair_regions,
    read_histogram,
)

#: ``progress(done, total)``: files counted so far, out of how many.
Progress = Callable[[int, int], None]

#: Below this many files a pool costs more than it saves.
POOL_MIN_FILES = 64

#: Largest share of the file list one worker task takes; tasks are few and results small,
#: so no message crosses between processes per file.
MAX_CHUNK = 256


@dataclass(frozen=True)
class Source:
    """What was scanned: the paths as given, the file count, and a fingerprint of the file set.

    The fingerprint is the sha256 of the sorted ``relative path<TAB>size`` lines, so it names
    the same dataset wherever it lies on disk.
    """

    paths: tuple[str, ...]
    files: int
    fingerprint: str

    @classmethod
    def of(cls, paths: Iterable[str | os.PathLike], masks: Sequence[MaskFile]) -> Source:
        names = sorted(range(len(masks)), key=lambda i: masks[i].name)
        lines = (f"{masks[i].name}\t{masks[i].size}\n" for i in names)
        return cls(tuple(map(os.fspath, paths)), len(masks), _sha256(lines))

    @classmethod
    def merged(cls, sources: Sequence[Source]) -> Source:
        """Return the source of shards added up; its fingerprint hashes theirs, sorted."""
        return cls(
            tuple(path for source in sources for path in source.paths),
            sum(source.files for source in sources),
            _sha256(sorted(source.fingerprint + "\n" for source in sources)),
        )


def _sha256(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
    return "sha256:" + digest.hexdigest()


@dataclass
class ScanResult:
    """Everything a weight method or a report needs: the counts and how they were made.

    ``warnings`` are for people (the CLI shows them); they are not part of a report.
    """

    counts: ClassCounts
    spec: LabelSpec
    source: Source
    names: tuple[str | None, ...] | None = None
    warnings: tuple[str, ...] = ()


def scan(
    paths: Iterable[str | os.PathLike],
    spec: LabelSpec | None = None,
    *,
    pattern: str | None = None,
    regions: str | os.PathLike | None = None,
    options: ReadOptions = ReadOptions(),
    names: Sequence[str | None] | None = None,
    skip_errors: bool = False,
    strict: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Return the class counts of every mask under ``paths`` (see `masks.find_masks`).

    With ``regions``, a folder of region masks, only the pixels inside each mask's region
    count (`masks.pair_regions`). A mask that cannot be read raises `MaskError`, or with
    ``skip_errors`` is listed in ``counts.errors``. A value that may not occur (a label out of
    range, a colour missing from the colour map) raises `InputError` naming example files,
    or without ``strict`` is left in ``counts.unexpected``.
    """
    paths = list(paths)
    spec = spec or LabelSpec()
    if names is not None:
        if spec.num_classes is None:
            spec = replace(spec, num_classes=len(names))  # the names say how many classes
        elif spec.num_classes != len(names):
            raise ValueError(f"{len(names)} class names for {spec.num_classes} classes")
    # The workers are forked before the masks are listed, so that none holds a copy of the
    # list: their memory stays the same whatever the dataset's size.
    with Workers(workers) as pool:
        masks = find_masks(paths, pattern)
        if regions is not None:
            masks = pair_regions(masks, regions)
        counts = count_masks(
            masks, spec, options, skip_errors=skip_errors, workers=pool, progress=progress
        )
    problem = unexpected_summary(counts, spec)
    if problem and strict:
        raise InputError(problem)
    warnings = [sparse_label_hint(counts, spec)]
    lossy = sum(m.path.lower().endswith(LOSSY_SUFFIXES) for m in masks)
    if lossy:
        warnings.append(
            f"{lossy} of {len(masks)} masks are JPEG: lossy compression changes class ids "
            "along every edge; store masks as PNG"
        )
    return ScanResult(
        counts,
        spec,
        Source.of(paths, masks),
        names=tuple(names) if names is not None else None,
        warnings=tuple(w for w in warnings if w),
    )


def count_masks(
    masks: Sequence[MaskFile],
    spec: LabelSpec,
    options: ReadOptions = ReadOptions(),
    *,
    skip_errors: bool = False,
    workers: int | Workers | None = None,
    progress: Progress | None = None,
) -> ClassCounts:
    """Return the counts of ``masks``, summed over ``workers`` processes (a count, or running
    `Workers`).

    Counts are integer sums, so the result is the same whatever the worker count or order.
    """
    if not isinstance(workers, Workers):
        with Workers(workers) as pool:
            return count_masks(
                masks, spec, options, skip_errors=skip_errors, workers=pool, progress=progress
            )
    parallel = workers.count if len(masks) >= POOL_MIN_FILES else 1
    chunk = min(MAX_CHUNK, max(1, -(-len(masks) // (8 * parallel))))
    tasks = [
        (masks[i : i + chunk], spec, options, skip_errors) for i in range(0, len(masks), chunk)
    ]
    counts = ClassCounts.zeros(spec.num_classes or 0)
    done = 0
    if progress:
        progress(0, len(masks))
    for part in workers.map(_count_chunk, tasks, parallel):
        counts += part
        done += part.files + len(part.errors)
        if progress:
            progress(done, len(masks))
    return counts


def _count_chunk(task: tuple[Sequence[MaskFile], LabelSpec, ReadOptions, bool]) -> ClassCounts:
    masks, spec, options, skip_errors = task
    counts = ClassCounts.zeros(spec.num_classes or 0)
    histograms, paths = [], []
    for mask in masks:
        try:
            histogram = read_histogram(mask, options)
            if histogram.colour:  # classified now: without a colour map it is an error
                counts.add_mask(histogram, spec, mask.path)
            else:
                histograms.append(histogram)
                paths.append(mask.path)
        except MaskError as error:
            if not skip_errors:
                raise
            counts.errors.append((error.path, error.message))
    counts.add_masks(histograms, spec, paths)
    return counts


class Workers:
    """Worker processes for counting: forked on entering, ended on leaving.

    ``map`` runs in this process when a job is small or one worker is asked for: below
    `POOL_MIN_FILES` masks, a pool costs more than it saves.
    """

    def __init__(self, count: int | None = None) -> None:
        self.count = count or available_cores()
        self._pool = None

    def __enter__(self) -> Workers:
        if self.count > 1:
            # fork starts a worker in milliseconds with numpy already imported; elsewhere
            # (macOS, Windows) fork is unsafe or missing and the platform default is used.
            method = "fork" if sys.platform.startswith("linux") else None
            # Frozen, this process's objects are left alone by the workers' garbage
            # collector, so their pages stay shared instead of being copied into each worker.
            gc.freeze()
            try:
                self._pool = multiprocessing.get_context(method).Pool(
                    self.count, _ignore_interrupts
                )
            finally:
                gc.unfreeze()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def map(self, function: Callable, tasks: Sequence, parallel: int) -> Iterable:
        """Yield ``function`` of each task, in any order, on up to ``parallel`` processes."""
        if self._pool is None or parallel <= 1:
            return map(function, tasks)
        return self._pool.imap_unordered(function, tasks)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent alone handles it and ends the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def available_cores() -> int:
    """Return the number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
