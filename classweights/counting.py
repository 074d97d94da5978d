"""The counting model: per-class pixel statistics as sums that add up across masks and shards.

For every class c, over all masks (docs/design.md, "Counting model"):

- ``pixels[c]``: pixels labelled c;
- ``images[c]``: masks in which c occurs at least once;
- ``image_pixels[c]``: all pixels (ignored ones included) of the masks in which c occurs;

and the totals ``files`` and ``ignored``. These sums are all that every weight method needs,
and they add up, which makes the scan embarrassingly parallel and ``merge`` exact.

Values that may not occur (a label outside ``0..K-1``, a colour missing from the colour map)
are not errors on the spot: they are tallied too, with a few example files, so one run can
say everything that is wrong with a dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import ConventionError, MaskError, plural
from .limits import MAX_CLASSES, VALUES
from .masks import TABLE_SIZE, Histogram, colour_hex
from .presets import find_preset

#: Without ``--num-classes`` the class count is the largest label + 1; past this, a label is
#: far more likely an id space (instance ids, colours packed in an int) than a class.
MAX_IMPLICIT_CLASSES = 65536

#: Example files kept for each unexpected value.
MAX_EXAMPLES = 5

#: Unexpected values tallied one by one (the smallest, whatever the worker count); the pixels
#: of the others are summed under `MORE`. Masks of instance ids hold millions of values.
MAX_VALUES = 1000

#: Values datasets use for "no class": VOC and Cityscapes trainIds use 255, 16-bit sets 65535.
VOID_VALUES = (255, 65535)

#: How an unexpected value is known: ("label", id after the map), ("value", raw value not
#: allowed) or ("colour", 0xRRGGBB).
Key = tuple[str, int]

#: The tally of the unexpected values past the first `MAX_VALUES`: "and N more pixels".
MORE: Key = ("more", 0)

# What `LabelSpec._codes` gives a raw value that is not counted as a class.
IGNORED, OUT_OF_RANGE, NOT_ALLOWED = -1, -2, -3


@dataclass(frozen=True)
class LabelSpec:
    """How raw mask values become class ids.

    In order: colours become ids through ``colors`` (colour masks only); with
    ``reduce_zero_label`` 0 is ignored and v becomes v - 1 (ADE20K); ``mapping`` replaces
    values (so a value may be mapped onto an ignored one); ``ignore_index`` values are dropped;
    what is left must be in ``0..num_classes-1``. ``num_classes`` of None means "largest
    label + 1". ``unknown_colors`` is "error" (a colour not in the map is unexpected) or
    "ignore" (its pixels are ignored). ``allowed_values``, when set, are the only raw values a
    mask may hold; any other is unexpected.

    Parameters
    ----------
    num_classes : int, optional
        K: class ids are ``0..K-1`` [default: the largest label + 1].
    ignore_index : int or iterable of int
        Values whose pixels are left out (``255``, or ``(0, 255)``).
    mapping : mapping or iterable of (int, int) pairs
        ``{raw value: class id}``, applied before ignoring.
    reduce_zero_label : bool
        The ADE20K convention: 0 is ignored and v becomes v - 1.
    colors : iterable of (int, int) pairs
        ``(0xRRGGBB, class id)``: the colour map of colour masks.
    unknown_colors : {"error", "ignore"}
        What a colour missing from the colour map is.
    allowed_values : iterable of int, optional
        The only raw values a mask may hold (``check --allowed-values``).

    Examples
    --------
    >>> LabelSpec(num_classes=21, ignore_index=255).ignore_index
    (255,)
    """

    num_classes: int | None = None
    ignore_index: tuple[int, ...] = ()
    mapping: tuple[tuple[int, int], ...] = ()
    reduce_zero_label: bool = False
    colors: tuple[tuple[int, int], ...] = ()
    unknown_colors: str = "error"
    allowed_values: tuple[int, ...] | None = None

    if TYPE_CHECKING:  # what the constructor takes; __post_init__ makes the fields canonical

        def __init__(
            self,
            num_classes: int | None = None,
            ignore_index: int | Iterable[int] = (),
            mapping: Mapping[int, int] | Iterable[tuple[int, int]] = (),
            reduce_zero_label: bool = False,
            colors: Iterable[tuple[int, int]] = (),
            unknown_colors: str = "error",
            allowed_values: Iterable[int] | None = None,
        ) -> None: ...

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> LabelSpec:
        """Return the label settings of a dataset preset (`presets.PRESETS`), by name.

        Parameters
        ----------
        name : str
            A key of `presets.PRESETS`: ``"cityscapes"``, ``"voc"``, ``"camvid"``... (any case).
        **overrides
            Fields that replace the preset's, e.g. ``ignore_index=255``.

        Examples
        --------
        >>> LabelSpec.from_preset("camvid").ignore_index
        (11,)
        """
        preset = find_preset(name)
        fields = {
            "num_classes": preset.num_classes,
            "ignore_index": preset.ignore_index,
            "mapping": preset.mapping,
            "reduce_zero_label": preset.reduce_zero_label,
        }
        return cls(**{**fields, **overrides})

    def __post_init__(self) -> None:
        # A scalar is one value, a mapping its (source, destination) pairs.
        if isinstance(self.ignore_index, (int, np.integer)):
            object.__setattr__(self, "ignore_index", (self.ignore_index,))
        if isinstance(self.mapping, Mapping):
            object.__setattr__(self, "mapping", tuple(self.mapping.items()))
        object.__setattr__(self, "ignore_index", _integers("ignore_index", self.ignore_index))
        object.__setattr__(self, "mapping", _pairs("mapping", self.mapping))
        object.__setattr__(self, "colors", _pairs("colors", self.colors))
        if self.allowed_values is not None:
            object.__setattr__(
                self, "allowed_values", _integers("allowed_values", self.allowed_values)
            )
        if self.num_classes is not None and not _is_integer(self.num_classes):
            raise TypeError(f"num_classes must be an integer, not {self.num_classes!r}")
        if self.num_classes is not None and not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in 1..{MAX_CLASSES:,}, not {self.num_classes}")
        if self.unknown_colors not in ("error", "ignore"):
            raise ValueError(f"unknown_colors must be error or ignore, not {self.unknown_colors!r}")
        for name, pairs in (("value", self.mapping), ("colour", self.colors)):
            sources = [src for src, _ in pairs]
            if len(set(sources)) != len(sources):
                raise ValueError(f"a {name} is mapped twice in {list(pairs)}")
        # Canonical order, so that equal settings compare (and serialise) equal.
        object.__setattr__(self, "ignore_index", tuple(sorted({int(v) for v in self.ignore_index})))
        object.__setattr__(self, "mapping", _sorted_pairs(self.mapping))
        object.__setattr__(self, "colors", _sorted_pairs(self.colors))
        if self.allowed_values is not None:
            object.__setattr__(self, "allowed_values", tuple(sorted(set(self.allowed_values))))

    def __getstate__(self) -> dict:
        # The cached lookups are rebuilt in each worker rather than pickled with every task.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @cached_property
    def _lookups(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {"mapping": _pair_arrays(self.mapping), "colors": _pair_arrays(self.colors)}

    def remap(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` with every mapped source value replaced by its destination."""
        return _lookup(*self._lookups["mapping"], values)[0]

    def _labels(self, values: np.ndarray) -> np.ndarray:
        """Return raw index values as labels: reduce-zero-label, then the value map."""
        if self.reduce_zero_label:
            # As mmsegmentation does it: 255 stays void, v -> v - 1 (0 is ignored: `_codes`).
            values = np.where(values == 255, 255, values - 1)
        return self.remap(values)

    def _codes(self, values: np.ndarray) -> np.ndarray:
        """Return the class id of each raw index value, or IGNORED, OUT_OF_RANGE, NOT_ALLOWED."""
        labels = self._labels(values)
        ignored = np.isin(labels, self.ignore_index)
        if self.reduce_zero_label:
            ignored |= values == 0
        limit = self.num_classes or MAX_IMPLICIT_CLASSES
        codes = np.where(
            ignored, IGNORED, np.where((labels < 0) | (labels >= limit), OUT_OF_RANGE, labels)
        )
        if self.allowed_values is not None:
            codes = np.where(np.isin(values, self.allowed_values), codes, NOT_ALLOWED)
        return codes

    @property
    def _table(self) -> np.ndarray:
        """`_codes` of every value below `TABLE_SIZE`: one lookup per mask instead of a dozen
        numpy calls, which cost more than counting a small mask."""
        return _code_table(self)

    def classify(self, histogram: Histogram, path: object) -> Classified:
        """Return one mask's histogram as class ids, ignored pixels and unexpected values.

        Raises `MaskError` naming ``path`` for a colour mask when there is no colour map.
        """
        values, counts = histogram.values, histogram.counts
        ignored = 0
        unexpected: list[tuple[Key, int]] = []
        if histogram.colour:
            if not self.colors:
                raise MaskError(
                    path, "is a colour (RGB) mask; map its colours to class ids with colors=FILE"
                )
            ids, known = _lookup(*self._lookups["colors"], values)
            if self.unknown_colors == "ignore":
                ignored += int(counts[~known].sum())
            else:
                unexpected += _tally("colour", values[~known], counts[~known])
            values, counts = ids[known], counts[known]
            codes = self._codes(values)
        elif _in_table(histogram):
            codes = self._table[values]
        else:
            codes = self._codes(values)
        keep = codes >= 0
        if not keep.all():
            ignored += int(counts[codes == IGNORED].sum())
            out, banned = codes == OUT_OF_RANGE, codes == NOT_ALLOWED
            unexpected += _tally("label", self._labels(values[out]), counts[out])
            unexpected += _tally("value", values[banned], counts[banned])
        return Classified(codes[keep], counts[keep], ignored, unexpected)

    def unknown_colour_pixels(self, histogram: Histogram) -> int:
        """Return the pixels of a mask's colours that the colour map lacks: with
        ``unknown_colors="ignore"`` they are left out (among the ignored), 0 for index masks."""
        if not histogram.colour or not self.colors:
            return 0
        _, known = _lookup(*self._lookups["colors"], histogram.values)
        return int(histogram.counts[~known].sum())

    def describe(self, key: Key) -> str:
        """Return what is wrong with an unexpected value (`advice` says what to do)."""
        kind, value = key
        if kind == "colour":
            return f"colour {colour_hex(value)} is not in the colour map"
        if kind == "value":
            return f"value {value} is not one of the allowed values"
        if value < 0:
            return f"label {value} is negative"
        if self.num_classes is None:
            return f"label {value} is too large to be a class id"
        return (
            f"label {value} is outside 0..{self.num_classes - 1} (num_classes={self.num_classes})"
        )

    def advice(self, key: Key) -> str:
        """Return what to do about an unexpected value."""
        kind, value = key
        if kind == "colour":
            return "add it to the colour map, or pass unknown_colors='ignore'"
        if kind == "value":
            return "fix the masks, or allow it"
        if self.num_classes is None and value >= 0:
            return f"pass num_classes, ignore_index={value} or mapping={{{value}: DST}}"
        return (
            f"pass ignore_index={value} if it marks pixels to leave out, "
            f"or mapping={{{value}: DST}}"
        )


@cache
def _code_table(spec: LabelSpec) -> np.ndarray:
    # Kept by value, not on the spec: each worker task unpickles a spec of its own, and the
    # table takes longer to build than a hundred masks take to classify.
    return spec._codes(np.arange(TABLE_SIZE))


def _in_table(histogram: Histogram) -> bool:
    """Whether all of a mask's values are index values that `LabelSpec._table` covers."""
    values = histogram.values  # sorted
    return not histogram.colour and (not values.size or 0 <= values[0] <= values[-1] < TABLE_SIZE)


def _colours_as_ids(histograms: Sequence[Histogram], spec: LabelSpec) -> list[Histogram]:
    """Return ``histograms`` with each colour mask whose every colour is in the colour map
    given as the class ids of its colours (sorted; two colours of one class stay two
    entries): what `LabelSpec.classify` does to it first, done for all the masks in one
    lookup. Every other histogram is returned as it is."""
    at = [i for i, h in enumerate(histograms) if h.colour]
    if not at or not spec.colors:
        return list(histograms)
    colours = [histograms[i].values for i in at]
    ids, known = _lookup(*spec._lookups["colors"], np.concatenate(colours))
    lengths = [len(v) for v in colours]
    converted = list(histograms)
    for i, end, length in zip(at, np.cumsum(lengths).tolist(), lengths, strict=True):
        start = end - length
        if known[start:end].all():
            order = np.argsort(ids[start:end], kind="stable")
            values, counts = ids[start:end][order], histograms[i].counts[order]
            converted[i] = replace(histograms[i], values=values, counts=counts, colour=False)
    return converted


def _tally(kind: str, values: np.ndarray, counts: np.ndarray) -> list[tuple[Key, int]]:
    """Return the unexpected values of one mask, the `MAX_VALUES` smallest one by one."""
    if len(values) <= MAX_VALUES:
        return [((kind, int(v)), int(n)) for v, n in zip(values, counts, strict=True)]
    order = np.argsort(values, kind="stable")
    kept, rest = order[:MAX_VALUES], order[MAX_VALUES:]
    return [*_tally(kind, values[kept], counts[kept]), (MORE, int(counts[rest].sum()))]


def _bounded(tallies: dict[Key, Unexpected]) -> dict[Key, Unexpected]:
    """Return ``tallies`` sorted, keeping the `MAX_VALUES` smallest values and summing the
    pixels of the others under `MORE`: bounded, and the same whatever order masks came in
    (a value among the smallest of all is among the smallest of every part)."""
    keys = sorted(k for k in tallies if k != MORE)
    if len(keys) <= MAX_VALUES and MORE not in tallies:
        return {k: tallies[k] for k in keys}
    bounded = {k: tallies[k] for k in keys[:MAX_VALUES]}
    more = tallies.get(MORE, Unexpected())
    for key in keys[MAX_VALUES:]:
        more = more + tallies[key]
    bounded[MORE] = more
    return bounded


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _integers(name: str, values: Any) -> tuple:
    """Return ``values`` as a tuple, or raise TypeError unless they are integers: a str would be
    taken a character at a time ("255" as 2 and 5), a float cut to an integer."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be an integer or integers, not {values!r}")
    values = tuple(values)
    for value in values:
        if not _is_integer(value):
            raise TypeError(f"{name} must hold integers, not {value!r}")
        _check_value(name, value)
    return values


def _pairs(name: str, pairs: Any) -> tuple:
    """Return ``pairs`` as a tuple, or raise TypeError unless they are (integer, integer)."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise TypeError(f"{name} must be a mapping or (source, destination) pairs, not {pairs!r}")
    pairs = tuple(pairs)
    for pair in pairs:
        try:
            source, destination = pair
        except (TypeError, ValueError):
            source = destination = None
        if not (_is_integer(source) and _is_integer(destination)):
            raise TypeError(f"{name} must hold (source, destination) integer pairs, not {pair!r}")
        _check_value(name, source)
        _check_value(name, destination)
    return pairs


def _check_value(name: str, value: Any) -> None:
    if int(value) not in VALUES:  # (a range looks a numpy integer up one element at a time)
        raise ValueError(f"{name} holds {value}, outside the 64-bit integers numpy counts in")


def _sorted_pairs(pairs) -> tuple[tuple[int, int], ...]:
    return tuple(sorted((int(src), int(dst)) for src, dst in pairs))


def _pair_arrays(pairs: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    src, dst = zip(*pairs, strict=True) if pairs else ((), ())
    return np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)


def _lookup(src: np.ndarray, dst: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``values`` with each one found in ``src`` replaced by its ``dst``, and which were."""
    if not len(src):
        return values, np.zeros(len(values), bool)
    at = np.searchsorted(src, values).clip(max=len(src) - 1)
    found = src[at] == values
    return np.where(found, dst[at], values), found


class Classified(NamedTuple):
    """One mask after `LabelSpec.classify`."""

    labels: np.ndarray  # class ids, possibly repeated after a remap
    counts: np.ndarray  # their pixel counts
    ignored: int  # pixels dropped on purpose
    unexpected: list[tuple[Key, int]]  # values that may not occur, with their pixel counts


@dataclass
class Unexpected:
    """The pixels of a value that may not occur: how many, in how many files, and some files."""

    pixels: int = 0
    files: int = 0
    examples: list[tuple[str, int]] = field(default_factory=list)  # (path, pixels), by path

    def __add__(self, other: Unexpected) -> Unexpected:
        # Keep the first files by path, so the examples do not depend on the worker count.
        examples = sorted(self.examples + other.examples)[:MAX_EXAMPLES]
        return Unexpected(self.pixels + other.pixels, self.files + other.files, examples)


@dataclass
class ClassCounts:
    """Per-class sums (int64 arrays of length K) and totals; ``a + b`` adds two disjoint sets.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``pixels[c]``: the pixels of class c (n_c).
    images : numpy.ndarray
        ``images[c]``: the masks in which class c occurs.
    image_pixels : numpy.ndarray
        ``image_pixels[c]``: all pixels of the masks in which class c occurs.
    files : int
        The masks counted.
    ignored : int
        The pixels of ignored values (and of unknown colours with ``unknown_colors="ignore"``).
    unexpected : dict
        Values that may not occur, with their pixels and example files.
    errors : list of (str, str)
        ``(path, why)`` of the masks skipped (``skip_errors``).
    lossy : int
        The masks decoded from a lossy format (JPEG).
    outside : int
        The pixels outside the masks' regions (``regions``, ``--roi``), in no other count.
    unknown_colors : int
        The pixels of colours not in the colour map with ``unknown_colors="ignore"``
        (among ``ignored`` too).
    """

    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    files: int = 0
    ignored: int = 0
    unexpected: dict[Key, Unexpected] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, why): files skipped
    lossy: int = 0  # masks decoded from a lossy format (JPEG), whatever their names say
    outside: int = 0
    unknown_colors: int = 0

    @classmethod
    def zeros(cls, num_classes: int = 0) -> ClassCounts:
        """Return empty counts for ``num_classes`` classes."""
        pixels, images, image_pixels = (np.zeros(num_classes, np.int64) for _ in range(3))
        return cls(pixels, images, image_pixels)

    @property
    def num_classes(self) -> int:
        return len(self.pixels)

    @property
    def counted(self) -> int:
        """Pixels counted as some class (N in the weight formulas): all but the ignored ones."""
        return int(self.pixels.sum())

    @property
    def present(self) -> np.ndarray:
        """Boolean mask of the classes with at least one pixel."""
        return self.pixels > 0

    def resized(self, num_classes: int) -> ClassCounts:
        """Return these counts padded with zero classes up to ``num_classes``."""
        pad = num_classes - self.num_classes
        if pad < 0:
            raise ValueError(f"cannot shrink counts of {self.num_classes} classes to {num_classes}")
        if pad == 0:
            return self
        pixels, images, image_pixels = (
            np.concatenate([a, np.zeros(pad, np.int64)]) for a in self._arrays()
        )
        unexpected, errors = dict(self.unexpected), list(self.errors)
        return ClassCounts(
            pixels,
            images,
            image_pixels,
            self.files,
            self.ignored,
            unexpected,
            errors,
            self.lossy,
            self.outside,
            self.unknown_colors,
        )

    def add_mask(self, histogram: Histogram, spec: LabelSpec, path: str) -> None:
        """Add one mask, given as its raw-value histogram, to these counts (in place)."""
        labels, kept, ignored, unexpected = spec.classify(histogram, path)
        if labels.size and labels.max() >= self.num_classes:
            grown = self.resized(int(labels.max()) + 1)
            self.pixels, self.images, self.image_pixels = grown._arrays()
        np.add.at(self.pixels, labels, kept)  # add.at: after a remap, labels may repeat
        # Plain fancy += adds once per distinct label however often it repeats: "occurs".
        self.images[labels] += 1
        self.image_pixels[labels] += histogram.size
        self.files += 1
        self.ignored += ignored
        self.lossy += histogram.lossy
        self.outside += histogram.outside
        if spec.unknown_colors == "ignore":
            self.unknown_colors += spec.unknown_colour_pixels(histogram)
        for key, pixels in unexpected:
            self.unexpected[key] = self.unexpected.get(key, Unexpected()) + Unexpected(
                pixels, 1, [(path, pixels)]
            )
        if len(self.unexpected) > MAX_VALUES:
            self.unexpected = _bounded(self.unexpected)

    def add_masks(
        self, histograms: Sequence[Histogram], spec: LabelSpec, paths: Sequence[str]
    ) -> None:
        """Add many masks: the same sums as `add_mask` on each, in a dozen numpy calls for all.

        Classifying a mask on its own takes as many numpy calls as counting it. Here the
        values of all index masks are looked up at once and summed per (mask, class) in one
        weighted bincount; memory grows with the masks' distinct values, never with masks
        times classes. Colour masks whose every colour is in the colour map join them as
        their class ids (`_colours_as_ids`); other colour masks, values outside the lookup
        table and masks holding a value that may not occur (tallied with its file) go
        through `add_mask`.
        """
        histograms = _colours_as_ids(histograms, spec)
        batch = [i for i, h in enumerate(histograms) if _in_table(h)]
        values = [histograms[i].values for i in batch]
        codes = spec._table[np.concatenate(values)] if batch else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(batch)), [len(v) for v in values])  # mask of each value
        singles = set(range(len(histograms))).difference(batch)
        singles.update(batch[j] for j in set(owner[codes < IGNORED].tolist()))
        if singles:
            for i in sorted(singles):
                self.add_mask(histograms[i], spec, paths[i])
            rest = [i for i in range(len(histograms)) if i not in singles]
            self.add_masks([histograms[i] for i in rest], spec, [paths[i] for i in rest])
            return
        if not batch:
            return
        self.lossy += sum(histograms[i].lossy for i in batch)
        self.outside += sum(histograms[i].outside for i in batch)
        pixels = np.concatenate([h.counts for h in histograms]).astype(np.float64)
        counted = codes >= 0  # float sums are exact: each is far below 2**53
        self.ignored += int(pixels[codes == IGNORED].sum())
        if counted.any() and codes.max() >= self.num_classes:  # K is the largest label + 1
            grown = self.resized(int(codes.max()) + 1)
            self.pixels, self.images, self.image_pixels = grown._arrays()
        self.files += len(batch)
        if not counted.any():
            return
        # Sums per (mask, class) pair that occurs: a remap may send two values to one class.
        k = self.num_classes
        pairs, pair = np.unique(owner[counted] * k + codes[counted], return_inverse=True)
        pair_pixels = np.bincount(pair, weights=pixels[counted])
        mask, label = np.divmod(pairs, k)
        sizes = np.bincount(owner, weights=pixels, minlength=len(batch))  # all of each mask
        self.pixels += np.bincount(label, weights=pair_pixels, minlength=k).astype(np.int64)
        self.images += np.bincount(label, minlength=k)
        self.image_pixels += np.bincount(label, weights=sizes[mask], minlength=k).astype(np.int64)

    def __add__(self, other: ClassCounts) -> ClassCounts:
        size = max(self.num_classes, other.num_classes)
        a, b = self.resized(size), other.resized(size)
        unexpected = dict(a.unexpected)
        for key, tally in b.unexpected.items():
            unexpected[key] = unexpected[key] + tally if key in unexpected else tally
        pixels, images, image_pixels = (
            x + y for x, y in zip(a._arrays(), b._arrays(), strict=True)
        )
        return ClassCounts(
            pixels,
            images,
            image_pixels,
            files=a.files + b.files,
            ignored=a.ignored + b.ignored,
            unexpected=_bounded(unexpected),
            errors=sorted(a.errors + b.errors),
            lossy=a.lossy + b.lossy,
            outside=a.outside + b.outside,
            unknown_colors=a.unknown_colors + b.unknown_colors,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassCounts):
            return NotImplemented
        return (self._totals() == other._totals()) and all(
            np.array_equal(x, y) for x, y in zip(self._arrays(), other._arrays(), strict=True)
        )

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.pixels, self.images, self.image_pixels

    def _totals(self) -> tuple:
        return (
            self.files,
            self.ignored,
            self.unexpected,
            self.errors,
            self.lossy,
            self.outside,
            self.unknown_colors,
        )


def unexpected_summary(counts: ClassCounts, spec: LabelSpec, most: int = 3) -> str | None:
    """Return one line on the values that may not occur, naming example files; None if none."""
    if not counts.unexpected:
        return None
    parts = []
    values = [key for key in counts.unexpected if key != MORE]
    for key, tally in [(k, counts.unexpected[k]) for k in values[:most]]:
        path, _ = tally.examples[0]
        parts.append(
            f"{path}: {spec.describe(key)} ({plural(tally.pixels, 'pixel')} in "
            f"{plural(tally.files, 'file')}); "
            f"{spec.advice(key)}"
        )
    more = len(values) - most
    text = " | ".join(parts) + (f" | and {more} more values" if more > 0 else "")
    if MORE in counts.unexpected:
        text += f" (and more, {counts.unexpected[MORE].pixels:,} pixels of them not listed)"
    return text


#: Ids are sparse when fewer than one in this many of 0..K-1 occur and the largest is at
#: least `SPARSE_FROM`: gray levels (0/127/254), multiples (0/1000/2000), VOC's 0..20 + 255.
SPARSE_RATIO, SPARSE_FROM = 8, 100

#: Gray levels (0/127/254, 0/1000/2000) are suggested a ``--map`` of each nonzero id to its
#: rank when there are at most this many; class ids beside a void value (VOC) are not.
MAP_AT_MOST = 8


def convention_error(counts: ClassCounts, spec: LabelSpec) -> ConventionError | None:
    """Return why the class count should not be inferred from these ids, or None.

    When ``num_classes`` is not given, K is the largest label + 1. Ids that look like a void
    or binary convention make that K wrong, and a document written with it would go into a
    training config unnoticed (VOC without its ignored 255, a 0/255 binary mask, 0/127/254
    gray levels, 0/1000/2000), and so do photographs (most of 0..255 occur). Dense ids are
    never refused: CamVid's void 11 beside 0..10 cannot be told from a twelfth class.
    """
    if spec.num_classes is not None:
        return None
    labels = np.flatnonzero(counts.present)
    k = counts.num_classes
    if labels.size < 2:
        return None
    largest, below = int(labels[-1]), int(labels[-2])
    void = largest in VOID_VALUES and below != largest - 1
    sparse = largest >= SPARSE_FROM and labels.size * SPARSE_RATIO <= k
    photographs = k == 256 and labels.size > 128
    if not (void or sparse or photographs):
        return None
    shown = ", ".join(map(str, labels[:6])) + (", ..." if labels.size > 6 else "")
    if photographs:
        hint = (
            f"{labels.size} of the 256 values 0..255 occur: these look like photographs or "
            "gray images, not label masks"
        )
    else:
        kind = (
            "like a binary mask"
            if labels.size == 2
            else "like classes and a void value"
            if void
            else "sparse"
        )
        hint = (
            f"class ids look {kind}, not classes 0..{k - 1}: {labels.size} of {k} ids occur "
            f"({shown})"
        )
    ways = [(f"ignore_index=({largest},)", f"--ignore-index {largest}")]
    nonzero = [int(v) for v in labels if v]
    levels = labels.size == 2 or below >= SPARSE_FROM  # no small class ids among them
    if levels and len(nonzero) <= MAP_AT_MOST and labels[0] == 0:
        pairs = [(v, rank) for rank, v in enumerate(nonzero, start=1) if v != rank]
        flags = " ".join(f"--map {v}:{rank}" for v, rank in pairs)
        ways.append((f"mapping={tuple(pairs)!r}", flags))
    else:
        ways.append((f"mapping=(({largest}, DST),)", f"--map {largest}:DST"))
    ways.append((f"num_classes={k} to keep them as classes", f"--num-classes {k} to keep them"))
    return ConventionError(hint, tuple(ways))
