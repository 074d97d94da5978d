"""The histogram cache (``--cache FILE``): each mask's raw-value histogram kept in SQLite, so a
re-scan reads only the masks that are new or changed.

A histogram is kept under the mask's relative path, where that path points (two folders under
one glob may each hold ``0001.png``) and the reading settings that change it (the ``.npz`` key,
the pixel limit, the region masks, the tool's version), with the file's size and version (its
modification time in nanoseconds, or an object store's ETag) to tell whether it is still the
file's. The label settings (map, ignore values, class count) are applied after the histogram,
so one cache serves any of them.

SQLite in WAL mode lets readers go on while one process writes; writes are short transactions
that wait for each other (a busy timeout), so runs that share a cache do not corrupt it. A
damaged SQLite file is rebuilt, with a warning; a file that is not SQLite, or an SQLite
database of another program, is refused and left as it is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from operator import attrgetter, itemgetter
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import InputError
from .masks import Histogram, MaskFile, ReadOptions
from .sources import location

#: How histograms are stored: little-endian int64, the values and then their counts.
_STORED = np.dtype("<i8")

#: The layout of the file; another one is rebuilt. (2: the pixels outside a region, kept;
#: 3: where each mask's path points, beside its relative path.)
SCHEMA = 3

#: How long a run waits for another that is writing, in seconds.
BUSY_TIMEOUT = 60

#: Histograms written per transaction, and vanished masks forgotten per statement.
WRITE_BATCH = 512

_CREATE = """
CREATE TABLE IF NOT EXISTS histograms (
    settings TEXT NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    size INTEGER NOT NULL,
    version TEXT NOT NULL,
    colour INTEGER NOT NULL,
    histogram BLOB NOT NULL,
    outside INTEGER NOT NULL,
    PRIMARY KEY (settings, name, location)
) WITHOUT ROWID
"""


class HistogramCache:
    """An open cache for one scan: `lookup` the listing, `put` what was read, `finish`.

    Use `HistogramCache.open`.
    """

    def __init__(self, path: Path, settings: str, in_scope, warnings: list[str]) -> None:
        self.path = path
        self.settings = settings
        self._in_scope = in_scope  # does a cached name belong to this scan's listing (shard)?
        self.warnings = warnings
        # Two connections: the listing is looked up in one long read, on a snapshot; writes
        # are short transactions of their own, which never upgrade that read.
        self._reader = _connect(path)
        self._writer = _connect(path)
        self._vanished: list[tuple[str, str]] = []  # (name, location)
        self._folders: dict[str, str] = {}  # the real paths of the masks' folders
        self._complete = False

    @classmethod
    @contextmanager
    def open(
        cls,
        path: str | os.PathLike,
        paths: Sequence[str | os.PathLike],
        options: ReadOptions,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[HistogramCache]:
        """Yield the cache at ``path`` for a scan of ``paths`` read with ``options``, creating
        it, or rebuilding it with a warning when it is damaged."""
        from .scan import shard_of

        path = Path(path)
        if path.exists() and not path.is_file():
            raise InputError(f"{path}: cannot use as a cache: not a regular file")
        if not _sqlite_or_empty(path):  # a report given for the cache by mistake: not wiped
            raise InputError(f"{path}: cannot use as a cache: not an SQLite file (left as it is)")
        warnings = []
        try:
            _prepare_waiting(path)
        except sqlite3.OperationalError as error:  # locked, unreadable: not damaged
            raise InputError(f"{path}: cannot open the cache: {error}") from None
        except sqlite3.DatabaseError as error:
            warnings.append(f"{path}: the cache was damaged ({error}); rebuilt it")
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            _prepare_waiting(path)
        except sqlite3.Error as error:
            raise InputError(f"{path}: cannot open the cache: {error}") from None
        except _Foreign:
            raise InputError(
                f"{path}: cannot use as a cache: an SQLite database of another program "
                "(its tables are left as they are)"
            ) from None

        def in_scope(name: str) -> bool:
            return shard is None or shard_of(name, shard[1]) == shard[0]

        cache = cls(path, _settings(paths, options), in_scope, warnings)
        try:
            yield cache
        finally:
            cache._reader.close()
            cache._writer.close()

    def lookup(self, masks: Iterable[MaskFile]) -> Iterator[tuple[MaskFile, Histogram | None]]:
        """Yield each mask with its cached histogram, or None when it must be read.

        ``masks`` come in ascending name order, and so do the cached rows: one pass over both
        (a merge join, a name's few masks matched by `sources.location`), in memory that does
        not grow with the number of masks. Cached masks of this scan's scope that the listing
        no longer holds are forgotten by `finish`.
        """
        rows = self._reader.execute(
            "SELECT name, location, size, version, colour, histogram, outside FROM histograms "
            "WHERE settings = ? ORDER BY name",
            (self.settings,),
        )
        cached = ((name, list(group)) for name, group in groupby(rows, key=itemgetter(0)))
        name, held = next(cached, (None, []))
        for listed, same in groupby(masks, key=attrgetter("name")):
            while name is not None and name < listed:
                self._forget(held)
                name, held = next(cached, (None, []))
            found = {}
            if name == listed:
                found = {row[1]: row for row in held}
                name, held = next(cached, (None, []))
            for mask in same:
                yield mask, _hit(mask, found.pop(location(mask.path, self._folders), None))
            self._forget(found.values())
        while name is not None:
            self._forget(held)
            name, held = next(cached, (None, []))
        rows.close()
        self._complete = True

    def _forget(self, rows: Iterable[tuple]) -> None:
        """Note cached masks the listing does not hold, if they are in this scan's scope."""
        self._vanished += [(row[0], row[1]) for row in rows if self._in_scope(row[0])]

    def put(self, histograms: Sequence[tuple[MaskFile, Histogram]]) -> None:
        """Keep the histograms of masks just read (those with a known version)."""
        rows = [
            (
                self.settings,
                mask.name,
                location(mask.path, self._folders),
                mask.size,
                _version(mask),
                int(histogram.colour),
                np.stack([histogram.values, histogram.counts]).astype(_STORED).tobytes(),
                histogram.outside,
            )
            for mask, histogram in histograms
            if mask.version and _storable(mask.name)
        ]
        self._write("INSERT OR REPLACE INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def finish(self) -> None:
        """Forget the masks that vanished, once the whole listing has been looked up."""
        if not self._complete:
            return
        rows = [(self.settings, name, where) for name, where in self._vanished]
        self._write(
            "DELETE FROM histograms WHERE settings = ? AND name = ? AND location = ?", rows
        )
        self._vanished = []

    def _write(self, statement: str, rows: list[tuple]) -> None:
        for start in range(0, len(rows), WRITE_BATCH):
            # IMMEDIATE: take the write lock first (waiting for another run's), commit at once.
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._writer.executemany(statement, rows[start : start + WRITE_BATCH])
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level None: no implicit transactions; each write says where its own begins.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)


def _storable(name: str) -> bool:
    """Whether SQLite can hold ``name`` as text (a file name undecodable as UTF-8 cannot)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _sqlite_or_empty(path: Path) -> bool:
    """Whether ``path`` is missing, empty or begins as every SQLite file does: a damaged cache
    is rebuilt, any other file left alone."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE))
    except OSError:  # not there; or unreadable, which SQLite says as for any cache
        return True
    return not head or head == _SQLITE


#: The first bytes of every SQLite database file.
_SQLITE = b"SQLite format 3\x00"


class _Foreign(Exception):
    """The file is an SQLite database of another program."""


def _prepare_waiting(path: Path) -> None:
    """`_prepare`, again while another run holds the file: a switch to WAL, theirs or ours,
    says "locked" at once, without the busy timeout's wait."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            return _prepare(path)
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _prepare(path: Path) -> None:
    """Create the cache, or check an existing one; raise `sqlite3.DatabaseError` if damaged,
    `_Foreign` if it is another program's database."""
    db = _connect(path)
    try:
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        _refuse_foreign(db)  # before anything of it is changed, its journal mode first
        # WAL before the table: readers go on while one run writes (the switch waits for no
        # other run's transaction, which a switch after the table's could deadlock with).
        db.execute("PRAGMA journal_mode = WAL")
        # One transaction: a run that starts meanwhile sees no table without its version.
        db.execute("BEGIN IMMEDIATE")
        try:
            _refuse_foreign(db)
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
                db.execute("DROP TABLE IF EXISTS histograms")  # another layout, or half made
                db.execute(_CREATE)
                db.execute(f"PRAGMA user_version = {SCHEMA}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def _refuse_foreign(db: sqlite3.Connection) -> None:
    """Raise `_Foreign` unless the database is empty or holds a cache's table alone, of a
    layout this program wrote (`SCHEMA` and those before), or left half made without a version
    (by a run stopped between making it and setting the version, before both were one
    transaction)."""
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
    if not tables:
        return
    version = db.execute("PRAGMA user_version").fetchone()[0]
    columns = {row[1] for row in db.execute("PRAGMA table_info(histograms)")}
    ours = {"settings", "name", "histogram"} <= columns and 0 <= version <= SCHEMA
    if tables != ["histograms"] or not ours:
        raise _Foreign


def _settings(paths: Sequence[str | os.PathLike], options: ReadOptions) -> str:
    """Return the key of everything besides the file itself that changes a histogram."""
    roots = [os.path.abspath(p) if os.path.exists(p) else os.fspath(p) for p in paths]
    return json.dumps(
        {
            "classweights": __version__,
            "paths": roots,
            "npz_key": options.npz_key,
            "max_pixels": options.max_pixels,
        },
        sort_keys=True,
    )


def _version(mask: MaskFile) -> str:
    """Return the version of a mask and, when it has one, of its region mask."""
    if mask.error is not None:
        return ""  # the listing refused it (no region mask): never a hit, never kept
    if mask.region is None:
        return mask.version
    try:
        stat = os.stat(mask.region)
    except OSError:
        return ""  # read it, and let reading say what is wrong
    return f"{mask.version} region {mask.region} {stat.st_size} {stat.st_mtime_ns}"


def _hit(mask: MaskFile, row: tuple | None) -> Histogram | None:
    """Return the histogram cached in ``row`` if it is still the mask's: same size, same
    version (and a mask without a version is always read)."""
    if row is None or not mask.version or (row[2], row[3]) != (mask.size, _version(mask)):
        return None
    return _histogram(row)


def _histogram(row: tuple) -> Histogram | None:
    """Return the histogram stored in a row; None (read the mask again) for bytes that are not
    values and counts, a row written over by something else."""
    blob = row[5]
    if not isinstance(blob, bytes) or len(blob) % (2 * _STORED.itemsize):
        return None
    # The values, then their counts. No copy on a little-endian machine: read-only views of
    # the row's bytes.
    values, counts = np.frombuffer(blob, _STORED).astype(np.int64, copy=False).reshape(2, -1)
    return Histogram(values, counts, bool(row[4]), outside=row[6])
