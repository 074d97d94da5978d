"""Reading the files that say what raw values mean: colour maps, value maps and class names.

Each takes JSON, YAML or CSV (class names: a text file, one per line, or a JSON or YAML
list) and raises `LabelFileError` naming the file and the entry that makes no sense.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LabelFileError
from .limits import VALUES
from .masks import pack_rgb


@dataclass(frozen=True)
class ColorMap:
    """Colours (packed 0xRRGGBB) and the class id of each; the names the file gives, by id."""

    colors: tuple[tuple[int, int], ...]
    names: dict[int, str]


def parse_color(value: Any) -> int:
    """Return a colour given as ``#rrggbb``, ``"r,g,b"``, ``"r g b"`` or ``[r, g, b]``, packed."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"#[0-9a-fA-F]{6}", text):
            return int(text[1:], 16)
        value = re.split(r"[\s,;]+", text.strip("()[]"))
    try:
        channels = [_integer(c) for c in value]
    except ValueError:
        channels = []  # [0.5, 0, 0] names no colour: refused below, not truncated
    if len(channels) != 3 or not all(0 <= c <= 255 for c in channels):
        raise ValueError(f"{value!r} is not a colour (#rrggbb or three values 0-255)")
    return pack_rgb(*channels)


def load_colors(path: str | os.PathLike) -> ColorMap:
    """Return the colour map in ``path``: rows or objects with ``id``, ``color`` and an optional
    ``name`` (CSV may give the colour as ``r``, ``g``, ``b`` columns instead)."""
    colors: dict[int, int] = {}
    names: dict[int, str] = {}
    ids: dict[str, int] = {}
    for where, row in _records(path):
        try:
            class_id = _integer(row["id"], "id")
            colour = row.get("color", row.get("colour"))
            if colour is None:
                colour = [row["r"], row["g"], row["b"]]
            packed = parse_color(colour)
        except (KeyError, TypeError, ValueError) as error:
            raise LabelFileError(path, f"{where}: {_why(error, 'id and color')}") from None
        _check_value(path, where, class_id)
        if colors.setdefault(packed, class_id) != class_id:
            raise LabelFileError(path, f"{where}: colour {colour} is listed twice")
        name = str(row.get("name") or "")
        if name and names.setdefault(class_id, name) != name:
            raise LabelFileError(path, f"{where}: class {class_id} has two names")
        # A rule finds a class by its name (check --min-share NAME=X): one name, one class.
        if name and ids.setdefault(name, class_id) != class_id:
            raise LabelFileError(
                path, f"{where}: class name {name!r} is given to classes {ids[name]} and {class_id}"
            )
    if not colors:
        raise LabelFileError(path, "lists no colours")
    return ColorMap(tuple(sorted(colors.items())), names)


def load_map(path: str | os.PathLike) -> tuple[tuple[int, int], ...]:
    """Return the ``(src, dst)`` pairs in ``path``: a JSON or YAML mapping or list of pairs, or
    a CSV of two columns (a header row is skipped)."""
    pairs: dict[int, int] = {}
    for where, (src, dst) in _pairs(path):
        try:
            source, destination = _integer(src), _integer(dst)
        except ValueError:
            raise LabelFileError(
                path, f"{where}: {src!r}: {dst!r} is not a pair of integers"
            ) from None
        _check_value(path, where, source)
        _check_value(path, where, destination)
        if pairs.setdefault(source, destination) != destination:
            raise LabelFileError(path, f"{where}: value {source} is mapped twice")
    return tuple(sorted(pairs.items()))


def load_names(path: str | os.PathLike) -> tuple[str, ...]:
    """Return the class names in ``path``, id 0 first: a text file, one name a line, or a JSON
    or YAML list. Names are unique."""
    structured = _suffix(path) in (".json", ".yaml", ".yml")
    if structured:
        names = _structured(path)
        # YAML reads `no` as False and `2024-01-01` as a date: such a name would be written
        # back as another string, so it is refused (quote it) rather than converted.
        if not isinstance(names, list) or not all(
            isinstance(n, str | int) and not isinstance(n, bool) for n in names
        ):
            raise LabelFileError(
                path, "is not a list of class names (quote names YAML reads as other things)"
            )
        names = [str(n) for n in names]
    else:
        names = _read_text(path).rstrip("\n").split("\n")
        names = [n.strip() for n in names]
        if "" in names:
            raise LabelFileError(path, f"line {names.index('') + 1} is empty")
    if not names or names == [""]:
        raise LabelFileError(path, "names no classes")
    # A rule such as check's --min-share NAME=X finds a class by its name: of two classes of
    # one name it would check the first and let the other break the rule unseen.
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=0 if structured else 1):
        if name in seen:
            where = "entries" if structured else "lines"
            raise LabelFileError(
                path, f"class name {name!r} is given twice: {where} {seen[name]} and {number}"
            )
        seen[name] = number
    return tuple(names)


#: Deepest nesting of lists and mappings read from a JSON or YAML file: a report is three
#: levels deep; a thousand would exhaust the parser's stack.
MAX_DEPTH = 16


def parse_data(text: str, *, as_json: bool) -> object:
    """Return JSON or YAML text parsed; raises ValueError whose first line says why.

    Every file the tool reads is untrusted input, so YAML is read with `yaml.SafeLoader` and
    without anchors, aliases (a kilobyte of nested aliases expands to gigabytes) or tags, and
    nesting is bounded by `MAX_DEPTH` in both. A key given twice in one mapping is refused in
    both (their parsers keep the last). Callers read JSON as JSON: YAML 1.1 would read JSON's
    ``1e-05`` as a string.
    """
    if as_json:
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except RecursionError:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
        _check_depth(data)
        return data
    import yaml  # here, not at the top: most runs never read YAML, and it is slow to import

    try:
        return yaml.load(text, Loader=_strict_loader())  # a SafeLoader, stricter
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return a JSON object's pairs as a dict; raises ValueError for a key given twice."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {key!r} is given twice")
        data[key] = value
    return data


def _check_depth(data: object) -> None:
    level, depth = [data], 1
    while level:
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        level = [
            item
            for value in level
            if isinstance(value, list | dict)
            for item in (value.values() if isinstance(value, dict) else value)
            if isinstance(item, list | dict)
        ]
        depth += 1


@functools.cache
def _strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """A SafeLoader that refuses anchors, aliases, tags and a key given twice, and bounds
        the nesting."""

        depth = 0

        def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
            event = self.peek_event()
            where = f"line {event.start_mark.line + 1}"
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ValueError(f"{where}: YAML anchors and aliases are not read")
            if getattr(event, "tag", None) not in (None, "!"):
                raise ValueError(f"{where}: YAML tags ({event.tag}) are not read")
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
            mapping = super().construct_mapping(node, deep)
            if len(mapping) < len(node.value):  # a key given twice: PyYAML keeps the last
                seen = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node)  # built already: from its cache
                    if key in seen:
                        line = key_node.start_mark.line + 1
                        raise ValueError(f"line {line}: key {key!r} is given twice")
                    seen.add(key)
            return mapping

    return StrictLoader


def _suffix(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()


def _read_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelFileError(
            path, f"cannot read: {getattr(error, 'strerror', None) or error}"
        ) from None


def _structured(path: str | os.PathLike) -> object:
    try:
        return parse_data(_read_text(path), as_json=_suffix(path) == ".json")
    except ValueError as error:
        raise LabelFileError(path, f"is not valid: {str(error).splitlines()[0]}") from None


def _csv_rows(path: str | os.PathLike) -> list[list[str]]:
    rows = csv.reader(_read_text(path).splitlines())
    return [[cell.strip() for cell in row] for row in rows if any(cell.strip() for cell in row)]


def _records(path: str | os.PathLike) -> Iterable[tuple[str, dict]]:
    """Yield ``(where, record)`` for each entry of a CSV with a header, or a JSON/YAML list."""
    if _suffix(path) == ".csv":
        header, *rows = _csv_rows(path) or [[]]
        header = [h.lower() for h in header]
        for number, row in enumerate(rows, start=2):
            yield f"line {number}", dict(zip(header, row, strict=False))
        return
    entries = _structured(path)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LabelFileError(path, "is not a list of entries with id and color")
    for number, entry in enumerate(entries):
        yield f"entry {number}", {str(k).lower(): v for k, v in entry.items()}


def _pairs(path: str | os.PathLike) -> Iterable[tuple[str, tuple[Any, Any]]]:
    if _suffix(path) == ".csv":
        rows = _csv_rows(path)
        if rows and not rows[0][0].lstrip("-").isdigit():
            rows = rows[1:]  # a header
        for number, row in enumerate(rows, start=1):
            if len(row) != 2:
                raise LabelFileError(path, f"row {number} has {len(row)} columns, not 2")
            yield f"row {number}", (row[0], row[1])
        return
    data = _structured(path)
    if isinstance(data, dict):
        yield from ((f"key {k}", (k, v)) for k, v in data.items())
    elif isinstance(data, list) and all(isinstance(p, list) and len(p) == 2 for p in data):
        yield from ((f"entry {i}", (p[0], p[1])) for i, p in enumerate(data))
    else:
        raise LabelFileError(path, "is not a mapping of values or a list of [src, dst] pairs")


def _integer(value: Any, what: str = "value") -> int:
    """Return an integer given as one or as its digits (CSV cells, JSON keys, quoted YAML)."""
    # int() would truncate 3.5 to 3 and take True for 1: a file that says either is refused.
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"{what} {value!r} is not an integer")


def _check_value(path: str | os.PathLike, where: str, value: int) -> None:
    if value not in VALUES:
        raise LabelFileError(path, f"{where}: {value} is outside the 64-bit integers counted in")


def _why(error: Exception, needed: str) -> str:
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} (each entry needs {needed})"
    return str(error)
