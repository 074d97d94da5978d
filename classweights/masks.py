"""Reading label masks: finding them on disk and decoding each to a histogram of its raw values.

A mask is reduced to ``(values, counts)``: its distinct raw values and how many pixels hold
each. Remapping, ignoring and range checks then work on a handful of values instead of millions
of pixels (see `classweights.counting`).
"""

from __future__ import annotations

import glob
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from .errors import InputError, MaskError

#: Extensions a directory is searched for when no ``--glob`` is given.
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".gif", ".npy")

#: Pillow modes whose pixels are class ids (DESIGN.md, "Mask formats and conventions").
INDEX_MODES = ("P", "L", "1", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")

# What decoders raise on a broken file: Pillow alone uses most of these.
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class MaskFile:
    """A mask to count: ``path`` to open it, ``name`` relative to the directory it was found in."""

    path: str
    name: str


def find_masks(paths: Iterable[str | os.PathLike], pattern: str | None = None) -> list[MaskFile]:
    """Return the masks that ``paths`` (directories, files or globs) name, without repeats.

    Directories are searched recursively, following links but never into a loop, in sorted
    order; ``pattern`` (a glob on the file name, or on the relative path when it holds a
    ``/``) narrows what counts there, else `MASK_SUFFIXES` do. Hidden files are left out.
    """
    found: list[MaskFile] = []
    seen: set[str] = set()
    for arg in paths:
        arg = os.fspath(arg)
        for mask in _expand(arg, pattern):
            real = os.path.realpath(mask.path)
            if real not in seen:
                seen.add(real)
                found.append(mask)
    if not found:
        where = ", ".join(os.fspath(p) for p in paths) or "no paths"
        narrowed = f" matching {pattern!r}" if pattern else ""
        raise InputError(f"{where}: no masks found{narrowed}")
    return found


def _expand(arg: str, pattern: str | None) -> list[MaskFile]:
    if os.path.isdir(arg):
        return _walk(arg, pattern)
    if os.path.isfile(arg):
        return [MaskFile(arg, Path(arg).as_posix())]
    if glob.has_magic(arg):
        masks: list[MaskFile] = []
        for match in sorted(glob.glob(arg, recursive=True)):
            masks += _walk(match, pattern) if os.path.isdir(match) else [MaskFile(match, match)]
        return masks
    raise InputError(f"{arg}: no such file or directory")


def _walk(root: str, pattern: str | None) -> list[MaskFile]:
    def wanted(name: str, relative: str) -> bool:
        if name.startswith("."):
            return False
        if pattern is None:
            return name.lower().endswith(MASK_SUFFIXES)
        return fnmatch(relative if "/" in pattern else name, pattern)

    masks = []
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:  # a link back up the tree
            dirs.clear()
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(folder, name)
            relative = Path(os.path.relpath(path, root)).as_posix()
            if wanted(name, relative):
                masks.append(MaskFile(path, relative))
    return masks


def read_histogram(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(values, counts)``: the distinct raw values in the mask and their pixel counts.

    Both are int64; ``values`` is sorted and every count is positive. Raises `MaskError`
    naming the file when it cannot be read or is not an index mask.
    """
    try:
        if os.fspath(path).lower().endswith(".npy"):
            return _array_histogram(np.load(path, mmap_mode="r", allow_pickle=False), path)
        return _image_histogram(path)
    except MaskError:
        raise
    except _READ_ERRORS as error:
        raise MaskError(path, f"cannot read mask: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def _image_histogram(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(path) as image:
        # Every frame of a multi-page TIFF or GIF is a slice of one label volume.
        frames = [_frame_histogram(frame, path) for frame in ImageSequence.Iterator(image)]
    return frames[0] if len(frames) == 1 else _sum_histograms(frames)


def _frame_histogram(image: Image.Image, path: object) -> tuple[np.ndarray, np.ndarray]:
    if image.mode in ("P", "L"):
        # The palette index is the label: a P image is never converted to RGB.
        return _dense(np.array(image.histogram(), np.int64))
    if image.mode == "1":
        # Pillow's histogram of a bilevel image fills bins 0 and 255; the labels are 0 and 1.
        counts = image.histogram()
        return _dense(np.array([counts[0], counts[255]], np.int64))
    if image.mode in INDEX_MODES:
        # Wider modes go through numpy: Pillow's histogram() bins I;16 into 256 buckets.
        return _array_histogram(np.asarray(image), path)
    raise MaskError(
        path,
        f"mode {image.mode} image is not an index mask (one class id per pixel, mode P, L, 1, "
        "I;16 or I); convert colour-coded masks to class ids first",
    )


def _array_histogram(array: np.ndarray, path: object) -> tuple[np.ndarray, np.ndarray]:
    """Count an integer array exactly, whatever its shape (2-D masks and 3-D volumes alike)."""
    kind = array.dtype.kind
    if kind == "b":
        array = array.view(np.uint8)
    elif kind == "f":
        array = _integral(array, path)
    elif kind not in "iu":
        raise MaskError(path, f"holds {array.dtype} values, not integer class ids")
    flat = np.ravel(array)
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if flat.dtype.kind == "i" or flat.dtype.itemsize > 2:  # may be negative or huge
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= 1 << 16:
            values, counts = np.unique(flat, return_counts=True)
            return values.astype(np.int64), counts.astype(np.int64)
    return _dense(np.bincount(flat))


def _integral(array: np.ndarray, path: object) -> np.ndarray:
    finite = np.isfinite(array)
    whole = finite & (np.floor(array) == array)
    if not whole.all():
        bad = array[~whole].flat[0]
        raise MaskError(path, f"holds the non-integral value {bad}; class ids must be integers")
    return array.astype(np.int64)


def _dense(histogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.flatnonzero(histogram)
    return values.astype(np.int64), histogram[values].astype(np.int64)


def _sum_histograms(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    distinct, slot = np.unique(values, return_inverse=True)
    total = np.zeros(len(distinct), np.int64)
    np.add.at(total, slot, counts)
    return distinct, total
