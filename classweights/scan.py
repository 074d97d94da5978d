"""The scan driver: find the masks, count them on all cores, and say what was scanned."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .counting import ClassCounts, LabelSpec
from .errors import MaskError
from .masks import MaskFile, find_masks, read_histogram

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
        lines = []
        for mask in masks:
            try:
                lines.append(f"{mask.name}\t{os.path.getsize(mask.path)}\n")
            except OSError as error:
                raise MaskError(mask.path, f"cannot read mask: {error.strerror}") from None
        return cls(tuple(map(os.fspath, paths)), len(masks), _sha256(sorted(lines)))

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
    """Everything a weight method or a report needs: the counts and how they were made."""

    counts: ClassCounts
    spec: LabelSpec
    source: Source
    names: tuple[str | None, ...] | None = None


def scan(
    paths: Iterable[str | os.PathLike],
    spec: LabelSpec | None = None,
    *,
    pattern: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Return the class counts of every mask under ``paths`` (see `masks.find_masks`)."""
    paths = list(paths)
    spec = spec or LabelSpec()
    masks = find_masks(paths, pattern)
    source = Source.of(paths, masks)
    counts = count_masks([m.path for m in masks], spec, workers=workers, progress=progress)
    return ScanResult(counts, spec, source)


def count_masks(
    paths: Sequence[str],
    spec: LabelSpec,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ClassCounts:
    """Return the counts of the masks at ``paths``, summed over ``workers`` processes.

    Counts are integer sums, so the result is the same whatever the worker count or order.
    """
    workers = workers or available_cores()
    if len(paths) < POOL_MIN_FILES:
        workers = 1
    chunk = min(MAX_CHUNK, max(1, -(-len(paths) // (8 * workers))))
    tasks = [(paths[i : i + chunk], spec) for i in range(0, len(paths), chunk)]
    counts = ClassCounts.zeros(spec.num_classes or 0)
    done = 0
    if progress:
        progress(0, len(paths))
    with _mapper(min(workers, len(tasks))) as mapped:
        for part in mapped(_count_chunk, tasks):
            counts += part
            done += part.files
            if progress:
                progress(done, len(paths))
    return counts


def _count_chunk(task: tuple[Sequence[str], LabelSpec]) -> ClassCounts:
    paths, spec = task
    counts = ClassCounts.zeros(spec.num_classes or 0)
    for path in paths:
        values, pixels = read_histogram(path)
        counts.add_mask(values, pixels, spec, path)
    return counts


@contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """Yield a ``map`` that runs in this process, or over a pool of ``workers`` processes."""
    if workers <= 1:
        yield map
        return
    # fork starts a worker in milliseconds with numpy and Pillow already imported; elsewhere
    # (macOS, Windows) fork is unsafe or missing and the platform default is used.
    method = "fork" if sys.platform.startswith("linux") else None
    with multiprocessing.get_context(method).Pool(workers, _ignore_interrupts) as pool:
        yield pool.imap_unordered


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent alone handles it and ends the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def available_cores() -> int:
    """Return the number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
