"""Multi-label and one-hot masks: one binary mask per class, counted channel by channel.

Such masks have a class axis: a ``(C, H, W)`` or ``(H, W, C)`` array (``.npy``, ``.npz``), the
pages of a multi-page TIFF, the channels of a PNG or TIFF, or one binary mask file per class
(``masks/<class>/<stem>.png``). A pixel may hold several classes (multi-label, for a sigmoid
head) or exactly one (one-hot). So the counting model of a class-id mask does not hold: the
class pixels n_c may add up to more or less than N, the pixels of the images. What a
sigmoid head's loss takes is, per class, negatives over positives:
``pos_weight[c] = (N - n_c) / n_c``, which PyTorch's ``BCEWithLogitsLoss(pos_weight=...)``
broadcasts against ``(N, C, H, W)`` logits when shaped ``(C, 1, 1)``.

Every pixel is also tallied by how many classes it holds, so a one-hot dataset whose channels
do not sum to one somewhere is reported, never silently taken for multi-label.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .counting import MAX_EXAMPLES
from .errors import InputError, MaskError, WeightError
from .masks import (
    _READ_ERRORS,
    COLOUR_MODES,
    MaskFile,
    ReadOptions,
    _array_reader,
    _frames,
    _image_array,
    _reason,
    find_masks,
    open_checked,
    shape_text,
    stem,
)
from .weights import MISSING

#: ``--channels``: where the class axis of an array is.
CHANNELS = ("first", "last")

#: The values a binary mask may hold: 0 is "off"; 1 (arrays, mode 1) or 255 (8-bit images) "on".
BINARY = (0, 1, 255)


def read_channels(path: str, channels: str, options: ReadOptions = ReadOptions()) -> np.ndarray:
    """Return a mask with a class axis as a (C, pixels) bool array: which pixels each class holds.

    Arrays (``.npy``, ``.npz``) hold the classes on their first or last axis, as ``channels``
    says; an image holds them as its pages (a multi-page TIFF) or its channels (an RGB or
    RGBA PNG or TIFF), whatever ``channels`` says. Raises `MaskError` naming the file for a
    mask with no class axis or a value other than 0, 1 and 255.
    """
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, not {channels!r}")
    try:
        reader = _array_reader(path)
        if reader is not None:
            array = np.asarray(reader(path, options))
            if array.ndim < 3:
                raise MaskError(path, f"has no class axis: it is {shape_text(array.shape)}")
            if channels == "last":
                array = np.moveaxis(array, -1, 0)
        else:
            array = _image_channels(path, options)
        return _binary(array.reshape(len(array), -1), path)
    except MaskError:
        raise
    except _READ_ERRORS as error:
        raise MaskError(path, f"cannot read mask: {_reason(error)}") from None


def _image_channels(path: str, options: ReadOptions) -> np.ndarray:
    with open_checked(path, options) as image:
        # Each page as it comes: the frames are one image object, seeked page after page.
        pages = [np.array(_image_array(frame, path)) for frame in _frames(image, path, options)]
        if len(pages) > 1:
            return np.stack(pages)
        image.seek(0)
        if image.mode in COLOUR_MODES:
            return np.moveaxis(np.asarray(image), -1, 0)
    raise MaskError(path, f"has no class axis: a single {image.mode} image; need pages or channels")


def _binary(array: np.ndarray, path: str) -> np.ndarray:
    """Return ``array != 0``, refusing a value that is not 0, 1 or 255 (a class id, a
    probability): a binary mask holds nothing else."""
    if array.dtype == bool:
        return array
    values = np.unique(array)
    stray = values[~np.isin(values, BINARY)]
    if stray.size:
        raise MaskError(
            path, f"holds the value {stray[0]}; a binary mask per class holds 0 and 1 (or 255)"
        )
    return array != 0


def read_class_files(
    files: Sequence[tuple[int, str]], classes: int, options: ReadOptions
) -> np.ndarray:
    """Return one image's (C, pixels) bool array from its binary mask files, one per class.

    ``files`` are (class id, path) pairs; a class without a file holds no pixel of the image.
    Raises `MaskError` for a file of another size than the first.
    """
    channels: np.ndarray | None = None
    first = ""
    for class_id, path in files:
        try:
            array = read_channels_file(path, options)
        except _READ_ERRORS as error:
            raise MaskError(path, f"cannot read mask: {_reason(error)}") from None
        if channels is None:
            channels, first = np.zeros((classes, array.size), bool), path
            shape = array.shape
        elif array.shape != shape:
            raise MaskError(
                path, f"is {shape_text(array.shape)} but {first} is {shape_text(shape)}"
            )
        channels[class_id] = _binary(array.ravel(), path)
    if channels is None:
        raise ValueError("no class files")  # an Item always has one
    return channels


def read_channels_file(path: str, options: ReadOptions) -> np.ndarray:
    """Return one class's binary mask file as a 2-D array."""
    reader = _array_reader(path)
    if reader is not None:
        return np.asarray(reader(path, options))
    with open_checked(path, options) as image:
        if image.mode in COLOUR_MODES:
            raise MaskError(path, f"is a {image.mode} image, not a binary mask")
        return _image_array(image, path)


@dataclass
class ChannelCounts:
    """Sums over masks with a class axis; ``a + b`` adds two disjoint sets.

    ``positives[c]``: pixels holding class c; ``images[c]``: masks with at least one;
    ``pixels``: all pixels of the masks (N); ``no_class`` and ``several``: pixels holding no
    class and more than one; ``not_one_hot``: masks with either, with a few (path, pixels).
    """

    positives: np.ndarray
    images: np.ndarray
    pixels: int = 0
    files: int = 0
    no_class: int = 0
    several: int = 0
    not_one_hot: int = 0
    examples: list[tuple[str, int]] = field(default_factory=list)
    first: str | None = None  # a mask's path, to name in messages

    @classmethod
    def zeros(cls, classes: int) -> ChannelCounts:
        return cls(np.zeros(classes, np.int64), np.zeros(classes, np.int64))

    def add(self, channels: np.ndarray, path: str) -> None:
        """Add one mask, a (C, pixels) bool array (in place)."""
        if len(channels) != len(self.positives):
            raise MaskError(
                path, f"has {len(channels)} classes but the masks before it {len(self.positives)}"
            )
        positives = np.count_nonzero(channels, axis=1)
        held = np.count_nonzero(channels, axis=0)  # classes of each pixel
        self.positives += positives
        self.images += positives > 0
        self.pixels += channels.shape[1]
        self.files += 1
        self.first = self.first or path
        no_class, several = int((held == 0).sum()), int((held > 1).sum())
        self.no_class += no_class
        self.several += several
        if no_class or several:
            self.not_one_hot += 1
            self.examples = sorted([*self.examples, (path, no_class + several)])[:MAX_EXAMPLES]

    def __add__(self, other: ChannelCounts) -> ChannelCounts:
        if len(self.positives) != len(other.positives) and self.files and other.files:
            raise MaskError(
                str(other.first),
                f"has {len(other.positives)} classes but {self.first} has "
                f"{len(self.positives)}; every mask must hold the same classes",
            )
        if not self.files:
            return other
        if not other.files:
            return self
        return ChannelCounts(
            self.positives + other.positives,
            self.images + other.images,
            self.pixels + other.pixels,
            self.files + other.files,
            self.no_class + other.no_class,
            self.several + other.several,
            self.not_one_hot + other.not_one_hot,
            sorted(self.examples + other.examples)[:MAX_EXAMPLES],
            self.first,
        )


def pos_weight(counts: ChannelCounts, missing: str = "zero") -> np.ndarray:
    """Return (N - n_c) / n_c per class, shaped (C, 1, 1) for ``(N, C, H, W)`` logits.

    N is the pixels of all the masks, n_c those holding class c: negatives over positives,
    what PyTorch's ``BCEWithLogitsLoss(pos_weight=...)`` takes. A class with no pixels takes
    the ``missing`` policy (`weights.MISSING`), as class weights do.
    """
    if missing not in MISSING:
        raise ValueError(f"unknown missing {missing!r}; choose from {', '.join(MISSING)}")
    n = counts.positives.astype(np.float64)
    present = n > 0
    ratio = np.zeros_like(n)
    ratio[present] = (counts.pixels - n[present]) / n[present]
    absent = np.flatnonzero(~present).tolist()
    if absent and missing == "error":  # weights.MISSING's message names --num-classes
        raise WeightError(
            f"classes {absent} have no positive pixels (--missing error); check the masks, "
            "their channels or the class folders"
        )
    if absent:
        ratio[~present] = MISSING[missing](ratio[present], absent)
    return ratio.reshape(-1, 1, 1)


@dataclass(frozen=True)
class Item:
    """One mask to count: an array or image with a class axis (``path``), or binary mask
    files, one per class (``files``: (class id, path) pairs)."""

    name: str
    path: str = ""
    files: tuple[tuple[int, str], ...] = ()


def class_folders(
    root: str | os.PathLike, pattern: str | None = None
) -> tuple[list[str], list[Item]]:
    """Return the class names (the sub-folders of ``root``, sorted; numerically when all are
    numbers) and the items: per stem, its mask file in each class folder that has one.

    Raises `InputError` when ``root`` has no sub-folders.
    """
    root = os.fspath(root)
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(root)
            if entry.is_dir() and not entry.name.startswith(".")
        )
    except OSError as error:
        raise InputError(f"{root}: cannot list: {error.strerror}") from None
    if not names:
        raise InputError(f"{root}: no class folders (masks/<class>/<stem>.png)")
    if all(name.isdigit() for name in names):
        names.sort(key=int)
    stems: dict[str, list[tuple[int, str]]] = {}
    for class_id, name in enumerate(names):
        for mask in find_masks([os.path.join(root, name)], pattern):
            stems.setdefault(stem(mask.name), []).append((class_id, mask.path))
    return names, [Item(s, files=tuple(files)) for s, files in sorted(stems.items())]


def arrays(paths: Iterable[str | os.PathLike], pattern: str | None = None) -> list[Item]:
    """Return the masks under ``paths`` (`masks.find_masks`) as items."""
    return [Item(mask.name, mask.path) for mask in find_masks(paths, pattern)]


def count_items(
    items: Sequence[Item],
    classes: int | None,
    channels: str,
    options: ReadOptions = ReadOptions(),
) -> ChannelCounts:
    """Return the counts of ``items`` (``classes`` is needed for class files alone)."""
    counts: ChannelCounts | None = None
    for item in items:
        if item.files:
            data = read_class_files(item.files, classes or 0, options)
            where = item.files[0][1]
        else:
            data = read_channels(item.path, channels, options)
            where = item.path
        if counts is None:
            counts = ChannelCounts.zeros(len(data))
        counts.add(data, where)
    return counts or ChannelCounts.zeros(classes or 0)


def _count_task(task: tuple[Sequence[Item], int | None, str, ReadOptions]) -> ChannelCounts:
    return count_items(*task)


def count(
    items: Sequence[Item],
    classes: int | None,
    channels: str,
    options: ReadOptions = ReadOptions(),
    *,
    workers: int | None = None,
) -> ChannelCounts:
    """Return the counts of ``items`` on ``workers`` processes (`scan.local_executor`)."""
    from .scan import (
        IN_FLIGHT,
        POOL_MIN_FILES,
        InlineExecutor,
        _tasks,
        available_cores,
        local_executor,
        run_tasks,
    )

    if not items:
        raise InputError("no masks found")
    parallel = (workers or available_cores()) if len(items) >= POOL_MIN_FILES else 1
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(local_executor(parallel)) if parallel > 1 else None
        tasks = (
            (chunk, classes, channels, options) for chunk in _tasks(iter(items), parallel)
        )
        total = ChannelCounts.zeros(0)
        for part in run_tasks(
            _count_task, tasks, executor or InlineExecutor(), in_flight=IN_FLIGHT * parallel
        ):
            total = total + part
    return total


def masks_of(items: Sequence[Item]) -> list[MaskFile]:
    """Return the items as `masks.MaskFile`s (for a `scan.Source` fingerprint)."""
    return [MaskFile(item.path or item.files[0][1], item.name, _size(item)) for item in items]


def _size(item: Item) -> int:
    paths = [item.path] if item.path else [path for _, path in item.files]
    return sum(os.path.getsize(path) for path in paths)


def document(
    counts: ChannelCounts,
    *,
    layout: str,
    names: Sequence[str | None] | None,
    missing: str,
    source: dict,
    digits: int = 6,
) -> dict:
    """Return the multi-label document: per class its pixels, images, frequency n_c / N and
    pos_weight, the pos_weight (C, 1, 1), and how far the masks are from one-hot."""
    from ._version import __version__

    def rounded(value: float) -> float:
        return float(f"{value:.{digits}g}") if value else 0.0

    weights = pos_weight(counts, missing)
    names = list(names) if names else [None] * len(counts.positives)
    if len(names) != len(counts.positives):
        raise InputError(f"{len(names)} class names for masks of {len(counts.positives)} classes")
    freq = counts.positives / np.float64(counts.pixels) if counts.pixels else counts.positives * 0.0
    return {
        "classweights": __version__,
        "layout": layout,
        "num_classes": len(counts.positives),
        "missing": missing,
        "pos_weight": [[[rounded(w)]] for w in weights.ravel().tolist()],
        "classes": [
            {
                "id": c,
                "name": name,
                "pixels": pixels,
                "images": images,
                "frequency": rounded(f),
                "pos_weight": rounded(w),
            }
            for c, (name, pixels, images, f, w) in enumerate(
                zip(
                    names,
                    counts.positives.tolist(),
                    counts.images.tolist(),
                    freq.tolist(),
                    weights.ravel().tolist(),
                    strict=True,
                )
            )
        ],
        "totals": {
            "files": counts.files,
            "pixels": counts.pixels,
            "no_class": counts.no_class,
            "several_classes": counts.several,
        },
        "not_one_hot": {
            "files": counts.not_one_hot,
            "examples": [{"file": path, "pixels": n} for path, n in counts.examples],
        },
        "source": source,
    }
