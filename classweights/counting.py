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
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import MaskError
from .masks import TABLE_SIZE, Histogram, colour_hex
from .presets import find_preset

#: Without ``--num-classes`` the class count is the largest label + 1; past this, a label is
#: far more likely an id space (instance ids, colours packed in an int) than a class.
MAX_IMPLICIT_CLASSES = 65536

#: Example files kept for each unexpected value.
MAX_EXAMPLES = 5

#: Values datasets use for "no class": VOC and Cityscapes trainIds use 255, 16-bit sets 65535.
VOID_VALUES = (255, 65535)

#: How an unexpected value is known: ("label", id after the map), ("value", raw value not
#: allowed) or ("colour", 0xRRGGBB).
Key = tuple[str, int]

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
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, not {self.num_classes}")
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


def _tally(kind: str, values: np.ndarray, counts: np.ndarray) -> list[tuple[Key, int]]:
    return [((kind, int(v)), int(n)) for v, n in zip(values, counts, strict=True)]


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
    """Per-class sums (int64 arrays of length K) and totals; ``a + b`` adds two disjoint sets."""

    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    files: int = 0
    ignored: int = 0
    unexpected: dict[Key, Unexpected] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, why): files skipped

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
            pixels, images, image_pixels, self.files, self.ignored, unexpected, errors
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
        for key, pixels in unexpected:
            self.unexpected[key] = self.unexpected.get(key, Unexpected()) + Unexpected(
                pixels, 1, [(path, pixels)]
            )

    def add_masks(
        self, histograms: Sequence[Histogram], spec: LabelSpec, paths: Sequence[str]
    ) -> None:
        """Add many masks: the same sums as `add_mask` on each, in a dozen numpy calls for all.

        Classifying a mask on its own takes as many numpy calls as counting it. Here the
        values of all index masks are looked up at once and summed per (mask, class) in one
        weighted bincount; memory grows with the masks' distinct values, never with masks
        times classes. Colour masks, values outside the lookup table and masks holding a
        value that may not occur (tallied with its file) go through `add_mask`.
        """
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
            unexpected=dict(sorted(unexpected.items())),
            errors=sorted(a.errors + b.errors),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassCounts):
            return NotImplemented
        return (
            (self.files, self.ignored, self.unexpected, self.errors)
            == (other.files, other.ignored, other.unexpected, other.errors)
        ) and all(
            np.array_equal(x, y) for x, y in zip(self._arrays(), other._arrays(), strict=True)
        )

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.pixels, self.images, self.image_pixels


def unexpected_summary(counts: ClassCounts, spec: LabelSpec, most: int = 3) -> str | None:
    """Return one line on the values that may not occur, naming example files; None if none."""
    if not counts.unexpected:
        return None
    parts = []
    for key, tally in list(counts.unexpected.items())[:most]:
        path, _ = tally.examples[0]
        parts.append(
            f"{path}: {spec.describe(key)} ({tally.pixels:,} pixels in {tally.files:,} files); "
            f"{spec.advice(key)}"
        )
    more = len(counts.unexpected) - most
    return " | ".join(parts) + (f" | and {more} more values" if more > 0 else "")


def sparse_label_hint(counts: ClassCounts, spec: LabelSpec) -> str | None:
    """Return a warning when the class count was inferred from labels that include a void value.

    The classic case: VOC or Cityscapes trainIds (0..20 or 0..18) plus the void label 255,
    scanned without ``--ignore-index 255``, silently become 256 classes.
    """
    if spec.num_classes is not None:
        return None
    labels = np.flatnonzero(counts.present)
    if labels.size < 2 or labels[-1] not in VOID_VALUES or labels[-2] == labels[-1] - 1:
        return None
    void, below = int(labels[-1]), int(labels[-2])
    hint = (
        f"labels look sparse: {labels.size} of {counts.num_classes} class ids occur "
        f"(largest {void}, next {below}); did you mean ignore_index={void}"
    )
    if labels.size == 2:  # a binary mask stored as 0/255
        hint += f", or mapping={{{void}: 1}} for a binary mask"
    return hint + "? Pass num_classes to keep all the ids."
