"""Where masks live: listing them, and reading their bytes in any process.

A PATH is a local folder, file or glob; any fsspec URL (``s3://``, ``gs://``, ``az://``,
``hf://``, ``https://``, ``memory://``, ``file://``); a ``.tar``, ``.tar.gz``, ``.tgz`` or
``.zip`` archive (local or remote), read as a folder, so WebDataset shards are folders of
samples; or a ``.parquet`` file whose image column holds masks (one a row), as Hugging Face
datasets store them. Local paths keep a fast path of their own: ``os.scandir`` and a plain
read, no fsspec.

Listing gives each mask's name (relative path) and size, as a local disk would, so the same
files give the same fingerprint wherever they are. Masks come out in ascending order of name
across all paths, folder by folder, so that a listing of millions of files is never held
whole. A mask's ``path`` says where to read it: a local path, a URL, ``tar://MEMBER::ARCHIVE``
(fsspec's chained form) or ``FILE.parquet#ROW``.
"""

from __future__ import annotations

import glob
import heapq
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatch
from operator import itemgetter
from pathlib import Path
from stat import S_ISREG
from typing import Any

from .errors import ClassWeightsError, InputError, MaskError
from .masks import MASK_SUFFIXES, MaskFile, ReadOptions, read_file, read_range

#: The archives read as folders, and the compression fsspec reads each through.
ARCHIVES = {".tar": ("tar", None), ".tar.gz": ("tar", "gzip"), ".tgz": ("tar", "gzip"),
            ".zip": ("zip", None)}  # fmt: skip

#: A protocol's package and the extra that installs it.
PACKAGES = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "adl": ("adlfs", "azure"),
    "hf": ("huggingface_hub", "hf"),
}

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
_MEMBER = re.compile(r"^(tar|zip)://(.*)::(.+)$", re.S)
_ROW = re.compile(r"^(.+\.parquet)#(\d+)$", re.S | re.I)


class FrozenDict(dict):
    """A dict that can be hashed: a nested storage option (``client_kwargs``) inside the
    frozen `ReadOptions`. It is still a dict to whatever fsspec hands it to."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def freeze(options: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Return storage options as `ReadOptions.storage_options` holds them: sorted pairs,
    nested dicts as `FrozenDict`, lists as tuples (``dict(...)`` gives the fsspec kwargs)."""

    def frozen(value: Any) -> Any:
        if isinstance(value, Mapping):
            return FrozenDict({k: frozen(v) for k, v in value.items()})
        if isinstance(value, (list, tuple)):
            return tuple(frozen(v) for v in value)
        return value

    return tuple(sorted((str(k), frozen(v)) for k, v in (options or {}).items()))


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """Return ``KEY=VALUE`` pairs as fsspec storage options: a value is JSON where it parses
    (``anon=true``, ``retries=3``), else a string; a dotted key fills a nested dict
    (``client_kwargs.endpoint_url=http://...``). Raises ValueError on a pair without ``=``."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, last = key.split(".")
        into = options
        for parent in parents:
            into = into.setdefault(parent, {})
            if not isinstance(into, dict):
                raise ValueError(f"{pair!r}: {parent} is already set to a value")
        into[last] = value
    return options


def is_local(path: str) -> bool:
    """Return whether a mask's path is a plain local file (read without fsspec)."""
    return "://" not in path and ("#" not in path or _ROW.match(path) is None)


def location(path: str, folders: dict[str, str] | None = None) -> str:
    """Return where a mask's path points, the same from any working directory and through
    linked folders: a local file, or the local archive or Parquet file that holds a member or
    a row, in its folder's real path; a URL as it is. Two masks of one name (``a/m.png`` and
    ``b/m.png`` under a glob) differ here. A link to a file is not followed: git-annex and DVC
    link masks of equal bytes to one stored object, and each is a mask of its own.

    ``folders``, when given, keeps the real paths of the folders met, for one listing.
    """
    member = _MEMBER.match(path)
    if member:
        return f"{member.group(1)}://{member.group(2)}::{location(member.group(3), folders)}"
    row = _ROW.match(path)
    if row:
        return f"{location(row.group(1), folders)}#{row.group(2)}"
    if _URL.match(path):
        return path
    folder, name = os.path.split(os.path.abspath(path))
    if folders is None:
        return os.path.join(os.path.realpath(folder), name)
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    return os.path.join(folders[folder], name)


def leaf(path: str) -> str:
    """Return the part of a mask's path whose extension says its format: the member of an
    archive; nothing for a Parquet row (its bytes are an encoded image)."""
    if "://" in path or "#" in path:
        member = _MEMBER.match(path)
        if member:
            return member.group(2)
        if _ROW.match(path):
            return ""
    return path


# -- listing ----------------------------------------------------------------------------------


def iter_masks(
    paths: Iterable[str | os.PathLike],
    pattern: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    column: str | None = None,
) -> Iterator[MaskFile]:
    """Yield every mask under ``paths`` (local paths, globs, fsspec URLs, archives, Parquet
    files), without repeats, in ascending order of `MaskFile.name` across all paths (Python
    str order), lazily: memory does not grow with the number of files.

    Folders are searched recursively, following links but never into a loop; ``pattern`` (a
    glob on the file name, or on the relative path when it holds a ``/``) narrows what counts
    there, else `MASK_SUFFIXES` do. Hidden files are left out. ``storage_options`` go to
    every fsspec filesystem; ``column`` names a Parquet file's image column. Raises
    `InputError`, one line naming the path, when a path cannot be listed or holds no masks.
    """
    names = [str(os.fspath(p)) for p in paths]
    options = dict(storage_options or {})
    streams = [_expand(arg, pattern, options, column) for arg in names]
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=itemgetter(1))
    # Repeats are the same path given twice (masks/ and masks/a.png, or through a linked
    # folder), not two links to one file: git-annex and DVC link identical masks to one
    # stored object. One path alone cannot repeat: no set of every path is kept then.
    seen: set[str] | None = set() if len(names) > 1 else None
    folders: dict[str, str] = {}
    found = False
    for mask in merged:
        if seen is not None:
            where = location(mask.path, folders)
            if where in seen:
                continue
            seen.add(where)
        found = True
        yield mask
    if not found:
        narrowed = f" matching {pattern!r}" if pattern else ""
        raise InputError(f"{', '.join(names) or 'no paths'}: no masks found{narrowed}")


def _expand(
    arg: str, pattern: str | None, options: dict[str, Any], column: str | None
) -> Iterator[MaskFile]:
    """Yield the masks that one PATH names, in order of name."""
    if _URL.match(arg) and not arg.startswith("file://"):
        return _expand_url(arg, pattern, options, column)
    if arg.startswith("file://"):
        arg = arg[len("file://") :]
    if _container(arg) and os.path.isfile(arg):
        return _contents(arg, pattern, options, column)
    if os.path.isdir(arg):
        return walk(arg, pattern)
    if os.path.lexists(arg):  # a file; a FIFO or a device, refused; a dangling link
        mask = _local_file(arg, Path(arg).name)
        return iter([mask] if mask else [])
    if glob.has_magic(arg):
        return _local_glob(arg, pattern, options, column)
    raise InputError(f"{arg}: no such file or directory")


def _local_glob(
    arg: str, pattern: str | None, options: dict[str, Any], column: str | None
) -> Iterator[MaskFile]:
    # Names are relative to the part of the glob before its first wildcard; a folder that
    # matches gives names relative to itself. glob lists every match at once anyway.
    fixed = Path(*_until_magic(Path(arg).parts))
    streams: list[Iterator[MaskFile]] = []
    files: list[MaskFile] = []
    for match in sorted(glob.glob(arg, recursive=True)):
        if _container(match) and os.path.isfile(match):
            streams.append(_contents(match, pattern, options, column))
        elif os.path.isdir(match):
            streams.append(walk(match, pattern))
        elif not Path(match).name.startswith("."):
            mask = _local_file(match, Path(os.path.relpath(match, fixed)).as_posix())
            if mask is not None:
                files.append(mask)
    files.sort(key=itemgetter(1))
    return heapq.merge(iter(files), *streams, key=itemgetter(1))


def _until_magic(parts: tuple[str, ...]) -> Iterable[str]:
    for part in parts[:-1]:
        if glob.has_magic(part):
            return
        yield part


def _local_file(
    path: str,
    name: str,
    in_folder: bool = False,
    status: Callable[[], os.stat_result] | None = None,
) -> MaskFile | None:
    """Return the mask at a local ``path``; None for a FIFO, device or socket found in a
    folder, which is passed over (reading one may never end), and `MaskError` for one named
    directly. A dangling link is listed: reading it fails and says why."""
    try:
        found = status() if status else os.stat(path)
    except OSError:  # a dangling link, a link loop
        return MaskFile(path, name, 0)
    if not S_ISREG(found.st_mode):
        if in_folder:
            return None
        raise MaskError(path, "is not a regular file")
    return MaskFile(path, name, found.st_size, version=str(found.st_mtime_ns))


def _wanted(pattern: str | None) -> Callable[[str, str], bool]:
    """Return whether a file counts, by its name and its path relative to the folder."""
    if pattern is None:
        return lambda name, relative: name.lower().endswith(MASK_SUFFIXES)
    if "/" in pattern:
        return lambda name, relative: fnmatch(relative, pattern)
    return lambda name, relative: fnmatch(name, pattern)


def walk(root: str, pattern: str | None = None) -> Iterator[MaskFile]:
    """Yield the masks in a local folder, recursively, in order of relative name.

    Each folder's entries are sorted with a folder's name taken as ``name/``: a depth-first
    walk in that order gives the relative names in str order, one folder held at a time. The
    folders being walked are a stack, not a recursion, so a thousand nested folders walk too.
    """
    wanted = _wanted(pattern)
    visited: set[tuple[int, int]] = set()  # folders, not files: small

    def entries(path: str) -> Iterator[str]:
        # Names only, each folder's ending in "/": a folder of 20,000 masks held as its
        # DirEntry objects would take a dozen megabytes for the whole scan.
        try:
            found = os.stat(path)
            if (found.st_dev, found.st_ino) in visited:  # a link back up the tree
                return iter(())
            visited.add((found.st_dev, found.st_ino))
            with os.scandir(path) as scan:
                return iter(
                    sorted(
                        entry.name + "/" if _is_dir(entry) else entry.name
                        for entry in scan
                        if not entry.name.startswith(".")
                    )
                )
        except OSError as error:  # unreadable, a path too long, gone since it was listed
            raise InputError(f"{error.filename}: cannot read folder: {error.strerror}") from None

    stack = [(os.path.join(root, ""), "", entries(root))]  # a folder's path ends in "/"
    while stack:
        folder, prefix, names = stack[-1]
        key = next(names, None)
        if key is None:
            stack.pop()
            continue
        path = folder + key
        if key[-1] == "/":
            stack.append((path, prefix + key, entries(path[:-1])))
        elif wanted(key, prefix + key):
            mask = _local_file(path, prefix + key, in_folder=True)
            if mask is not None:
                yield mask


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop: a file that cannot be read, said when it is stat-ed
        return False


def _container(path: str) -> bool:
    name = path.lower()
    return name.endswith(".parquet") or _archive(name) is not None


def _archive(path: str) -> tuple[str, str | None] | None:
    name = path.lower()
    return next((kind for suffix, kind in ARCHIVES.items() if name.endswith(suffix)), None)


def _contents(
    path: str, pattern: str | None, options: dict[str, Any], column: str | None
) -> Iterator[MaskFile]:
    """Yield the masks in an archive or a Parquet file (local path or URL)."""
    if path.lower().endswith(".parquet"):
        return _parquet_rows(path, pattern, options, column)
    return _archive_members(path, pattern, options)


def _expand_url(
    url: str, pattern: str | None, options: dict[str, Any], column: str | None
) -> Iterator[MaskFile]:
    with errors(url):
        fs, root = filesystem(url, options)
        if glob.has_magic(root):
            matches = sorted(fs.glob(root, detail=True).items())
            if not matches:
                raise InputError(f"{url}: no such file or directory")
            fixed = root[: len(root) - len(root.lstrip("/"))] + "/".join(
                _until_magic(tuple(root.lstrip("/").split("/")))
            )
            streams, files = [], []
            for path, info in matches:
                full = fs.unstrip_protocol(path)
                if _container(path) and info["type"] != "directory":
                    streams.append(_contents(full, pattern, options, column))
                elif info["type"] == "directory":
                    streams.append(_fs_walk(fs, path, full, pattern, url))
                elif not posixpath.basename(path).startswith("."):
                    name = posixpath.relpath(path, fixed) if fixed else path
                    files.append(_remote_file(full, name, _sized(fs, path, info)))
            files.sort(key=itemgetter(1))
            return heapq.merge(iter(files), *streams, key=itemgetter(1))
        if _container(root):
            return _contents(url, pattern, options, column)
        info = fs.info(root)
        # A web server's folder is a page of links, a "file" to fsspec's info: a URL ending in
        # / is asked whether it lists any (its isdir).
        if info["type"] == "directory" or (root.endswith("/") and fs.isdir(root)):
            return _fs_walk(fs, root, url, pattern, url)
        return iter([_remote_file(url, posixpath.basename(root.rstrip("/")), info)])


def _remote_file(path: str, name: str, info: Mapping[str, Any]) -> MaskFile:
    return MaskFile(path, name, int(info.get("size") or 0), version=version(info))


def _sized(fs: Any, path: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a listed file's details with its size: a web server's index of links says none,
    and the fingerprint holds each mask's size as a local folder gives it (a HEAD request).
    A link to nothing keeps the listing's details: reading it says why, and --skip-errors
    lists it."""
    if info.get("size") is not None:
        return info
    try:
        return {**info, **fs.info(path)}
    except Exception:  # any filesystem's error: the read that follows names it
        return info


def version(info: Mapping[str, Any]) -> str:
    """Return what changes when a stored file does: its ETag, else its modification time."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return ""


def _fs_walk(fs: Any, root: str, url: str, pattern: str | None, shown: str) -> Iterator[MaskFile]:
    """Yield the masks under ``root`` of an fsspec filesystem, as `walk` does locally; each
    mask's path is ``url`` joined with its relative name, or without ``url`` its path in
    ``fs``. A folder named ``.`` (``tar -cf x.tar .``) is its parent."""
    wanted = _wanted(pattern)
    base = url.rstrip("/") + "/" if url else ""

    def folder(path: str, prefix: str) -> Iterator[MaskFile]:
        with errors(shown):
            listed = fs.ls(path, detail=True)
        entries = []
        for info in listed:
            name = posixpath.basename(info["name"].rstrip("/"))
            if name == "." and info["type"] == "directory" and path in ("", "/"):
                yield from folder(info["name"], prefix)
            if not name or name.startswith(".") or info["name"].rstrip("/") == path.rstrip("/"):
                continue
            entries.append((name + "/" if info["type"] == "directory" else name, info))
        entries.sort(key=itemgetter(0))
        for key, info in entries:
            if key[-1] == "/":
                yield from folder(info["name"], prefix + key)
            elif wanted(key, prefix + key):
                where = base + prefix + key if base else info["name"]
                yield _remote_file(where, prefix + key, _sized(fs, info["name"], info))

    return folder(root, "")


def _archive_members(path: str, pattern: str | None, options: dict[str, Any]) -> Iterator[MaskFile]:
    """Yield the masks in an archive, named by their paths in it (``./`` left out).

    The names come from the archive's own index (tar headers, the zip directory), which fsspec
    reads once; an archive's listing is held whole, as its index is.
    """
    kind, compression = _archive(path)  # type: ignore[misc]
    wanted = _wanted(pattern)
    with errors(path):
        fs = _archive_filesystem(path, options)
        if kind == "tar":
            members = [(key, entry[0], entry[1]) for key, entry in fs.index.items()]
        else:
            members = [(item.filename, {"type": "directory" if item.is_dir() else "file",
                        "size": item.file_size, "mtime": item.date_time}, None)
                       for item in fs.zip.infolist()]  # fmt: skip
    # A name stored twice (a.png, ./a.png, /a.png) is its last entry, as unpacking leaves it.
    latest = {_member_name(key): (key, info, start) for key, info, start in members}
    found = []
    for name, (key, info, start) in latest.items():
        parts = name.split("/")
        if info["type"] != "file" or any(p.startswith(".") for p in parts):
            continue
        if wanted(parts[-1], name):
            size = int(info["size"])
            # In an uncompressed tar, its offset is in the archive file: read as a range.
            whole = start is not None and compression is None and _lies_whole(info)
            found.append(MaskFile(f"{kind}://{key}::{path}", name, size, version=version(info),
                                  span=(start, size) if whole else None))  # fmt: skip
    found.sort(key=itemgetter(1))
    return iter(found)


# -- Parquet ----------------------------------------------------------------------------------


def _member_name(key: str) -> str:
    """Return an archive member's name as unpacking would write it: ``./`` and ``/`` off."""
    return re.sub(r"^(\./|/)+", "", key)


def _parquet_rows(
    path: str, pattern: str | None, options: dict[str, Any], column: str | None
) -> Iterator[MaskFile]:
    """Yield the rows of a Parquet file's image column as masks, named by the image's own
    ``path`` (as Hugging Face stores it) or ``FILE#ROW``; row groups are read one at a time."""
    pa = _pyarrow(path)
    base = posixpath.basename(path.rstrip("/"))
    rows: list[tuple[str, int, int]] = []
    with errors(path):
        fs, where = _opener(path, options)
        stamp = version(fs.info(where))
        with fs.open(where, "rb") as file:
            parquet, name, struct = _open_parquet(file, path, column)
            row = 0
            for group in range(parquet.num_row_groups):
                values = parquet.read_row_group(group, columns=[name]).column(0).combine_chunks()
                data = values.field("bytes") if struct else values
                names = [None] * len(values)
                if struct and _has_text_field(pa, values.type, "path"):
                    names = values.field("path").to_pylist()
                sizes = pa.compute.fill_null(pa.compute.binary_length(data), 0).to_pylist()
                for own, size in zip(names, sizes, strict=True):
                    rows.append((own or f"{base}#{row}", size, row))
                    row += 1
    # Names need not be in order within the file: only names and sizes are held, never bytes.
    rows.sort()
    wanted = (lambda name, relative: True) if pattern is None else _wanted(pattern)
    for own, size, row in rows:
        if wanted(posixpath.basename(own), own):
            yield MaskFile(f"{path}#{row}", own, size, version=stamp)


def _has_text_field(pa: Any, kind: Any, name: str) -> bool:
    """Whether the struct type ``kind`` has a text field ``name`` (an image's ``path``: a
    struct may have none, or a number there, and its rows are then named ``FILE#ROW``)."""
    at = kind.get_field_index(name)
    text = kind[at].type if at >= 0 else None
    return text is not None and (pa.types.is_string(text) or pa.types.is_large_string(text))


def _pyarrow(path: str) -> Any:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow: pip install pyarrow "
            "(or '.[parquet]' from a clone of classweights)"
        ) from None
    return pyarrow


def _open_parquet(file: Any, path: str, column: str | None) -> tuple[Any, str, bool]:
    """Return a ParquetFile, its image column's name and whether it is a {bytes, path} struct."""
    pa = _pyarrow(path)
    parquet = pa.parquet.ParquetFile(file)
    schema = parquet.schema_arrow

    def image_like(field: Any) -> bool | None:  # True: a struct; False: plain binary
        kind = field.type
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            inner = kind.field("bytes").type
            return True if pa.types.is_binary(inner) or pa.types.is_large_binary(inner) else None
        return False if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) else None

    images = [f.name for f in schema if image_like(f) is not None]
    if column is None:
        if len(images) != 1:
            which = f"several image columns ({', '.join(images)})" if images else "no image column"
            raise InputError(f"{path}: {which}; name one with --column")
        column = images[0]
    if column not in schema.names:
        raise InputError(f"{path}: no column {column!r}; its columns are {', '.join(schema.names)}")
    struct = image_like(schema.field(column))
    if struct is None:
        raise InputError(
            f"{path}: column {column!r} holds {schema.field(column).type}, not images "
            "(binary, or a struct of bytes and path)"
        )
    return parquet, column, struct


# -- reading ----------------------------------------------------------------------------------


def read_bytes(mask: MaskFile | str, options: ReadOptions = ReadOptions()) -> bytes:
    """Return a mask's bytes, in any process: a local regular file through a plain
    unbuffered read (the fast path); anything else through a filesystem built in this
    process from the URL and ``options.storage_options`` (cached per process).

    Raises OSError for a local file that cannot be read, `MaskError` for anything else.
    """
    path = mask if isinstance(mask, str) else mask.path
    if is_local(path):
        return read_file(path)  # regular files only; whole at once: a buffer only costs
    span = None if isinstance(mask, str) else mask.span
    try:
        if span is not None:
            return _member_range(path, span, dict(options.storage_options))
        return _read_stored(path, dict(options.storage_options), options.column)
    except ClassWeightsError:
        raise
    except Exception as error:
        raise MaskError(path, f"cannot read: {reason(error, path)}") from None


def _member_range(path: str, span: tuple[int, int], options: dict[str, Any]) -> bytes:
    """Return the bytes of an uncompressed tar's member by their place in the archive file
    (`MaskFile.span`): one read of a range, local or in a store (a ranged request)."""
    archive = _MEMBER.match(path).group(3)  # type: ignore[union-attr]
    start, size = span
    if is_local(archive):
        data = read_range(archive, start, size)
    else:
        fs, where = filesystem(archive, options)
        data = fs.cat_file(where, start=start, end=start + size)
        if len(data) > size:  # a web server that ignores ranges sends the whole archive
            data = data[start : start + size]
    if len(data) != size:
        raise MaskError(path, f"cannot read: the archive ends {size - len(data)} bytes early")
    return data


def _read_stored(path: str, options: dict[str, Any], column: str | None) -> bytes:
    member = _MEMBER.match(path)
    if member:
        return _member_bytes(_archive_filesystem(member.group(3), options), member.group(2))
    row = _ROW.match(path)
    if row:
        return _row_bytes(row.group(1), int(row.group(2)), options, column)
    fs, where = filesystem(path, options)
    if getattr(fs, "max_concurrency", 1) > 1:
        # s3fs asks for the size first (a request per mask) when it may split a download in
        # parallel parts; a mask is one part.
        return fs.cat_file(where, max_concurrency=1)
    return fs.cat_file(where)


#: This process's filesystems and open Parquet files, by what makes them: never shared with
#: another process (fsspec's async filesystems are not fork-safe), hence the pid in each key.
_CACHE: dict[tuple, Any] = {}


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    key = (os.getpid(), *key)
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _options_key(options: Mapping[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def filesystem(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """Return this process's fsspec filesystem for ``url``, and the path within it."""
    import fsspec

    protocol = _URL.match(url).group(1).lower()  # type: ignore[union-attr]
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        raise InputError(f"{url}: {_needs(protocol, error)}") from None
    except ValueError:
        raise InputError(f"{url}: unknown protocol {protocol}://") from None
    fs = _cached(("fs", protocol, _options_key(options)), lambda: cls(**options))
    return fs, fs._strip_protocol(url)


def _opener(path: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """Return a filesystem that opens ``path`` (local or URL), and the path within it."""
    if _URL.match(path):
        return filesystem(path, options)
    return filesystem("file://" + os.path.abspath(path), {})


def _archive_filesystem(path: str, options: Mapping[str, Any]) -> Any:
    import fsspec

    kind, compression = _archive(path)  # type: ignore[misc]
    remote = bool(_URL.match(path))
    if remote:
        filesystem(path, options)  # a missing package is said as for any URL
    target = dict(options) if remote else None
    extra = {"compression": compression} if kind == "tar" else {}
    return _cached(
        ("archive", path, _options_key(options)),
        lambda: fsspec.filesystem(kind, fo=path, target_options=target, **extra),
    )


def _lies_whole(info: Mapping[str, Any]) -> bool:
    """Return whether a tar member's bytes lie whole at its offset: a regular file, not a link
    (a link has no bytes of its own; its size is its target's)."""
    return info["type"] == "file" and not info.get("linkname")


def _member_bytes(fs: Any, member: str) -> bytes:
    """Return an archive member's bytes: a tar's regular file straight from its offset (tarfile
    would look the name up member by member), a zip's by its name as stored (fsspec would take
    a leading / off it), anything else through fsspec."""
    entry = getattr(fs, "index", {}).get(member)
    if entry is not None and _lies_whole(entry[0]):
        fs.fo.seek(entry[1])
        return fs.fo.read(entry[0]["size"])
    if hasattr(fs, "zip"):
        return fs.zip.read(member)
    return fs.cat_file(member)


#: The row group last read in this process, as (file, group, its image bytes).
_GROUP: list[Any] = [None, -1, None]


def _row_bytes(path: str, row: int, options: dict[str, Any], column: str | None) -> bytes:
    def open_file() -> tuple[Any, str, bool, list[int]]:
        fs, where = _opener(path, options)
        parquet, name, struct = _open_parquet(fs.open(where, "rb"), path, column)
        starts, start = [], 0
        for group in range(parquet.num_row_groups):
            starts.append(start)
            start += parquet.metadata.row_group(group).num_rows
        return parquet, name, struct, starts

    parquet, name, struct, starts = _cached(
        ("parquet", path, column, _options_key(options)), open_file
    )
    import bisect

    group = bisect.bisect_right(starts, row) - 1
    if _GROUP[0] != (os.getpid(), path) or _GROUP[1] != group:
        # Tasks hold masks in order, so consecutive rows come from one group: read it once.
        values = parquet.read_row_group(group, columns=[name]).column(0).combine_chunks()
        _GROUP[:] = [(os.getpid(), path), group, values.field("bytes") if struct else values]
    data = _GROUP[2][row - starts[group]].as_py()
    if data is None:
        raise MaskError(f"{path}#{row}", "has no image bytes in its row")
    return data


# -- errors -----------------------------------------------------------------------------------


@contextmanager
def errors(url: str) -> Iterator[None]:
    """Turn what a filesystem raises into one line naming ``url`` (`InputError`, exit 3)."""
    try:
        yield
    except ClassWeightsError:
        raise
    except Exception as error:
        raise InputError(f"{url}: {reason(error, url)}") from None


def reason(error: BaseException, url: str) -> str:
    """Return why a store refused, in words: a missing object, denied access, no credentials."""
    kind = type(error).__name__
    if isinstance(error, FileNotFoundError):
        return "no such file or directory" if is_local(url) else "no such file, folder or bucket"
    if isinstance(error, PermissionError):
        return "access denied"
    if kind == "NoCredentialsError":
        return "no credentials found (configure them, or --storage-option anon=true)"
    if isinstance(error, ImportError):
        match = _URL.match(url)
        return _needs(match.group(1).lower(), error) if match else str(error)
    text = (str(error) or kind).strip().splitlines()
    return text[0] if text else kind


def _needs(protocol: str, error: ImportError) -> str:
    package, extra = PACKAGES.get(protocol, (None, None))
    if package is None:  # fsspec's own message names the packages (https: aiohttp)
        return f"{protocol}:// needs a package: {str(error).splitlines()[0]}"
    return f"{protocol}:// needs {package}: pip install {package} (or '.[{extra}]' from a clone)"
