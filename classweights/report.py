"""The report document: what a scan counted and the weights derived from it.

One document per run, keys in a fixed order, so the same data always gives the same bytes
(docs/design.md, "The report document"). It holds every count the weight methods need, so
`load` gives back a `ScanResult` from which any method can be derived again, and reports of
disjoint shards can be `merge`d exactly.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._version import __version__
from .counting import ClassCounts, LabelSpec
from .errors import InputError, ReportError, plural
from .labelmaps import parse_color, parse_data
from .masks import NotRegularFile, colour_hex, read_file
from .scan import Reading, ScanResult, Source, check_shard
from .weights import Weights, frequency

#: Significant digits of the weights and frequencies in a document.
DIGITS = 6


def document(result: ScanResult, weights: Weights, *, digits: int | None = DIGITS) -> dict:
    """Return the report document (plain dicts, lists, ints, floats and strings).

    Parameters
    ----------
    result : ScanResult
        The counts and how they were made.
    weights : Weights
        The weights derived from ``result.counts``.
    digits : int, optional
        Significant digits of the floats written (None: all of them).

    Returns
    -------
    dict
        The keys README's "The report document" shows, in that order; `FORMATS` writes it.
    """

    def rounded(value: float) -> float:
        # 0 needs no formatting, and most classes of a large label space are absent.
        return float(f"{value:.{digits}g}") if digits and value else float(value)

    counts = result.counts
    names = result.names or [None] * counts.num_classes
    weights_out = [rounded(w) for w in weights.weights]
    freq = [rounded(f) for f in frequency(counts)]
    # Python ints from whole arrays: one numpy scalar per class and field costs more.
    columns = (counts.pixels.tolist(), counts.images.tolist(), counts.image_pixels.tolist())
    return {
        "classweights": __version__,
        "method": weights.method,
        "normalize": weights.normalize,
        "missing": weights.missing,
        "params": weights.params,
        "clip": {"min": weights.clip[0], "max": weights.clip[1]},
        "num_classes": counts.num_classes,
        "ignore_index": list(result.spec.ignore_index),
        "map": [list(pair) for pair in result.spec.mapping],
        "reduce_zero_label": result.spec.reduce_zero_label,
        "colors": [[colour_hex(colour), class_id] for colour, class_id in result.spec.colors],
        "reading": {"unknown_colors": result.spec.unknown_colors, **asdict(result.reading)},
        "weights": weights_out,
        "pos_weight": [rounded(w) for w in weights.pos_weight],
        "classes": [
            {
                "id": c,
                "name": name,
                "pixels": pixels,
                "images": images,
                "image_pixels": image_pixels,
                "frequency": f,
                "weight": w,
            }
            for c, (name, pixels, images, image_pixels, f, w) in enumerate(
                zip(names, *columns, freq, weights_out, strict=True)
            )
        ],
        "totals": {"files": counts.files, "pixels": counts.counted, "ignored": counts.ignored},
        "left_out": {
            "outside_roi": counts.outside,
            "unknown_colors": counts.unknown_colors,
            "skipped_files": len(counts.errors),
        },
        "absent": weights.absent,
        "errors": [{"file": path, "error": error} for path, error in counts.errors],
        "source": _source(result.source),
    }


def left_out_parts(doc: dict) -> list[str]:
    """Return what a report's ``left_out`` block says was not counted, for people: one part
    per reason that left something out (a report from before the block: its skipped files)."""
    left_out = doc.get("left_out") or {"skipped_files": len(doc.get("errors", []))}
    parts = []
    if left_out.get("outside_roi"):
        parts.append(f"{plural(left_out['outside_roi'], 'pixel')} outside the regions (--roi)")
    if left_out.get("unknown_colors"):
        parts.append(
            f"{plural(left_out['unknown_colors'], 'pixel')} of colours not in the colour map "
            "(--unknown-colors ignore; among the ignored)"
        )
    if left_out.get("skipped_files"):
        parts.append(f"{plural(left_out['skipped_files'], 'file')} skipped (--skip-errors)")
    return parts


def _source(source: Source) -> dict:
    out = {"paths": list(source.paths), "files": source.files, "fingerprint": source.fingerprint}
    if source.shard is not None:  # only then: unsharded documents stay as they were
        out["shard"] = {"index": source.shard[0], "count": source.shard[1]}
    return out


def _json(doc: dict) -> str:
    """Write one key per line, and one line per class and per error: easy to read and to diff
    (and json's fast C encoder does all of it; it cannot indent)."""
    encode = json.JSONEncoder(allow_nan=False).encode
    lines = []
    for key, value in doc.items():
        text = encode(value)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            # The items are flat dicts, so '}, {"' stands only between two of them: inside a
            # string, a quote is always escaped. One encode for the list, then a line each.
            text = "[\n    " + '},\n    {"'.join(text[1:-1].split('}, {"')) + "\n  ]"
        lines.append(f"  {encode(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _yaml(doc: dict) -> str:
    import yaml  # here, not at the top: it is slow to import and most runs write JSON

    # default_flow_style=None writes lists of scalars inline: weights: [0.5, 1.0, 2.0]
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, allow_unicode=True)


def _list(doc: dict) -> str:
    """The bare weight list, which mmsegmentation's ``class_weight=`` loads from a file path."""
    return json.dumps(doc["weights"], allow_nan=False) + "\n"


CSV_COLUMNS = ("id", "name", "pixels", "images", "image_pixels", "frequency", "weight")


def _csv(doc: dict) -> str:
    import csv  # here, not at the top, as yaml: a start-up cost most runs do not need

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    interval = doc.get("interval")  # bootstrap intervals (scan --sample, issue 12)
    writer.writerow(CSV_COLUMNS + (("low", "high") if interval else ()))
    for row in doc["classes"]:
        bounds = (interval["low"][row["id"]], interval["high"][row["id"]]) if interval else ()
        writer.writerow(["" if row[k] is None else row[k] for k in CSV_COLUMNS] + list(bounds))
    return out.getvalue()


def _html(doc: dict) -> str:
    from .page import render  # here: the page derives every method, which other formats skip

    return render(doc)


#: ``--format``: how a document is written out.
FORMATS: dict[str, Callable[[dict], str]] = {
    "json": _json,
    "yaml": _yaml,
    "list": _list,
    "csv": _csv,
    "html": _html,
}


def write_output(path: str | os.PathLike | None, text: str) -> None:
    """Write a command's document: to stdout when ``path`` is None or ``-``, else to ``path``.

    The one place a document leaves the process (docs/design.md, "Reliability"). A regular
    file or a new path is written through a temporary file beside it and a rename: all of it
    or nothing. A device or FIFO (``/dev/null``, a named pipe) is written in place, never
    replaced by a file. A symbolic link keeps being a link: its target is replaced. File names
    that are not UTF-8 keep their bytes (surrogate escapes). Raises `InputError` naming the
    path (or stdout) when it cannot be written.
    """
    data = text.encode("utf-8", "surrogateescape")
    if path is None or os.fspath(path) == "-":
        _write_stdout(data)
        return
    try:
        mode = os.stat(path).st_mode  # through links: /dev/stdout may lead to a pipe
    except FileNotFoundError:
        mode = None  # a new path, or a link to one
    except OSError as error:  # a loop of links: writing would replace the link by a file
        raise InputError(f"{path}: cannot write: {error.strerror or error}") from None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        _write_in_place(path, data)
    else:
        target = os.path.realpath(path) if os.path.islink(path) else path
        write_atomic(target, data, shown=path)


def _write_stdout(data: bytes) -> None:
    import sys

    if sys.stdout is None:  # closed before the run (>&-)
        raise InputError("stdout: cannot write: it is closed (give -o FILE)")
    try:
        sys.stdout.flush()
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
    except OSError as error:
        # What is still buffered would fail again as Python exits, with a second message.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise InputError(f"stdout: cannot write: {error.strerror or error}") from None


def _write_in_place(path: str | os.PathLike, data: bytes) -> None:
    """Write to a device or FIFO as it is: no O_CREAT, no O_TRUNC, nothing to rename over."""
    try:
        descriptor = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(descriptor, "wb", buffering=0) as out:
            view = memoryview(data)
            while view:
                view = view[out.write(view) :]
    except OSError as error:
        raise InputError(f"{path}: cannot write: {error.strerror or error}") from None


def write_atomic(
    path: str | os.PathLike, data: str | bytes, *, shown: str | os.PathLike | None = None
) -> None:
    """Write ``data`` to the regular file ``path`` all at once (`atomic_file`; see
    `write_output` for the other kinds of path)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with atomic_file(path, "wb", shown=shown) as out:
        out.write(data)


@contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str, *, shown: str | os.PathLike | None = None, **open_args
) -> Iterator[IO]:
    """Yield a file opened with ``mode`` on a temporary file beside ``path``, renamed over
    ``path`` after an fsync when the block ends without an error: ``path`` is then whole, and
    untouched otherwise. The one way a file is written (reports, per-image rows).

    Raises `InputError` naming the path (``shown``, when given) when it cannot be written.
    """
    import tempfile  # here, not at the top, as yaml

    path = Path(path)
    shown = path if shown is None else shown
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise InputError(f"{shown}: cannot write: {error.strerror}") from None
    try:
        # mkstemp makes the file private; give it the mode a plain write would: the file's
        # own when it is there (a private report stays private), else the umask's.
        try:
            permissions = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            permissions = 0o666 & ~_umask()
        with os.fdopen(handle, mode, **open_args) as out:
            yield out
            out.flush()
            os.fchmod(out.fileno(), permissions)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise InputError(f"{shown}: cannot write: {error.strerror}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Counts in a report are below this: int64 sums of them cannot overflow.
MAX_COUNT = 2**62


def load(path: str | os.PathLike) -> ScanResult:
    """Return the counts and settings of a saved JSON or YAML report.

    A report is untrusted input: it is parsed without YAML aliases or tags and with bounded
    nesting (`labelmaps.parse_data`), every count must be an integer in 0..2^62, sizes must
    agree, and what is derived (frequencies, weights) is computed again, never read.

    Parameters
    ----------
    path : str or os.PathLike
        A report written by ``classweights scan`` (JSON or YAML).

    Returns
    -------
    ScanResult
        Its counts and settings; any weight method can be derived from them again.

    Raises
    ------
    ReportError
        Naming the file, when it cannot be read or is not a report.
    """
    try:
        text = read_file(path).decode("utf-8")
    except NotRegularFile:
        raise ReportError(path, "cannot read report: is not a regular file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(
            path, f"cannot read report: {getattr(error, 'strerror', None) or error}"
        ) from None
    try:
        doc = parse_data(text, as_json=text.lstrip().startswith("{"))
    except ValueError as error:
        raise ReportError(
            path, f"not a JSON or YAML report: {str(error).splitlines()[0]}"
        ) from None
    try:
        return _from_document(doc)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise ReportError(path, f"not a classweights report ({_describe(error)})") from None


def _describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} field"
    return str(error)


def _of_type(value: object, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is an int to Python, never to a report.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{what} is {value!r}")
    return value


def _count(value: object, what: str) -> int:
    """Return ``value`` if it is a count: an int (not a bool, not 10.7) in 0..2^62."""
    if type(value) is not int or not 0 <= value < MAX_COUNT:
        raise ValueError(f"{what} is {value!r}, not a count (an integer from 0 to 2^62)")
    return value


def _integer(value: object, what: str) -> int:
    if type(value) is not int or not -MAX_COUNT < value < MAX_COUNT:
        raise ValueError(f"{what} is {value!r}, not an integer")
    return value


def _list_of(value: object, what: str) -> list:
    return _of_type(value, list, what)  # type: ignore[return-value]


def _from_document(doc: Any) -> ScanResult:
    doc = _of_type(doc, dict, "the document")
    num_classes = _count(doc["num_classes"], '"num_classes"')
    classes = _list_of(doc["classes"], "classes")
    if num_classes < 1 or len(classes) != num_classes:
        raise ValueError(f'"num_classes" is {num_classes} but {len(classes)} classes are listed')
    names = []
    for c, entry in enumerate(classes):
        entry = _of_type(entry, dict, f"class {c}")
        if _count(entry["id"], f"class {c}'s id") != c:
            raise ValueError(f"class ids are not 0..{num_classes - 1} in order")
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"class {c}'s name is {name!r}, not a string")
        names.append(name)

    def column(key: str) -> np.ndarray:
        return np.array([_count(c[key], f"class {i}'s {key}") for i, c in enumerate(classes)])

    totals = _of_type(doc["totals"], dict, "totals")
    errors = [_of_type(e, dict, "an error") for e in _list_of(doc.get("errors", []), "errors")]
    counts = ClassCounts(
        column("pixels").astype(np.int64).reshape(num_classes),
        column("images").astype(np.int64).reshape(num_classes),
        column("image_pixels").astype(np.int64).reshape(num_classes),
        files=_count(totals["files"], "totals files"),
        ignored=_count(totals["ignored"], "totals ignored"),
        errors=[(_of_type(e["file"], str, "an error's file"), str(e["error"])) for e in errors],
    )
    # Reports written before "left_out" have none: nothing was counted as left out then.
    left_out = _of_type(doc.get("left_out", {}), dict, "left_out")
    counts.outside = _count(left_out.get("outside_roi", 0), "left_out outside_roi")
    counts.unknown_colors = _count(left_out.get("unknown_colors", 0), "left_out unknown_colors")
    skipped = _count(left_out.get("skipped_files", len(errors)), "left_out skipped_files")
    # Counts a scan could have made: a class occurs in an image iff it has pixels, in no more
    # images than there are, and holds no more pixels than those images.
    present = counts.pixels > 0
    if (
        (present != (counts.images > 0)).any()
        or (counts.images > counts.files).any()
        or (counts.pixels > counts.image_pixels).any()
        or counts.counted >= MAX_COUNT
        or _count(totals.get("pixels", counts.counted), "totals pixels") != counts.counted
        or counts.unknown_colors > counts.ignored
        or skipped != len(counts.errors)
    ):
        raise ValueError("its class counts do not add up")
    colors = []
    for pair in _list_of(doc["colors"], "colors"):
        colour, class_id = _list_of(pair, "a colour entry")
        colors.append((parse_color(colour), _integer(class_id, "a colour's class id")))
    reading = _of_type(doc.get("reading", {}), dict, "reading")
    spec = LabelSpec(
        num_classes=num_classes,
        ignore_index=tuple(
            _integer(v, "an ignore_index value")
            for v in _list_of(doc["ignore_index"], "ignore_index")
        ),
        mapping=tuple(
            (_integer(s, "a map source"), _integer(d, "a map destination"))
            for s, d in (_list_of(pair, "a map entry") for pair in _list_of(doc["map"], "map"))
        ),
        reduce_zero_label=_of_type(doc["reduce_zero_label"], bool, "reduce_zero_label"),
        colors=tuple(colors),
        unknown_colors=_of_type(reading.get("unknown_colors", "error"), str, "unknown_colors"),
    )
    source = _of_type(doc["source"], dict, "source")
    files = _count(source["files"], "source files")
    if counts.files + len(counts.errors) != files:
        raise ValueError(
            f"{files} files were listed but {counts.files} counted and {len(counts.errors)} failed"
        )
    optional = {str: "a string", int: "an integer"}
    for key, kind in (("regions", str), ("npz_key", str), ("max_pixels", int)):
        value = reading.get(key)
        if value is not None and (type(value) is not kind):
            raise ValueError(f"reading {key} is {value!r}, not {optional[kind]}")
    return ScanResult(
        counts,
        spec,
        Source(
            tuple(_of_type(p, str, "a source path") for p in _list_of(source["paths"], "paths")),
            files,
            _of_type(source["fingerprint"], str, "the fingerprint"),  # type: ignore[arg-type]
            _shard(source.get("shard")),
        ),
        names=None if all(n is None for n in names) else tuple(names),
        reading=Reading(reading.get("regions"), reading.get("npz_key"), reading.get("max_pixels")),
        sample=_of_type(doc["sample"], dict, "sample") if doc.get("sample") is not None else None,
    )


def _shard(shard: dict | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    return check_shard((int(shard["index"]), int(shard["count"])))


def settings_differ(first: ScanResult, other: ScanResult, where: str) -> str | None:
    """Return how the label settings of ``other`` differ from ``first``'s (which ``where``
    names), or None if their counts compare.

    Counts made with another class count, ignore list, value map, colour map or class names
    cannot be added up or compared.
    """
    for setting, mine, theirs in (
        ("num_classes", first.counts.num_classes, other.counts.num_classes),
        ("ignore_index", list(first.spec.ignore_index), list(other.spec.ignore_index)),
        ("map", list(first.spec.mapping), list(other.spec.mapping)),
        ("reduce_zero_label", first.spec.reduce_zero_label, other.spec.reduce_zero_label),
        ("colors", list(first.spec.colors), list(other.spec.colors)),
        ("unknown_colors", first.spec.unknown_colors, other.spec.unknown_colors),
        ("class names", first.names, other.names),
        # The region folder's path differs from one machine to another; whether there is one
        # does not.
        ("--roi", _used(first.reading.regions), _used(other.reading.regions)),
        ("npz_key", first.reading.npz_key, other.reading.npz_key),
        ("max_pixels", first.reading.max_pixels, other.reading.max_pixels),
    ):
        if mine != theirs:
            return f"{setting} is {theirs} here but {mine} in {where}"
    return None


def _used(regions: str | None) -> str:
    return "off" if regions is None else "used"


def merge(results: Sequence[tuple[str, ScanResult]], *, complete: bool = False) -> ScanResult:
    """Return the sum of reports of disjoint shards, given as ``(path, result)`` pairs.

    Raises `ReportError` naming a report whose settings differ from the first's
    (`settings_differ`): adding such counts would be meaningless; and for reports of
    ``--shard`` scans, one that repeats a shard or is of another split (`missing_shards`).
    Missing shards are a warning of the result, or with ``complete`` an `InputError`.

    Parameters
    ----------
    results : sequence of (str, ScanResult)
        The reports (`load`) with their paths, which messages name.
    complete : bool
        Refuse a set of ``--shard`` reports with a shard missing [default: warn].

    Returns
    -------
    ScanResult
        The sum of the counts, with the first report's settings.

    Raises
    ------
    ReportError, InputError
        As above.
    """
    (first_path, first), *rest = results
    for path, result in rest:
        differ = settings_differ(first, result, first_path)
        if differ:
            raise ReportError(path, f"{differ}; scan every shard with the same settings")
    missing = missing_shards(results)  # first: a repeated shard is said as such
    seen: dict[str, str] = {}
    for path, result in results:
        # Two shards of one split are disjoint by construction, even when both are empty.
        if result.source.shard is not None and result.source.files == 0:
            continue
        twin = seen.get(result.source.fingerprint)
        if twin is not None:
            raise ReportError(
                path, f"counts the same files as {twin} (the same fingerprint): merge each once"
            )
        seen[result.source.fingerprint] = path
    _refuse_nested(results)
    if missing and complete:
        raise InputError(missing)
    total = sum((r.counts for _, r in rest), first.counts)
    return ScanResult(
        total,
        first.spec,
        Source.merged([r.source for _, r in results]),
        names=first.names,
        warnings=(missing,) if missing else (),
        reading=first.reading,
    )


def _refuse_nested(results: Sequence[tuple[str, ScanResult]]) -> None:
    """Raise `ReportError` for a report that scanned a folder inside one another report
    scanned (``masks/train`` beside ``masks``): its masks are in both. (Equal paths may be two
    machines' own folders; the fingerprint tells those apart.)"""
    scanned = {posixpath.normpath(p): (path, p) for path, r in results for p in r.source.paths}
    for within, (path, inner) in scanned.items():
        around = posixpath.dirname(within)
        while around not in ("", within):  # each folder above, up to the root
            other, outer = scanned.get(around, (path, ""))
            if other != path:
                raise ReportError(
                    path,
                    f"scanned {inner}, inside {outer} that {other} scanned: its masks would "
                    "count twice; merge reports of folders apart",
                )
            within, around = around, posixpath.dirname(around)


def missing_shards(results: Sequence[tuple[str, ScanResult]]) -> str | None:
    """Return which shards of a split are missing from ``results`` (None if none is).

    Raises `ReportError` naming a report that repeats a shard, is a shard of another count or
    of other paths, or is a whole scan of the same paths as the shards: its masks would be
    counted twice.
    """
    shards = [(path, r.source, r.source.shard) for path, r in results if r.source.shard]
    if not shards:
        return None
    first_path, first, (first_index, count) = shards[0]
    seen: dict[int, str] = {}
    for path, source, (index, of) in shards:
        if of != count:
            raise ReportError(
                path, f"is shard {index}/{of} but {first_path} is one of {count} shards"
            )
        if source.paths != first.paths:
            raise ReportError(
                path, f"is a shard of {list(source.paths)} but {first_path} of {list(first.paths)}"
            )
        if index in seen:
            raise ReportError(path, f"is shard {index}/{count} again (as {seen[index]})")
        seen[index] = path
    for path, result in results:
        if result.source.shard is None and result.source.paths == first.paths:
            raise ReportError(
                path,
                f"is a whole scan of the paths of shard {first_index}/{count} "
                f"({first_path}): its masks would count twice",
            )
    missing = [i for i in range(count) if i not in seen]
    if not missing:
        return None
    return f"{len(missing)} of {count} shards missing: " + ", ".join(
        f"{i}/{count}" for i in missing
    )
