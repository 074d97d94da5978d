"""The scan driver: a map-reduce over any `concurrent.futures.Executor`.

List the masks (lazily, in name order) -> cut the listing into tasks of many masks each ->
count each task wherever the executor runs it -> add the results up. Counts are integer sums,
so the result is the same whatever the executor, the worker count or the order tasks finish
in. The default executor is a process pool on this machine (none at all for a small job);
``scan(..., executor=...)`` takes any other: a thread pool, ``distributed.Client.get_executor()``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import hashlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain, islice
from numbers import Integral
from typing import TYPE_CHECKING

from . import sources
from ._callable import make_callable
from .counting import ClassCounts, LabelSpec, convention_error, unexpected_summary
from .errors import ClassWeightsError, InputError, MaskError
from .masks import (
    MAX_PIXELS,
    Histogram,
    MaskFile,
    ReadOptions,
    pair_regions,
    read_histogram,
)

if TYPE_CHECKING:
    from .cache import HistogramCache
    from .per_image import Row, TaskRows

#: ``progress(done, total)``: masks counted so far, out of the masks listed so far (the
#: listing streams, so ``total`` grows until it is complete).
Progress = Callable[[int, int], None]

#: Below this many files, workers cost more than they save: the scan runs in this process.
POOL_MIN_FILES = 64

#: Masks are classified together until they hold this many distinct values between them,
#: which keeps a worker's memory flat even for masks of thousands of instance ids.
BATCH_VALUES = 1 << 16

#: Largest task, in masks: a task's list of masks and its results stay small.
MAX_CHUNK = 256

#: Once the first tasks have been timed, a task is cut to take about this long: progress moves
#: at least that often and the workers finish together, while a task's messages (a fraction
#: of a millisecond) stay small next to its work.
TASK_SECONDS = 0.25

#: Tasks submitted and not yet added up, per worker: enough that no worker waits for its next
#: task, few enough that memory is bounded whatever the number of masks.
IN_FLIGHT = 2

#: How the local pool starts its workers; None: fork where it is safe (Linux, and this
#: process runs no other thread), else forkserver, else spawn. Tests set "spawn".
START_METHOD: str | None = None


@dataclass(frozen=True)
class Source:
    """What was scanned: the paths as given, the file count, a fingerprint of the file set,
    and, for a part of a sharded scan, which shard (``(index, count)``).

    The fingerprint is the sha256 of the sorted ``relative path<TAB>size`` lines, so it names
    the same dataset wherever it lies on disk.

    Parameters
    ----------
    paths : tuple of str
        The paths as given.
    files : int
        The masks found (counted or skipped).
    fingerprint : str
        ``sha256:`` and the hex digest.
    shard : tuple of (int, int), optional
        ``(index, count)`` of a sharded scan's part; None for a whole scan.
    """

    paths: tuple[str, ...]
    files: int
    fingerprint: str
    shard: tuple[int, int] | None = None

    @classmethod
    def of(
        cls,
        paths: Iterable[str | os.PathLike],
        masks: Sequence[MaskFile],
        shard: tuple[int, int] | None = None,
    ) -> Source:
        fingerprint = Fingerprint()
        for mask in sorted(masks, key=lambda m: m.name):
            fingerprint.add(mask)
        return cls(
            tuple(str(os.fspath(p)) for p in paths), fingerprint.files, fingerprint.value, shard
        )

    @classmethod
    def merged(cls, sources: Sequence[Source]) -> Source:
        """Return the source of shards added up; its fingerprint hashes theirs, sorted."""
        paths = [path for source in sources for path in source.paths]
        if all(source.shard for source in sources):  # parts of one listing: its paths once
            paths = list(dict.fromkeys(paths))
        return cls(
            tuple(paths),
            sum(source.files for source in sources),
            _sha256(sorted(source.fingerprint + "\n" for source in sources)),
        )


def _sha256(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "surrogateescape"))  # names that are not UTF-8
    return "sha256:" + digest.hexdigest()


class Fingerprint:
    """The fingerprint of `Source`, computed as the masks stream past in ascending name order:
    no list of them is kept."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._last: str | None = None
        self.files = 0

    def add(self, mask: MaskFile) -> None:
        if self._last is not None and mask.name < self._last:
            raise ValueError(f"masks must come in ascending name order: {mask.name!r} came late")
        self._last = mask.name
        self._digest.update(f"{mask.name}\t{mask.size}\n".encode("utf-8", "surrogateescape"))
        self.files += 1

    @property
    def value(self) -> str:
        return "sha256:" + self._digest.hexdigest()


def shard_of(name: str, count: int) -> int:
    """Return which of ``count`` shards holds the mask of relative path ``name``.

    The first 8 bytes of the sha256 of the UTF-8 name, as a big-endian integer, modulo
    ``count``: stable across machines and runs, and adding files moves no other file.
    """
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """Return ``shard`` as ``(index, count)``; raise ValueError unless 0 <= index < count."""
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be (index, count), not {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, not {shard!r}")
    return index, count


@dataclass(frozen=True)
class Reading:
    """The reading settings beyond the `LabelSpec` that change what is counted, kept in the
    report so that `report.merge` and ``check --baseline`` refuse counts made another way:
    the region folder (``--roi``), the ``.npz`` array, and ``--max-pixels`` when not the
    default (it decides which masks are refused)."""

    regions: str | None = None
    npz_key: str | None = None
    max_pixels: int | None = None

    @classmethod
    def of(cls, regions: str | os.PathLike | None, options: ReadOptions) -> Reading:
        max_pixels = None if options.max_pixels == MAX_PIXELS else options.max_pixels
        return cls(None if regions is None else os.fspath(regions), options.npz_key, max_pixels)


@dataclass
class ScanResult:
    """Everything a weight method or a report needs: the counts and how they were made.

    Parameters
    ----------
    counts : ClassCounts
        The per-class sums.
    spec : LabelSpec
        How raw values became class ids.
    source : Source
        What was scanned.
    names : tuple of str or None, optional
        Class names, one per class id.
    warnings : tuple of str
        For people (the CLI shows them); they are not part of a report.
    reading : Reading
        The reading settings beyond ``spec`` that change what is counted (``--roi``...).
    sample : dict, optional
        For a report of a random sample, how it was drawn; None for a full scan.
    """

    counts: ClassCounts
    spec: LabelSpec
    source: Source
    names: tuple[str | None, ...] | None = None
    warnings: tuple[str, ...] = ()
    reading: Reading = Reading()
    #: A report of a random sample (`intervals.scan_sample`): how it was drawn; None for a
    #: full scan. Kept by `report.load`, so that `report.merge` can refuse it.
    sample: dict | None = None


def scan(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    spec: LabelSpec | None = None,
    *,
    pattern: str | None = None,
    regions: str | os.PathLike | None = None,
    pair_key: str | None = None,
    options: ReadOptions = ReadOptions(),
    names: Sequence[str | None] | None = None,
    skip_errors: bool = False,
    strict: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
    executor: cf.Executor | None = None,
    shard: tuple[int, int] | None = None,
    cache: str | os.PathLike | None = None,
    rows: Callable[[Sequence[Row]], None] | None = None,
    select: Callable[[list[MaskFile]], list[MaskFile]] | None = None,
) -> ScanResult:
    """Return the class counts of every mask under ``paths`` (see `sources.iter_masks`).

    Parameters
    ----------
    paths : str, os.PathLike or an iterable of them
        Folders, files, globs, URLs, archives or Parquet files of masks; one str is one path.
    spec : LabelSpec, optional
        How raw values become class ids [default: ``LabelSpec()``, ids as they are].
    pattern : str, optional
        A glob that the masks' paths, relative to each folder, must match.
    regions
        A folder of region masks: only the pixels inside each mask's region count
        (`masks.pair_regions`).
    skip_errors
        A mask that cannot be read raises `MaskError`, or with ``skip_errors`` is listed in
        ``counts.errors``.
    strict
        A value that may not occur (a label out of range, a colour missing from the colour
        map) raises `InputError` naming example files, or without ``strict`` is left in
        ``counts.unexpected``.
    workers
        Processes of the local pool [default: all cores]; with ``executor``, how many tasks it
        runs at once (it sizes the tasks). Masks in fsspec's ``memory://``, which lives in this
        process, are counted here without ``executor``.
    executor
        Where tasks run: any `concurrent.futures.Executor` (a process or thread pool,
        ``distributed.Client.get_executor()``); the caller starts and shuts it down.
        [default: a process pool of ``workers``, or this process for a small job].
    shard
        ``(index, count)``: scan only the masks that `shard_of` puts in shard ``index`` of
        ``count``; the merge of all ``count`` shards' reports is the whole scan's.
    cache
        An SQLite file of per-mask histograms (`cache.HistogramCache`): masks unchanged
        since they were cached are not read again.
    pair_key
        A regular expression whose one group is the sample id that pairs a mask with its
        region (`masks.sample_id`) [default: the file's stem].
    options : ReadOptions
        How masks are read: the ``.npz`` array, the pixel limit, fsspec storage options.
    names : sequence of str or None, optional
        Class names, one per class id; they set ``spec.num_classes`` when it is None.
    progress : callable, optional
        Called as ``progress(done, total)`` with the masks counted so far.
    rows
        Called with the per-image rows of the masks counted (`per_image.Row`), a batch at
        a time, in path order whatever the executor (not with ``cache``).
    select
        Picks the masks to count from the list of those found (a random sample,
        `intervals.reservoir`); the result's source then names those alone.

    Returns
    -------
    ScanResult
        The counts, the settings they were made with, and the scan's warnings.

    Raises
    ------
    MaskError
        A mask cannot be read (without ``skip_errors``).
    InputError
        No masks were found, or (with ``strict``) a value that may not occur.
    TypeError, ValueError
        An argument of the wrong type or out of its range (``workers`` of 0, ``names`` as a
        str, ``spec`` that is not a `LabelSpec`).
    """
    # One path is one path: a str is not iterated letter by letter.
    paths = [paths] if isinstance(paths, (str, bytes, os.PathLike)) else list(paths)
    paths = [os.fsdecode(p) for p in paths]  # TypeError for what is not a path
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, Integral)):
        raise TypeError(f"workers must be a whole number, not {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    spec = LabelSpec() if spec is None else spec
    if not isinstance(spec, LabelSpec):
        raise TypeError(f"spec must be a LabelSpec, not {type(spec).__name__}")
    if isinstance(names, str):  # a sequence of letters, each taken as a class name
        raise TypeError(f"names must be a sequence of class names, not the str {names!r}")
    if names is not None:
        if spec.num_classes is None:
            spec = replace(spec, num_classes=len(names))  # the names say how many classes
        elif spec.num_classes != len(names):
            raise ValueError(f"{len(names)} class names for {spec.num_classes} classes")
    if shard is not None:
        shard = check_shard(shard)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor, not {type(executor).__name__}"
        )
    if rows is not None and cache is not None:
        raise ValueError("rows and cache cannot go together: a cached mask is not read again")
    if executor is None and any(map(_in_this_process, [*paths, regions or ""])):
        # A worker started afresh would find that filesystem empty, and whether the pool can
        # fork is known only when it starts (listing a store may start a thread before).
        workers = 1
    listed = _list_masks(paths, pattern, regions, shard, options, pair_key, skip_errors)
    if select is not None:  # in name order again: the fingerprint's order
        listed = iter(sorted(select(list(listed)), key=lambda mask: mask.name))
    listing = _Listing(listed)
    warnings: list[str | None] = []
    with contextlib.ExitStack() as stack:
        store = None
        if cache is not None:
            from .cache import HistogramCache

            store = stack.enter_context(HistogramCache.open(cache, paths, options, shard))
            warnings += store.warnings
        counts = count_masks(
            listing,
            spec,
            options,
            skip_errors=skip_errors,
            workers=workers,
            executor=executor,
            progress=progress,
            cache=store,
            rows=rows,
        )
    problem = unexpected_summary(counts, spec)
    if problem and strict:
        raise InputError(problem)
    convention = convention_error(counts, spec)  # K inferred from ids that are no classes
    if convention and strict:
        raise convention
    warnings.append(convention.command_line() if convention else None)
    if counts.lossy:  # known by content: a JPEG named .png too
        warnings.append(
            f"{counts.lossy} of {listing.fingerprint.files} masks are JPEG: lossy compression "
            "changes class ids along every edge; store masks as PNG"
        )
    source = Source(
        tuple(str(os.fspath(p)) for p in paths),
        listing.fingerprint.files,
        listing.fingerprint.value,
        shard,
    )
    return ScanResult(
        counts,
        spec,
        source,
        names=tuple(names) if names is not None else None,
        warnings=tuple(w for w in warnings if w),
        reading=Reading.of(regions, options),
    )


def _list_masks(
    paths: list,
    pattern: str | None,
    regions: str | os.PathLike | None,
    shard: tuple | None,
    options: ReadOptions,
    pair_key: str | None = None,
    skip_errors: bool = False,
) -> Iterator[MaskFile]:
    """Yield the masks to scan, lazily, in ascending name order (the fingerprint's order)."""
    masks: Iterable[MaskFile] = sources.iter_masks(
        paths, pattern, storage_options=dict(options.storage_options), column=options.column
    )
    if regions is not None:
        masks = pair_regions(list(masks), regions, pair_key, skip_errors=skip_errors)
    if shard is not None:
        index, count = shard
        masks = (mask for mask in masks if shard_of(mask.name, count) == index)
    return iter(masks)


class _Listing:
    """The listing as it streams past: the fingerprint and what the warnings need, kept as
    running totals."""

    def __init__(self, masks: Iterator[MaskFile]) -> None:
        self._masks = masks
        self.fingerprint = Fingerprint()

    def __iter__(self) -> Iterator[MaskFile]:
        add = self.fingerprint.add
        for mask in self._masks:
            add(mask)
            yield mask


@dataclass(frozen=True)
class Task:
    """One unit of work: count ``masks``. Picklable, so that any executor can run it."""

    index: int
    masks: tuple[MaskFile, ...]
    spec: LabelSpec
    options: ReadOptions
    skip_errors: bool
    keep: bool = False  # send each mask's histogram back too (for the cache)
    per_image: bool = False  # send each mask's per-image row back too (`per_image.Row`)


@dataclass
class TaskResult:
    """What `count_task` gives back: the task's counts, ``index`` to put results in task
    order, and (when the task asked for them) each mask's histogram."""

    index: int
    counts: ClassCounts
    files: int
    histograms: list[tuple[MaskFile, Histogram]] | None = None
    rows: TaskRows | None = None
    seconds: float = 0.0  # how long the task took where it ran (`Pace`)


def count_task(task: Task) -> TaskResult:
    """Return the counts of one task's masks: the map step, run wherever the executor runs."""
    started = time.perf_counter()
    tally = _Tally(task.spec)
    kept: list[tuple[MaskFile, Histogram]] | None = [] if task.keep else None
    rows = None
    if task.per_image:  # per_image.py is imported only by the scans that ask for rows
        from .per_image import TaskRows

        rows = TaskRows(task.index)
    for mask in task.masks:
        try:
            histogram = read_histogram(mask, task.options)
            if rows is not None:  # per-image rows: the one hook, see per_image.py
                rows.add(mask, histogram, task.spec, task.options)
            tally.add(histogram, mask.path)
        except MaskError as error:
            tally.fail(error, task.skip_errors)
            continue
        if kept is not None:
            kept.append((mask, histogram))
    counts = tally.finish()
    seconds = time.perf_counter() - started
    return TaskResult(task.index, counts, len(task.masks), kept, rows, seconds)


class _Tally:
    """Counts masks given as histograms, classifying index masks in batches of bounded size."""

    def __init__(self, spec: LabelSpec) -> None:
        self.spec = spec
        self.counts = ClassCounts.zeros(spec.num_classes or 0)
        self._histograms: list[Histogram] = []
        self._paths: list[str] = []
        self._values = 0

    def add(self, histogram: Histogram, path: str) -> None:
        if histogram.colour and not self.spec.colors:  # an error, raised for this mask now
            self.counts.add_mask(histogram, self.spec, path)
            return
        self._histograms.append(histogram)
        self._paths.append(path)
        self._values += len(histogram.values)
        if self._values > BATCH_VALUES:
            self._flush()

    def fail(self, error: MaskError, skip_errors: bool) -> None:
        """Raise a mask's error, or with ``skip_errors`` list it in the counts' errors."""
        if not skip_errors:
            raise error
        self.counts.errors.append((error.path, error.message))

    def _flush(self) -> None:
        self.counts.add_masks(self._histograms, self.spec, self._paths)
        self._histograms, self._paths, self._values = [], [], 0

    def finish(self) -> ClassCounts:
        self._flush()
        return self.counts


def count_masks(
    masks: Iterable[MaskFile],
    spec: LabelSpec,
    options: ReadOptions = ReadOptions(),
    *,
    skip_errors: bool = False,
    workers: int | None = None,
    executor: cf.Executor | None = None,
    progress: Progress | None = None,
    cache: HistogramCache | None = None,
    rows: Callable[[Sequence[Row]], None] | None = None,
) -> ClassCounts:
    """Return the counts of ``masks`` (any iterable, consumed lazily), counted in tasks on
    ``executor`` (see `scan`; ``rows`` too).

    At most `IN_FLIGHT` tasks per worker are out at a time, so memory is bounded by the tasks
    in flight, never by the number of masks.
    """
    parallel = workers or getattr(executor, "_max_workers", None) or available_cores()
    listed = done = 0
    cached = _Tally(spec)

    def listing() -> Iterator[MaskFile]:
        nonlocal listed, done
        stream: Iterable = ((mask, None) for mask in masks)
        if cache is not None:
            stream = cache.lookup(masks)
        for mask, histogram in stream:
            listed += 1
            if histogram is None:
                yield mask
                continue
            try:
                cached.add(histogram, mask.path)
            except MaskError as error:  # a colour mask, cached in a run with a colour map
                cached.fail(error, skip_errors)
            done += 1
            if progress and done % MAX_CHUNK == 0:
                progress(done, listed)

    counts = ClassCounts.zeros(spec.num_classes or 0)
    in_order = None
    if rows:  # tasks finish in any order; rows go in order
        from .per_image import InOrder

        in_order = InOrder(rows)
    with contextlib.ExitStack() as stack:
        todo: Iterator[MaskFile] = listing()
        if executor is None:
            head = list(islice(todo, POOL_MIN_FILES if parallel > 1 else 0))
            if parallel > 1 and len(head) >= POOL_MIN_FILES:
                executor = stack.enter_context(local_executor(parallel))
            else:
                executor, parallel = InlineExecutor(), 1
            todo = chain(head, todo)
        pace = Pace()
        tasks = (
            Task(index, chunk, spec, options, skip_errors, cache is not None, rows is not None)
            for index, chunk in enumerate(_tasks(todo, parallel, pace))
        )
        for result in run_tasks(count_task, tasks, executor, in_flight=IN_FLIGHT * parallel):
            pace.add(result.seconds, result.files)
            counts += result.counts
            if in_order is not None and result.rows is not None:
                in_order.put(result.rows)
            done += result.files
            if cache is not None and result.histograms:
                cache.put(result.histograms)
            if progress:
                progress(done, listed)
    counts += cached.finish()
    if cache is not None:
        cache.finish()
    if progress:
        progress(done, listed)
    return counts


class Pace:
    """How long a mask takes to count, as the tasks finished so far measured it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.files = 0

    def add(self, seconds: float, files: int) -> None:
        self.seconds += seconds
        self.files += files

    def masks_in(self, seconds: float) -> int | None:
        """Return how many masks take about ``seconds`` (at least 1); None until a task has
        been timed."""
        if not self.files:
            return None
        if self.seconds <= 0:
            return MAX_CHUNK
        return max(1, int(seconds * self.files / self.seconds))


def _tasks(masks: Iterator, parallel: int, pace: Pace | None = None) -> Iterator[tuple]:
    """Cut a stream of masks into tasks.

    Sizes double from one mask (1, 1, 2, 2, 4, ... for two workers), so that a scan of large
    masks shows progress from its first mask, up to about `TASK_SECONDS` of work once
    ``pace`` has timed a task, and at most `MAX_CHUNK` masks. As the work runs out, tasks
    shrink (guided scheduling: a task is at most the remaining masks over ``2 * parallel``),
    so that the workers finish together. A task is cut as soon as the masks listed past it
    could fill ``2 * parallel`` tasks of its size, or the listing has ended: the first tasks
    start after a few masks are listed, the rest being listed while they are counted, and
    the look-ahead is at most ``2 * parallel * MAX_CHUNK`` masks.
    """
    window: deque = deque()
    made = 0
    for mask in chain(masks, [_END]):
        if mask is not _END:
            window.append(mask)
        while window:
            timed = pace.masks_in(TASK_SECONDS) if pace is not None else None
            # Doubles every `parallel` tasks; the shift is bounded by MAX_CHUNK's, not by `made`.
            doubled = 1 << min(made // parallel, MAX_CHUNK.bit_length())
            size = min(MAX_CHUNK, timed or MAX_CHUNK, doubled)
            if mask is not _END and len(window) < 2 * parallel * size:
                break  # not yet known whether the work runs out: list more masks first
            size = max(1, min(size, len(window) // (2 * parallel)))
            yield tuple(window.popleft() for _ in range(min(size, len(window))))
            made += 1


_END = object()


def run_tasks(
    function: Callable,
    tasks: Iterable,
    executor: cf.Executor,
    *,
    in_flight: int,
    ordered: bool = False,
) -> Iterator:
    """Yield ``function(task)`` for each task, run on ``executor``, as tasks finish (or, with
    ``ordered``, in task order).

    At most ``in_flight`` tasks are submitted and not yet yielded, held results included, so
    memory is bounded whatever the number of tasks. When the caller stops early (an error, a
    break, Ctrl-C), the tasks not started are cancelled. A worker that died raises one
    `ClassWeightsError` saying so.
    """
    tasks = iter(tasks)
    pending: dict[cf.Future, int] = {}
    held: dict[int, object] = {}
    submitted = yielded = 0
    try:
        while True:
            while len(pending) + len(held) < max(1, in_flight):
                task = next(tasks, _END)
                if task is _END:
                    break
                pending[_submit(executor, function, task)] = submitted
                submitted += 1
            if not pending:
                return
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in sorted(finished, key=pending.__getitem__):
                index = pending.pop(future)
                result = _result(future, executor)
                if not ordered:
                    yield result
                    continue
                held[index] = result
                while yielded in held:
                    yield held.pop(yielded)
                    yielded += 1
    finally:
        for future in pending:
            future.cancel()


def _submit(executor: cf.Executor, function: Callable, task: object) -> cf.Future:
    """Submit a task; a pool that a dead worker broke since the last one raises one line
    here too, not the pool's own error."""
    try:
        return executor.submit(function, task)
    except cf.BrokenExecutor:
        raise worker_died(_ending(executor)) from None


def _result(future: cf.Future, executor: cf.Executor) -> object:
    """Return a task's result, or raise its error; a worker that died is one line."""
    try:
        return future.result()
    except cf.BrokenExecutor:
        raise worker_died(_ending(executor)) from None
    except Exception as error:
        distributed = sys.modules.get("distributed")
        if distributed is not None and isinstance(error, distributed.KilledWorker):
            raise worker_died("a Dask worker died running it") from None
        raise


def worker_died(how: str | None) -> ClassWeightsError:
    """Return the error for a worker process that ended unexpectedly, ``how`` if known."""
    return ClassWeightsError(
        "a worker process ended unexpectedly"
        + (f" ({how})" if how else "")
        + "; run with workers=1 to see which mask it was reading"
    )


def _ending(executor: cf.Executor) -> str | None:
    """Return how a worker of a broken local pool ended (its signal, its exit status)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    # The pool sees a worker's pipe close a moment before the worker can be reaped; and it
    # ends the other workers with SIGTERM once one has died.
    deadline = time.monotonic() + 2
    while processes and time.monotonic() < deadline:
        for process in processes:
            code = process.exitcode
            if code is not None and code not in (0, -signal.SIGTERM):
                if code < 0:
                    name = signal.Signals(-code).name
                    return f"killed by {name}" + (", out of memory?" if name == "SIGKILL" else "")
                return f"exit status {code}"
        processes = [process for process in processes if process.exitcode is None]
        time.sleep(0.01)
    return None


class InlineExecutor(cf.Executor):
    """Runs each task in this process as it is submitted: the executor of small jobs, where
    starting workers costs more than they save."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


@contextlib.contextmanager
def local_executor(workers: int | None = None) -> Iterator[cf.ProcessPoolExecutor]:
    """Yield a process pool of ``workers`` processes [default: all cores] on this machine.

    Its workers start at once, before any task (forked, where that is safe, while this
    process's objects are frozen, so their pages stay shared instead of being copied into each
    worker by its garbage collector). On leaving by an error or Ctrl-C, the workers are ended
    even in the middle of a read that would never return.
    """
    context = _start_context()
    pool = cf.ProcessPoolExecutor(workers or available_cores(), context, _ignore_interrupts)
    try:
        gc.freeze()
        try:
            _result(pool.submit(os.getpid), pool)  # a fork start launches every worker here
        finally:
            gc.unfreeze()
        yield pool
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_context() -> multiprocessing.context.BaseContext:
    """Fork where it is safe (Linux, one thread: a fork copies no other thread's locks), else
    forkserver, else spawn."""
    if START_METHOD is not None:
        return multiprocessing.get_context(START_METHOD)
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _in_this_process(path: str | os.PathLike) -> bool:
    """Whether ``path`` is in fsspec's memory filesystem, which only this process (and the
    workers forked from it) can read."""
    return "memory://" in os.fsdecode(path)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent alone handles it and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def dask_executor(
    scheduler: str | None = None, workers: int | None = None
) -> Iterator[tuple[cf.Executor, int]]:
    """Yield a Dask executor and how many tasks it runs at once: a client of the cluster at
    ``scheduler`` (``tcp://HOST:PORT``), or of a local cluster of ``workers`` processes
    [default: all cores] started here and ended on leaving. Needs ``classweights[dask]``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("the Dask executor needs Dask: pip install 'classweights[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers or available_cores(),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            )
            address = cluster
        else:
            address = scheduler
        try:
            client = stack.enter_context(Client(address))
        except (OSError, ValueError) as error:
            raise InputError(f"{scheduler}: cannot reach the Dask scheduler: {error}") from None
        threads = sum(client.nthreads().values()) or 1
        yield client.get_executor(), workers or threads


def available_cores() -> int:
    """Return the number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# `classweights.scan(...)` calls `scan` and `classweights.scan` stays this module (_callable.py).
make_callable(__name__)
