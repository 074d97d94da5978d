"""Reading label masks: finding them on disk and decoding each to a histogram of its raw values.

A mask is reduced to a `Histogram`: its distinct raw values and how many pixels hold each.
Remapping, ignoring and range checks then work on a handful of values instead of millions of
pixels (see `classweights.counting`). The raw value of an index mask is its pixel value; of a
colour mask, the colour packed as ``0xRRGGBB``.
"""

from __future__ import annotations

import glob
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from . import png
from .errors import InputError, MaskError

#: Extensions a directory is searched for when no ``--glob`` is given.
MASK_SUFFIXES = (
    ".png", ".tif", ".tiff", ".bmp", ".gif", ".jpg", ".jpeg", ".npy", ".npz", ".nii", ".nii.gz",
)  # fmt: skip

#: Lossy formats: a mask stored this way has wrong ids along every edge.
LOSSY_SUFFIXES = (".jpg", ".jpeg")

#: Pillow modes whose pixels are class ids (DESIGN.md, "Mask formats and conventions").
INDEX_MODES = ("P", "L", "1", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
COLOUR_MODES = ("RGB", "RGBA")

# What decoders raise on a broken file: Pillow alone uses most of these.
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    KeyError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class MaskFile:
    """A mask to count.

    ``path`` opens it; ``name`` is its path relative to the directory it was found in (or to
    the fixed part of a glob); ``region``, when set, is a mask of the pixels to count.
    """

    path: str
    name: str
    region: str | None = None


@dataclass(frozen=True)
class Histogram:
    """The distinct raw values of a mask (sorted int64) and their pixel counts (positive int64).

    ``colour`` says the values are colours packed as 0xRRGGBB rather than class ids.
    """

    values: np.ndarray
    counts: np.ndarray
    colour: bool = False

    @property
    def size(self) -> int:
        """Return the number of pixels (voxels) counted, whatever their value."""
        return int(self.counts.sum())


def colour_hex(packed: int) -> str:
    """Return a packed 0xRRGGBB colour as ``#rrggbb``."""
    return f"#{packed:06x}"


def find_masks(paths: Iterable[str | os.PathLike], pattern: str | None = None) -> list[MaskFile]:
    """Return the masks that ``paths`` (directories, files or globs) name, without repeats.

    Directories are searched recursively, following links but never into a loop, in sorted
    order; ``pattern`` (a glob on the file name, or on the relative path when it holds a
    ``/``) narrows what counts there, else `MASK_SUFFIXES` do. Hidden files are left out.
    """
    paths = [os.fspath(p) for p in paths]
    found: list[MaskFile] = []
    seen: set[str] = set()
    for arg in paths:
        for mask in _expand(arg, pattern):
            real = os.path.realpath(mask.path)
            if real not in seen:
                seen.add(real)
                found.append(mask)
    if not found:
        narrowed = f" matching {pattern!r}" if pattern else ""
        raise InputError(f"{', '.join(paths) or 'no paths'}: no masks found{narrowed}")
    return found


def _expand(arg: str, pattern: str | None) -> list[MaskFile]:
    if os.path.isdir(arg):
        return _walk(arg, pattern)
    if os.path.isfile(arg):
        return [MaskFile(arg, Path(arg).name)]
    if glob.has_magic(arg):
        # Names are relative to the part of the glob before its first wildcard.
        fixed = Path(*[p for p in _until_magic(Path(arg).parts)]) if Path(arg).parts else Path()
        masks: list[MaskFile] = []
        for match in sorted(glob.glob(arg, recursive=True)):
            if os.path.isdir(match):
                masks += _walk(match, pattern)
            elif not Path(match).name.startswith("."):
                masks.append(MaskFile(match, Path(os.path.relpath(match, fixed)).as_posix()))
        return masks
    raise InputError(f"{arg}: no such file or directory")


def _until_magic(parts: tuple[str, ...]) -> Iterable[str]:
    for part in parts[:-1]:
        if glob.has_magic(part):
            return
        yield part


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


def pair_regions(masks: list[MaskFile], region_dir: str | os.PathLike) -> list[MaskFile]:
    """Return ``masks`` each paired with the region mask of the same relative path and stem.

    The region may have any extension (a ``.png`` field-of-view for a ``.tif`` label).
    Raises `MaskError` naming the first mask that has no region file.
    """
    regions = {_stem(m.name): m.path for m in _walk(os.fspath(region_dir), None)}
    paired = []
    for mask in masks:
        region = regions.get(_stem(mask.name))
        if region is None:
            raise MaskError(mask.path, f"no region mask {_stem(mask.name)}.* in {region_dir}")
        paired.append(MaskFile(mask.path, mask.name, region))
    return paired


def _stem(name: str) -> str:
    for suffix in (".nii.gz", *MASK_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def read_histogram(mask: MaskFile | str | os.PathLike, npz_key: str | None = None) -> Histogram:
    """Return the histogram of a mask's raw values, counting only its region if it has one.

    Raises `MaskError` naming the file when it cannot be read or is not a mask.
    """
    if not isinstance(mask, MaskFile):
        mask = MaskFile(os.fspath(mask), Path(mask).name)
    try:
        if mask.region is None:
            return _whole_histogram(mask.path, npz_key)
        labels, colour = decode(mask.path, npz_key)
        inside, _ = decode(mask.region, npz_key)
        if inside.shape != labels.shape:
            raise MaskError(
                mask.path,
                f"is {_shape(labels)} but its region mask {mask.region} is {_shape(inside)}",
            )
        return _array_histogram(labels[inside != 0], mask.path, colour)
    except MaskError:
        raise
    except _READ_ERRORS as error:
        raise MaskError(mask.path, f"cannot read mask: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not an image format Pillow knows"  # its own message names a BytesIO
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def _shape(array: np.ndarray) -> str:
    return "x".join(map(str, array.shape))


def _whole_histogram(path: str, npz_key: str | None) -> Histogram:
    reader = _array_reader(path)
    if reader is not None:
        return _array_histogram(reader(path, npz_key), path)
    with open(path, "rb") as file:
        data = file.read()
    counts = png.histogram(data)
    if counts is not None:
        return _dense(counts)
    with Image.open(io.BytesIO(data)) as image:
        # Every frame of a multi-page TIFF or GIF is a slice of one label volume.
        frames = [_frame_histogram(frame, path) for frame in ImageSequence.Iterator(image)]
    return frames[0] if len(frames) == 1 else _sum_histograms(frames)


def _frame_histogram(image: Image.Image, path: str) -> Histogram:
    if image.mode in ("P", "L"):
        # The palette index is the label: a P image is never converted to RGB.
        return _dense(np.array(image.histogram(), np.int64))
    if image.mode == "1":
        # Pillow's histogram of a bilevel image fills bins 0 and 255; the labels are 0 and 1.
        counts = image.histogram()
        return _dense(np.array([counts[0], counts[255]], np.int64))
    if image.mode in COLOUR_MODES:
        # getcolors counts exactly in C; alpha is not part of a class colour.
        colours = image.getcolors(image.width * image.height) or []
        values = np.array([_pack(rgb) for _, rgb in colours], np.int64)
        counts = np.array([n for n, _ in colours], np.int64)
        return _sum_histograms([Histogram(values, counts, colour=True)])
    return _array_histogram(_image_array(image, path), path)


def decode(path: str, npz_key: str | None = None) -> tuple[np.ndarray, bool]:
    """Return a mask's raw values as an array, and whether they are colours (packed 0xRRGGBB)."""
    reader = _array_reader(path)
    if reader is not None:
        return reader(path, npz_key), False
    with Image.open(path) as image:
        frames = [_image_array(frame, path) for frame in ImageSequence.Iterator(image)]
        colour = image.mode in COLOUR_MODES
    return (frames[0] if len(frames) == 1 else np.stack(frames)), colour


def _image_array(image: Image.Image, path: str) -> np.ndarray:
    if image.mode in COLOUR_MODES:
        rgb = np.asarray(image)[..., :3].astype(np.int64)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    if image.mode in INDEX_MODES:
        # Wider modes go through numpy: Pillow's histogram() bins I;16 into 256 buckets.
        return np.asarray(image)
    raise MaskError(
        path,
        f"mode {image.mode} image is not a mask: class ids must be one value per pixel "
        "(mode P, L, 1, I;16 or I), or colours (RGB, with --colors)",
    )


def _pack(rgb: tuple[int, ...]) -> int:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _read_npy(path: str, npz_key: str | None) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _read_npz(path: str, npz_key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if npz_key is None and len(keys) == 1:
            npz_key = keys[0]
        if npz_key not in keys:
            wanted = f"no array {npz_key!r}" if npz_key else "several arrays"
            raise MaskError(
                path, f"holds {wanted}; choose one of {', '.join(sorted(keys))} with --npz-key"
            )
        return archive[npz_key]


def _read_nifti(path: str, npz_key: str | None) -> np.ndarray:
    try:
        import nibabel
    except ImportError:
        raise MaskError(
            path, "reading NIfTI volumes needs nibabel: pip install 'classweights[nifti]'"
        ) from None
    return np.asanyarray(nibabel.load(path).dataobj)


_ARRAY_READERS: dict[str, Callable[[str, str | None], np.ndarray]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".nii": _read_nifti,
    ".nii.gz": _read_nifti,
}


def _array_reader(path: str) -> Callable[[str, str | None], np.ndarray] | None:
    name = path.lower()
    return next((r for suffix, r in _ARRAY_READERS.items() if name.endswith(suffix)), None)


def _array_histogram(array: np.ndarray, path: object, colour: bool = False) -> Histogram:
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
        return Histogram(np.zeros(0, np.int64), np.zeros(0, np.int64), colour)
    if flat.dtype.kind == "i" or flat.dtype.itemsize > 2:  # may be negative or huge
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= 1 << 16:
            values, counts = np.unique(flat, return_counts=True)
            return Histogram(values.astype(np.int64), counts.astype(np.int64), colour)
    return _dense(np.bincount(flat), colour)


def _integral(array: np.ndarray, path: object) -> np.ndarray:
    whole = np.isfinite(array) & (np.floor(array) == array)
    if not whole.all():
        bad = np.asarray(array)[~whole].flat[0]
        raise MaskError(path, f"holds the non-integral value {bad}; class ids must be integers")
    return array.astype(np.int64)


def _dense(histogram: np.ndarray, colour: bool = False) -> Histogram:
    values = np.flatnonzero(histogram)
    return Histogram(values.astype(np.int64), histogram[values].astype(np.int64), colour)


def _sum_histograms(parts: list[Histogram]) -> Histogram:
    values = np.concatenate([h.values for h in parts])
    counts = np.concatenate([h.counts for h in parts])
    distinct, slot = np.unique(values, return_inverse=True)
    total = np.zeros(len(distinct), np.int64)
    np.add.at(total, slot, counts)
    return Histogram(distinct, total, any(h.colour for h in parts))
