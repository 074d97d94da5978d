"""The counting model: per-class pixel statistics as sums that add up across masks and shards.

For every class c, over all masks (DESIGN.md, "Counting model"):

- ``pixels[c]``: pixels labelled c;
- ``images[c]``: masks in which c occurs at least once;
- ``image_pixels[c]``: all pixels (ignored ones included) of the masks in which c occurs;

and the totals ``files`` and ``ignored``. These sums are all that every weight method needs,
and they add up, which makes the scan embarrassingly parallel and ``merge`` exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .errors import MaskError

#: Without ``--num-classes`` the class count is the largest label + 1; past this, a label is
#: far more likely an id space (instance ids, colours packed in an int) than a class.
MAX_IMPLICIT_CLASSES = 65536


@dataclass(frozen=True)
class LabelSpec:
    """How raw mask values become class ids: remap, then drop ignored values, then range-check.

    ``mapping`` holds ``(src, dst)`` pairs applied to raw values before anything else, so a
    value may be mapped onto an ignored one. ``num_classes`` of None means "largest label + 1".
    """

    num_classes: int | None = None
    ignore_index: tuple[int, ...] = ()
    mapping: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, not {self.num_classes}")
        sources = [src for src, _ in self.mapping]
        if len(set(sources)) != len(sources):
            raise ValueError(f"a value is mapped twice in {list(self.mapping)}")
        # Canonical order, so that equal settings compare (and serialise) equal.
        object.__setattr__(self, "ignore_index", tuple(sorted({int(v) for v in self.ignore_index})))
        object.__setattr__(
            self, "mapping", tuple(sorted((int(s), int(d)) for s, d in self.mapping))
        )

    @cached_property
    def _map_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        src, dst = zip(*self.mapping, strict=True) if self.mapping else ((), ())
        return np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)

    def remap(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` with every mapped source value replaced by its destination."""
        if not self.mapping:
            return values
        src, dst = self._map_arrays
        at = np.searchsorted(src, values).clip(max=len(src) - 1)
        return np.where(src[at] == values, dst[at], values)

    def classify(
        self, values: np.ndarray, counts: np.ndarray, path: object
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Return ``(labels, counts, ignored)`` for one mask's raw-value histogram.

        Raises `MaskError` naming ``path`` for a label outside ``0..K-1``.
        """
        values = self.remap(values)
        ignored = np.isin(values, self.ignore_index)
        labels, kept = values[~ignored], counts[~ignored]
        if labels.size:
            self._check_range(int(labels.min()), int(labels.max()), path)
        return labels, kept, int(counts[ignored].sum())

    def _check_range(self, low: int, high: int, path: object) -> None:
        if low < 0:
            raise MaskError(path, f"label {low} is negative; map it (--map {low}:DST) or ignore it")
        limit = self.num_classes or MAX_IMPLICIT_CLASSES
        if high >= limit:
            if self.num_classes is None:
                raise MaskError(
                    path,
                    f"label {high} is too large to be a class id; "
                    f"pass --num-classes, --ignore-index {high} or --map {high}:DST",
                )
            raise MaskError(
                path,
                f"label {high} is outside 0..{self.num_classes - 1} "
                f"(--num-classes {self.num_classes}); "
                f"pass --ignore-index {high} if it marks pixels to leave out",
            )


@dataclass
class ClassCounts:
    """Per-class sums (int64 arrays of length K) and totals; ``a + b`` adds two disjoint sets."""

    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    files: int = 0
    ignored: int = 0

    @classmethod
    def zeros(cls, num_classes: int = 0) -> ClassCounts:
        """Return empty counts for ``num_classes`` classes."""
        return cls(*(np.zeros(num_classes, np.int64) for _ in range(3)))

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
        grown = [np.concatenate([a, np.zeros(pad, np.int64)]) for a in self._arrays()]
        return ClassCounts(*grown, files=self.files, ignored=self.ignored)

    def add_mask(
        self,
        values: np.ndarray,
        counts: np.ndarray,
        spec: LabelSpec,
        path: object,
    ) -> None:
        """Add one mask, given as its raw-value histogram, to these counts (in place).

        ``values`` are the distinct raw values of the mask and ``counts`` their pixel counts
        (all positive); the mask's size, ignored pixels included, is ``counts.sum()``.
        """
        labels, kept, ignored = spec.classify(values, counts, path)
        if labels.size and labels.max() >= self.num_classes:
            grown = self.resized(int(labels.max()) + 1)
            self.pixels, self.images, self.image_pixels = grown._arrays()
        np.add.at(self.pixels, labels, kept)  # add.at: after a remap, labels may repeat
        occurring = np.unique(labels)
        self.images[occurring] += 1
        self.image_pixels[occurring] += int(counts.sum())
        self.files += 1
        self.ignored += ignored

    def __add__(self, other: ClassCounts) -> ClassCounts:
        size = max(self.num_classes, other.num_classes)
        a, b = self.resized(size), other.resized(size)
        return ClassCounts(
            *(x + y for x, y in zip(a._arrays(), b._arrays(), strict=True)),
            files=a.files + b.files,
            ignored=a.ignored + b.ignored,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassCounts):
            return NotImplemented
        return (self.files, self.ignored) == (other.files, other.ignored) and all(
            np.array_equal(x, y) for x, y in zip(self._arrays(), other._arrays(), strict=True)
        )

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.pixels, self.images, self.image_pixels


#: Values datasets use for "no class": VOC and Cityscapes trainIds use 255, 16-bit sets 65535.
VOID_VALUES = (255, 65535)


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
        f"(largest {void}, next {below}); did you mean --ignore-index {void}"
    )
    if labels.size == 2:  # a binary mask stored as 0/255
        hint += f", or --map {void}:1 for a binary mask"
    return hint + "? Pass --num-classes to keep all the ids."
