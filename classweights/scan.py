"""The scan driver: find the masks, count them on all cores, and say what was scanned."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pickle
import select
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from .counting import ClassCounts, LabelSpec, sparse_label_hint, unexpected_summary
from .errors import ClassWeightsError, InputError, MaskError
from .masks import (
    LOSSY_SUFFIXES,
    MaskFile,
    ReadOptions,
    find_masks,
    pair_regions,
    read_histogram,
)
from .per_image import InOrder, Row, TaskRows

#: ``progress(done, total)``: files counted so far, out of how many.
Progress = Callable[[int, int], None]

#: Below this many files, workers cost more than they save.
POOL_MIN_FILES = 64

#: Masks are classified together until they hold this many distinct values between them,
#: which keeps a worker's memory flat even for masks of thousands of instance ids.
BATCH_VALUES = 1 << 16

#: Workers are forked on Linux; fork is missing on Windows and unsafe on macOS.
FORK = sys.platform.startswith("linux")

#: Largest and smallest share of the file list one worker task takes; tasks are few and
#: results small, so no message crosses between processes per file.
MAX_CHUNK, MIN_CHUNK = 256, 16


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
    rows: Callable[[Sequence[Row]], None] | None = None,
    select: Callable[[list[MaskFile]], list[MaskFile]] | None = None,
) -> ScanResult:
    """Return the class counts of every mask under ``paths`` (see `masks.find_masks`).

    With ``regions``, a folder of region masks, only the pixels inside each mask's region
    count (`masks.pair_regions`). A mask that cannot be read raises `MaskError`, or with
    ``skip_errors`` is listed in ``counts.errors``. A value that may not occur (a label out of
    range, a colour missing from the colour map) raises `InputError` naming example files,
    or without ``strict`` is left in ``counts.unexpected``.

    ``rows``, when given, is called with the per-image rows of the masks counted
    (`per_image.Row`), a batch at a time, in path order whatever the worker count.
    ``select``, when given, picks the masks to count from those found (a random sample,
    `intervals.reservoir`); the result's source then names those alone.
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
        if select is not None:
            masks = select(masks)
        counts = count_masks(
            masks,
            spec,
            options,
            skip_errors=skip_errors,
            workers=pool,
            progress=progress,
            rows=rows,
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
    rows: Callable[[Sequence[Row]], None] | None = None,
) -> ClassCounts:
    """Return the counts of ``masks``, summed over ``workers`` processes (a count, or running
    `Workers`); ``rows``: see `scan`.

    Counts are integer sums, so the result is the same whatever the worker count or order.
    """
    if not isinstance(workers, Workers):
        with Workers(workers) as pool:
            return count_masks(
                masks,
                spec,
                options,
                skip_errors=skip_errors,
                workers=pool,
                progress=progress,
                rows=rows,
            )
    parallel = workers.count if len(masks) >= POOL_MIN_FILES else 1
    tasks = [
        (masks[share], spec, options, skip_errors, TaskRows(index) if rows else None)
        for index, share in enumerate(_shares(len(masks), parallel))
    ]
    in_order = InOrder(rows) if rows else None  # tasks finish in any order; rows go in order
    counts = ClassCounts.zeros(spec.num_classes or 0)
    done = 0
    if progress:
        progress(0, len(masks))
    for part, task_rows in workers.map(_count_chunk, tasks, parallel):
        counts += part
        if in_order:
            in_order.put(task_rows)
        done += part.files + len(part.errors)
        if progress:
            progress(done, len(masks))
    return counts


def _shares(count: int, parallel: int) -> Iterator[slice]:
    """Split ``count`` masks into tasks that shrink as the work runs out (guided scheduling):
    large ones first, for few messages; small ones last, so that the workers finish together."""
    start = 0
    while start < count:
        size = min(MAX_CHUNK, max(MIN_CHUNK, (count - start) // (2 * parallel)))
        yield slice(start, start + size)
        start += size


def _count_chunk(
    task: tuple[Sequence[MaskFile], LabelSpec, ReadOptions, bool, TaskRows | None],
) -> tuple[ClassCounts, TaskRows | None]:
    masks, spec, options, skip_errors, rows = task
    counts = ClassCounts.zeros(spec.num_classes or 0)
    histograms, paths, values = [], [], 0
    for mask in masks:
        try:
            histogram = read_histogram(mask, options)
            if rows is not None:  # per-image rows (issue 12): the one hook, see per_image.py
                rows.add(mask, histogram, spec, options)
            if histogram.colour:  # classified now: without a colour map it is an error
                counts.add_mask(histogram, spec, mask.path)
                continue
        except MaskError as error:
            if not skip_errors:
                raise
            counts.errors.append((error.path, error.message))
            continue
        histograms.append(histogram)
        paths.append(mask.path)
        values += len(histogram.values)
        if values > BATCH_VALUES:
            counts.add_masks(histograms, spec, paths)
            histograms, paths, values = [], [], 0
    counts.add_masks(histograms, spec, paths)
    return counts, rows


class Workers:
    """Worker processes for counting: started on entering, ended on leaving.

    ``map`` runs in this process when a job is small or one worker is asked for: below
    `POOL_MIN_FILES` masks, workers cost more than they save.

    On Linux each worker is forked and fed through a pipe each way, one pickled task or
    result at a time: they start in 3 ms, where multiprocessing's Pool takes 20 ms to import
    and start, a tenth of a scan of 2,000 small masks. Where fork is missing (Windows) or
    unsafe (macOS), multiprocessing's Pool is used.
    """

    def __init__(self, count: int | None = None) -> None:
        self.count = count or available_cores()
        self._children: list[_Child] = []
        self._pool = None

    def __enter__(self) -> Workers:
        try:
            self._start()
        except BaseException:  # a fork that failed, Ctrl-C: end the workers started so far
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        if self.count > 1:
            # Frozen, this process's objects are left alone by the workers' garbage
            # collector, so their pages stay shared instead of being copied into each worker.
            gc.freeze()
            try:
                if FORK:
                    for _ in range(self.count):
                        self._children.append(_Child(self._children))
                else:
                    import multiprocessing

                    self._pool = multiprocessing.get_context().Pool(self.count, _ignore_interrupts)
            finally:
                gc.unfreeze()

    def __exit__(self, *exc_info: object) -> None:
        for child in self._children:
            child.end()
        self._children = []
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def map(self, function: Callable, tasks: Sequence, parallel: int) -> Iterable:
        """Yield ``function`` of each task, in any order, on up to ``parallel`` processes."""
        if parallel <= 1 or not (self._children or self._pool):
            return map(function, tasks)
        if self._pool is not None:
            return self._pool.imap_unordered(function, tasks)
        return self._dispatch(function, iter(tasks), self._children[:parallel])

    def _dispatch(self, function: Callable, tasks: Iterator, children: list[_Child]) -> Iterator:
        """Yield results as workers finish, giving each the next task as it hands one back."""
        working: dict[int, _Child] = {}
        ready = select.poll()  # select() stops at descriptor 1024; a host may hold more

        def give(child: _Child) -> None:
            task = next(tasks, _DONE)
            if task is not _DONE:
                child.send(function, task)
                working[child.results.fileno()] = child
                ready.register(child.results, select.POLLIN)

        try:
            for child in children:
                give(child)
            while working:
                for descriptor, _ in ready.poll():
                    child = working.pop(descriptor)
                    ready.unregister(descriptor)
                    result = child.receive()
                    give(child)  # first: the worker goes on while this process adds it up
                    yield result
        finally:
            # A worker still busy when the map stops early (an error, the caller's break)
            # would hand its result to the next map, and one that died is of no more use.
            for child in [c for c in children if c in working.values() or not c.pid]:
                child.end()
                self._children.remove(child)


_DONE = object()


class _Child:
    """A forked worker: it reads (function, task) pairs from one pipe and writes (ok, result
    or error) to the other, until it is ended."""

    def __init__(self, siblings: list[_Child]) -> None:
        task_out, task_in = os.pipe()
        result_out, result_in = os.pipe()
        try:
            self.pid = os.fork()
        except BaseException:
            for descriptor in (task_out, task_in, result_out, result_in):
                os.close(descriptor)
            raise
        if self.pid == 0:
            try:
                # Only the parent may hold the siblings' pipes: a worker's crash must reach
                # the parent as the end of its result pipe.
                for sibling in siblings:
                    sibling.tasks.close()
                    sibling.results.close()
                os.close(task_in)
                os.close(result_out)
                _serve(os.fdopen(task_out, "rb"), os.fdopen(result_in, "wb"))
            finally:
                os._exit(0)  # never back into the parent's code
        os.close(task_out)
        os.close(result_in)
        self.tasks = os.fdopen(task_in, "wb")
        self.results = os.fdopen(result_out, "rb")

    def send(self, function: Callable, task: object) -> None:
        try:
            pickle.dump((function, task), self.tasks, pickle.HIGHEST_PROTOCOL)
            self.tasks.flush()
        except BrokenPipeError:
            raise self._ended() from None

    def receive(self) -> object:
        """Return the worker's result, or raise its error."""
        try:
            ok, value = pickle.load(self.results)
        except EOFError:
            raise self._ended() from None
        if not ok:
            raise value
        return value

    def _ended(self) -> ClassWeightsError:
        """Reap a worker that ended on its own (a crash, the kernel's out-of-memory killer)."""
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return ClassWeightsError(
            f"a worker process ended unexpectedly ({_ending(status)}); "
            "run with --workers 1 to see which mask it was reading"
        )

    def end(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # what a dead worker was not sent
            self.tasks.close()
        self.results.close()
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)  # idle, or still reading when Ctrl-C came
            os.waitpid(self.pid, 0)


def _serve(tasks: BinaryIO, results: BinaryIO) -> None:
    _ignore_interrupts()
    while True:
        function, task = pickle.load(tasks)
        try:
            reply = (True, function(task))
        except Exception as error:
            reply = (False, error)
        try:
            message = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # say what went wrong rather than die silently
            message = pickle.dumps((False, RuntimeError(f"a worker cannot send back: {error}")))
        results.write(message)
        results.flush()


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return f"killed by {name}" + (", out of memory?" if name == "SIGKILL" else "")
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent alone handles it and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def available_cores() -> int:
    """Return the number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
