"""Per-image statistics: one row per mask, written as it is counted, and read back.

A row holds what one mask contributes to the sums of `counting.ClassCounts`: its relative
path, its height and width, its ignored pixels and the pixels of each class it holds (sparse:
only the classes present). Summed over the rows, the pixels are the report's ``pixels``; the
classes a row holds give ``images``; and a row's size (its class pixels plus its ignored ones)
gives ``image_pixels``. So anything the report's sums give can be given per image, and more:
which classes each image holds (sampler weights, `sampling`) and how the sums vary from image
to image (bootstrap intervals, `intervals`).

Rows are made in the workers, one task at a time (`TaskRows`), and written in path order
(`InOrder`): a task's rows wait only until the tasks before it are written, so memory is
bounded by the tasks in flight, never by the dataset. Writers are chosen by the file's
extension from `WRITERS`; `read_rows` reads any of them back.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import numpy as np

from .counting import IGNORED, MAX_IMPLICIT_CLASSES, ClassCounts, LabelSpec, _in_table
from .errors import InputError
from .masks import Histogram, MaskFile, ReadOptions, mask_size

#: The columns of a per-image file, in order.
COLUMNS = ("path", "height", "width", "ignored", "pixels")


class Row(NamedTuple):
    """One mask's counts. ``pixels`` maps each class id it holds (ascending) to its pixels.

    ``height`` and ``width`` are the mask's first two dimensions (a volume's first slice);
    ``ignored`` the pixels it holds of ignored values. With a region mask (``--roi``) the
    counts are those inside the region. Values that may not occur (a label out of range) are
    in no class column: ``unexpected`` holds their pixels (only a scan without ``strict``
    makes such rows; a per-image file refuses them, `writing`).
    """

    path: str
    height: int
    width: int
    ignored: int
    pixels: dict[int, int]
    unexpected: int = 0

    @property
    def size(self) -> int:
        """Return the pixels counted in this mask, ignored and unexpected ones included (its
        image_pixels, as `counting.ClassCounts` counts them)."""
        return self.ignored + self.unexpected + sum(self.pixels.values())


def make_row(mask: MaskFile, histogram: Histogram, spec: LabelSpec, options: ReadOptions) -> Row:
    """Return the row of one mask, from its raw-value histogram (`masks.read_histogram`).

    Raises `MaskError` as `LabelSpec.classify` does (a colour mask without a colour map).
    """
    codes = spec._table[histogram.values] if _in_table(histogram) else None
    if codes is not None and not (codes < IGNORED).any():
        # The common case, as `ClassCounts.add_masks` takes it: one lookup, every value
        # a class or ignored. `LabelSpec.classify` costs as much again as decoding a small mask.
        labels, pixels = codes[codes >= 0], histogram.counts[codes >= 0]
        ignored = int(histogram.counts[codes == IGNORED].sum())
    else:
        labels, pixels, ignored, _ = spec.classify(histogram, mask.path)
    if labels.size > 1 and not (labels[1:] > labels[:-1]).all():
        # After a value map two raw values may share a class: sum them per class.
        labels, slot = np.unique(labels, return_inverse=True)
        pixels = np.bincount(slot.ravel(), weights=pixels).astype(np.int64)
    shape = histogram.shape or _png_size(mask.path) or mask_size(mask.path, options)
    height, width = (*shape, 1, 1)[:2]
    classes = dict(zip(labels.tolist(), pixels.tolist(), strict=True))
    unexpected = histogram.size - ignored - int(pixels.sum())
    return Row(mask.name, int(height), int(width), ignored, classes, unexpected)


#: A PNG's first 24 bytes: its signature, then the IHDR chunk's length, type, width, height.
_PNG_HEAD = struct.Struct(">8sI4sII")


def _png_size(path: str) -> tuple[int, int] | None:
    """Return a PNG's (height, width) from its header, None for any other file.

    Two orders of magnitude cheaper than opening the image with Pillow (`masks.mask_size`),
    which also keeps Pillow out of workers that never needed it.
    """
    try:
        with open(path, "rb", buffering=0) as file:
            head = file.read(_PNG_HEAD.size)
    except OSError:
        return None
    if len(head) < _PNG_HEAD.size:
        return None
    signature, _, kind, width, height = _PNG_HEAD.unpack(head)
    if signature != b"\x89PNG\r\n\x1a\n" or kind != b"IHDR":
        return None
    return height, width


@dataclass
class TaskRows:
    """The rows of one worker task, to be written after those of the tasks before it.

    ``index`` is the task's place in the file list; the task function adds a row per mask
    (`add`) and hands the whole back with its counts.
    """

    index: int
    rows: list[Row] = field(default_factory=list)

    def add(self, mask: MaskFile, histogram: Histogram, spec: LabelSpec, options: ReadOptions):
        """Add the row of one mask (see `make_row`)."""
        self.rows.append(make_row(mask, histogram, spec, options))


class InOrder:
    """Hands tasks' rows on in task order, whatever order the tasks finish in.

    A task that finishes early waits here until every task before it has been handed on: the
    rows held are those of tasks that finished ahead of a slower one, a few tasks' worth.
    """

    def __init__(self, consume: Callable[[Sequence[Row]], None]) -> None:
        self._consume = consume
        self._next = 0
        self._waiting: dict[int, list[Row]] = {}

    def put(self, part: TaskRows) -> None:
        """Take one task's rows, and hand on every task's rows that are now in order."""
        self._waiting[part.index] = part.rows
        while self._next in self._waiting:
            self._consume(self._waiting.pop(self._next))
            self._next += 1

    @property
    def waiting(self) -> int:
        """Return how many tasks' rows are held, waiting for an earlier task."""
        return len(self._waiting)


class RowWriter(Protocol):
    """Writes rows to an open file, in the order given."""

    def write(self, rows: Sequence[Row]) -> None: ...

    def close(self) -> None: ...


def _pixels_json(pixels: dict[int, int]) -> str:
    return json.dumps(pixels, separators=(",", ":"))


class _CsvWriter:
    """CSV with a header; ``pixels`` is ``class:pixels`` pairs, space-separated (``0:12 3:4``)."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(COLUMNS)

    def write(self, rows: Sequence[Row]) -> None:
        self._writer.writerows(
            (*row[:4], " ".join(f"{c}:{n}" for c, n in row.pixels.items())) for row in rows
        )

    def close(self) -> None:
        pass


class _JsonlWriter:
    """JSON Lines: one object per mask, keys as `COLUMNS`."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, rows: Sequence[Row]) -> None:
        self._out.writelines(
            f'{{"path":{json.dumps(row.path)},"height":{row.height},"width":{row.width},'
            f'"ignored":{row.ignored},"pixels":{_pixels_json(row.pixels)}}}\n'
            for row in rows
        )

    def close(self) -> None:
        pass


def has_parquet() -> bool:
    """Return whether pyarrow can be imported, without importing it."""
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


#: What to do when pyarrow is missing (said before a scan by the CLI, or when reading).
NO_PYARROW = "Parquet needs pyarrow: pip install 'classweights[parquet]', or use .csv or .jsonl"


def _parquet():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(NO_PYARROW) from None
    return pa, pq


class _ParquetWriter:
    """Parquet, one row group per task; ``pixels`` is a map<int32, int64>.

    pyarrow is imported on the first write, after the scan has forked its workers: its
    libraries (tens of MB) then stay out of every worker.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._writer: Any = None  # a pyarrow ParquetWriter, made at the first rows

    def _open(self) -> None:
        pa, pq = _parquet()
        self._pa = pa
        self._schema = pa.schema(
            [
                ("path", pa.string()),
                ("height", pa.int64()),
                ("width", pa.int64()),
                ("ignored", pa.int64()),
                ("pixels", pa.map_(pa.int32(), pa.int64())),
            ]
        )
        self._writer = pq.ParquetWriter(self._out, self._schema)

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._open()
        # No unexpected column: see `writing`.
        columns: list = list(zip(*rows, strict=True))[: len(COLUMNS)]
        columns[4] = [list(pixels.items()) for pixels in columns[4]]
        self._writer.write_table(self._pa.Table.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        if self._writer is None:  # no rows: a file with the schema alone
            self._open()
        self._writer.close()


class _Format(NamedTuple):
    binary: bool
    writer: Callable[[IO], RowWriter]
    reader: Callable[[str], Iterator[Row]]


def _read_csv(path: str) -> Iterator[Row]:
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise ValueError(f"its header is {header}, not {','.join(COLUMNS)}")
        for *fields, pairs in reader:
            pixels = dict(pair.split(":") for pair in pairs.split())
            yield _row(*fields, pixels)  # type: ignore[call-arg]  # four fields, checked by _row


def _read_jsonl(path: str) -> Iterator[Row]:
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                item = json.loads(line)
                yield _row(*(item[key] for key in COLUMNS))  # type: ignore[call-arg]


def _read_parquet(path: str) -> Iterator[Row]:
    _, pq = _parquet()
    for batch in pq.ParquetFile(path).iter_batches(columns=list(COLUMNS)):
        for fields in zip(*(batch.column(key).to_pylist() for key in COLUMNS), strict=True):
            yield _row(*fields[:4], dict(fields[4]))  # type: ignore[call-arg]


#: Largest count a row may hold: the sums are int64.
_MAX_COUNT = np.iinfo(np.int64).max


def _row(path, height, width, ignored, pixels) -> Row:
    """Return a row read from a file, its fields checked: sizes and counts are ints in int64,
    class ids in [0, `counting.MAX_IMPLICIT_CLASSES`), and a class a row holds has pixels.

    Raises ValueError naming the row and the value (`read_rows` makes it one `InputError`).
    """
    if not isinstance(pixels, dict):
        raise ValueError(f"pixels of {path} is not a mapping from class id to pixels")
    row = Row(
        str(path),
        int(height),
        int(width),
        int(ignored),
        {int(c): int(n) for c, n in pixels.items()},
    )
    for name, value in zip(COLUMNS[1:4], row[1:4], strict=True):
        if not 0 <= value <= _MAX_COUNT:
            raise ValueError(f"{path} has {name} {value}, not a count")
    for c, n in row.pixels.items():
        if not 0 <= c < MAX_IMPLICIT_CLASSES:
            raise ValueError(f"{path} has class id {c}, not in 0..{MAX_IMPLICIT_CLASSES - 1}")
        if not 0 < n <= _MAX_COUNT:
            # A row lists the classes a mask holds: 0 pixels would make it "hold" a class
            # it does not (repeat-factor counts holders, rare-class pixels).
            raise ValueError(f"{path} has {n} pixels of class {c}, not a positive count")
    if row.size > _MAX_COUNT:
        raise ValueError(f"{path} has {row.size} pixels in all, more than int64 holds")
    return row


#: Per-image file formats, by extension.
FORMATS: dict[str, _Format] = {
    ".csv": _Format(False, _CsvWriter, _read_csv),
    ".jsonl": _Format(False, _JsonlWriter, _read_jsonl),
    ".parquet": _Format(True, _ParquetWriter, _read_parquet),
}


def file_format(path: str | os.PathLike) -> str:
    """Return the extension of a per-image file; raise ValueError naming it if it is not one
    of `FORMATS`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"per_image {os.fspath(path)!r} must end in one of {', '.join(FORMATS)}, "
            "which says its format"
        )
    return suffix


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Callable[[Sequence[Row]], None]]:
    """Yield a function that writes rows to ``path`` (format by extension, `FORMATS`).

    The rows go to a temporary file beside ``path``, renamed over it when the block ends
    without an error: ``path`` is whole or untouched. A ``path`` that exists and is not a
    regular file (a link, a FIFO, a device) is refused with `InputError`.
    """
    kind = FORMATS[file_format(path)]
    path = Path(path)

    def write(rows: Sequence[Row]) -> None:
        for row in rows:
            if row.unexpected:  # the file has no column for them: it would not add up
                raise InputError(
                    f"{row.path}: {row.unexpected} pixels of values that may not occur; "
                    f"per-image rows in {path} hold counted and ignored pixels only"
                )
        writer.write(rows)

    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise InputError(f"{path}: not a regular file; will not write per-image rows over it")
    from .report import atomic_file

    text = {} if kind.binary else {"encoding": "utf-8", "newline": ""}
    with atomic_file(path, "wb" if kind.binary else "w", **text) as out:
        writer = kind.writer(out)
        yield write
        writer.close()


def read_rows(path: str | os.PathLike) -> Iterator[Row]:
    """Yield the rows of a per-image file, in file order.

    Raises `InputError` naming the file when it cannot be read or is not a per-image file.
    """
    reader = FORMATS[file_format(path)].reader
    try:
        yield from reader(os.fspath(path))
    except InputError:
        raise
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError, OverflowError) as error:
        reason = f"no {error.args[0]!r} field" if isinstance(error, KeyError) else error
        raise InputError(f"{path}: not a per-image file ({reason})") from None
    except Exception as error:  # pyarrow's errors: not a Parquet file, a bad footer
        if type(error).__module__.startswith("pyarrow"):
            raise InputError(f"{path}: not a per-image file ({error})") from None
        raise


@dataclass(frozen=True)
class Table:
    """Rows as sparse arrays: image ``image[j]`` holds ``pixels[j]`` pixels of ``label[j]``.

    ``sizes[i]`` is image i's counted pixels, ignored ones included; ``ignored[i]`` its
    ignored pixels.
    """

    paths: tuple[str, ...]
    sizes: np.ndarray
    ignored: np.ndarray
    image: np.ndarray
    label: np.ndarray
    pixels: np.ndarray

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Table:
        """Return the table of ``rows`` (any iterable: a list, `read_rows`)."""
        paths: list[str] = []
        sizes: list[int] = []
        ignored: list[int] = []
        image: list[int] = []
        label: list[int] = []
        pixels: list[int] = []
        for i, row in enumerate(rows):
            paths.append(row.path)
            sizes.append(row.size)
            ignored.append(row.ignored)
            image += [i] * len(row.pixels)
            label += row.pixels.keys()
            pixels += row.pixels.values()
        arrays = (np.array(a, np.int64) for a in (sizes, ignored, image, label, pixels))
        return cls(tuple(paths), *arrays)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        """Return the largest class id held + 1 (0 when no image holds a class)."""
        return int(self.label.max()) + 1 if self.label.size else 0

    def counts(self, num_classes: int | None = None) -> ClassCounts:
        """Return the sums of `counting.ClassCounts` over all the images (no errors, no
        unexpected values: rows hold neither)."""
        k = max(num_classes or 0, self.num_classes)
        return ClassCounts(
            np.bincount(self.label, weights=self.pixels, minlength=k).astype(np.int64),
            np.bincount(self.label, minlength=k).astype(np.int64),
            np.bincount(self.label, weights=self.sizes[self.image], minlength=k).astype(np.int64),
            files=len(self),
            ignored=int(self.ignored.sum()),
        )

    def dense(self, num_classes: int | None = None) -> np.ndarray:
        """Return the pixels as an (images, classes) int64 matrix."""
        k = max(num_classes or 0, self.num_classes)
        matrix = np.zeros((len(self), k), np.int64)
        matrix[self.image, self.label] = self.pixels
        return matrix
