"""The report document: what a scan counted and the weights derived from it.

One document per run, keys in a fixed order, so the same data always gives the same bytes
(DESIGN.md, "The report document"). It holds every count the weight methods need, so
`load` gives back a `ScanResult` from which any method can be derived again, and reports of
disjoint shards can be `merge`d exactly.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .counting import ClassCounts, LabelSpec
from .errors import InputError, ReportError
from .labelmaps import parse_color, parse_data
from .masks import colour_hex
from .scan import ScanResult, Source
from .weights import Weights, frequency

#: Significant digits of the weights and frequencies in a document.
DIGITS = 6


def document(result: ScanResult, weights: Weights, *, digits: int | None = DIGITS) -> dict:
    """Return the report document (plain dicts, lists, ints, floats and strings)."""

    def rounded(value: float) -> float:
        # 0 needs no formatting, and most classes of a large label space are absent.
        return float(f"{value:.{digits}g}") if digits and value else float(value)

    counts = result.counts
    names = result.names or [None] * counts.num_classes
    weights_out = [rounded(w) for w in weights.weights]
    freq = [rounded(f) for f in frequency(counts)]
    pos_weight = weights.pos_weight
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
        "weights": weights_out,
        "pos_weight": (
            [rounded(w) for w in pos_weight]
            if isinstance(pos_weight, list)
            else rounded(pos_weight)
        ),
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
        "absent": weights.absent,
        "errors": [{"file": path, "error": error} for path, error in counts.errors],
        "source": {
            "paths": list(result.source.paths),
            "files": result.source.files,
            "fingerprint": result.source.fingerprint,
        },
    }


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


#: ``--format``: how a document is written out.
FORMATS: dict[str, Callable[[dict], str]] = {
    "json": _json,
    "yaml": _yaml,
    "list": _list,
    "csv": _csv,
}


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: all of it or nothing.

    Raises `InputError` naming the path when it cannot be written.
    """
    import tempfile  # here, not at the top, as yaml

    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise InputError(f"{path}: cannot write: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            # mkstemp makes the file private; give it the mode a plain write would.
            os.fchmod(out.fileno(), 0o666 & ~_umask())
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise InputError(f"{path}: cannot write: {error.strerror}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path: str | os.PathLike) -> ScanResult:
    """Return the counts and settings of a saved JSON or YAML report.

    Raises `ReportError` naming the file when it cannot be read or is not a report.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
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


def _from_document(doc: dict) -> ScanResult:
    classes = doc["classes"]
    num_classes = int(doc["num_classes"])
    if [c["id"] for c in classes] != list(range(num_classes)):
        raise ValueError(f"class ids are not 0..{num_classes - 1} in order")

    def column(key: str) -> np.ndarray:
        values = np.array([int(c[key]) for c in classes], np.int64).reshape(num_classes)
        if (values < 0).any():
            raise ValueError(f"negative {key!r}")
        return values

    counts = ClassCounts(
        column("pixels"),
        column("images"),
        column("image_pixels"),
        files=int(doc["totals"]["files"]),
        ignored=int(doc["totals"]["ignored"]),
        errors=[(str(e["file"]), str(e["error"])) for e in doc.get("errors", [])],
    )
    # Counts a scan could have made: a class occurs in an image iff it has pixels, in no more
    # images than there are, and holds no more pixels than those images.
    present = counts.pixels > 0
    if (
        (present != (counts.images > 0)).any()
        or (counts.images > counts.files).any()
        or (counts.pixels > counts.image_pixels).any()
    ):
        raise ValueError("its class counts do not add up")
    spec = LabelSpec(
        num_classes=num_classes,
        ignore_index=tuple(int(v) for v in doc["ignore_index"]),
        mapping=tuple((int(s), int(d)) for s, d in doc["map"]),
        reduce_zero_label=bool(doc["reduce_zero_label"]),
        colors=tuple((parse_color(c), int(i)) for c, i in doc["colors"]),
    )
    source = doc["source"]
    names = [c.get("name") for c in classes]
    return ScanResult(
        counts,
        spec,
        Source(
            tuple(str(p) for p in source["paths"]), int(source["files"]), str(source["fingerprint"])
        ),
        names=None if all(n is None for n in names) else tuple(names),
    )


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
        ("class names", first.names, other.names),
    ):
        if mine != theirs:
            return f"{setting} is {theirs} here but {mine} in {where}"
    return None


def merge(results: Sequence[tuple[str, ScanResult]]) -> ScanResult:
    """Return the sum of reports of disjoint shards, given as ``(path, result)`` pairs.

    Raises `ReportError` naming a report whose settings differ from the first's
    (`settings_differ`): adding such counts would be meaningless.
    """
    (first_path, first), *rest = results
    for path, result in rest:
        differ = settings_differ(first, result, first_path)
        if differ:
            raise ReportError(path, f"{differ}; scan every shard with the same settings")
    total = sum((r.counts for _, r in rest), first.counts)
    return ScanResult(
        total, first.spec, Source.merged([r.source for _, r in results]), names=first.names
    )
