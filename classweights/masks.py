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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import png
from .errors import InputError, MaskError

# Pillow is imported in the functions that use it: counting palette PNGs (`png.rows`) never
# needs it, and its import is a tenth of the tool's start-up.
if TYPE_CHECKING:
    from PIL import Image

#: Extensions a directory is searched for when no ``--glob`` is given.
MASK_SUFFIXES = (
    ".png", ".tif", ".tiff", ".bmp", ".gif", ".jpg", ".jpeg", ".npy", ".npz", ".nii", ".nii.gz",
)  # fmt: skip

#: Lossy formats: a mask stored this way has wrong ids along every edge.
LOSSY_SUFFIXES = (".jpg", ".jpeg")

#: Pillow modes whose pixels are class ids (DESIGN.md, "Mask formats and conventions").
INDEX_MODES = ("P", "L", "1", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
COLOUR_MODES = ("RGB", "RGBA")

#: Count runs of equal values rather than values while a mask has fewer runs than one per
#: this many pixels (a random-noise mask has more, and is counted value by value).
RUN_DENSITY = 8

#: Values below this are counted in a dense histogram when runs do not pay.
TABLE_SIZE = 1 << 16

#: Pillow's own limit (its ``Image.MAX_IMAGE_PIXELS``): above it, an image is taken for a
#: decompression bomb.
MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3

# What decoders raise on a broken file: Pillow alone uses most of these.
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    KeyError,
    struct.error,
    zlib.error,
)


class MaskFile(NamedTuple):  # a tuple: a scan holds one per mask, and sends them to workers
    """A mask to count.

    ``path`` opens it; ``name`` is its path relative to the directory it was found in (or to
    the fixed part of a glob); ``size`` is in bytes; ``region``, when set, is a mask of the
    pixels to count.
    """

    path: str
    name: str
    size: int = 0
    region: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How masks are read: the array to take from ``.npz`` files, and the largest image (in
    pixels, per frame) to decode, a guard against decompression bombs."""

    npz_key: str | None = None
    max_pixels: int = MAX_PIXELS


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
        for path, name in _expand(arg, pattern):
            # Repeats are the same path given twice (masks/ and masks/a.png), not two paths
            # to one file: git-annex and DVC link identical masks to one stored object. One
            # folder alone cannot repeat a path: no set of every path is kept then.
            if len(paths) > 1:
                where = os.path.abspath(path)
                if where in seen:
                    continue
                seen.add(where)
            try:
                size = os.stat(path).st_size
            except OSError as error:  # a dangling link, a link loop
                raise MaskError(path, f"cannot read mask: {error.strerror}") from None
            found.append(MaskFile(path, name, size))
    if not found:
        narrowed = f" matching {pattern!r}" if pattern else ""
        raise InputError(f"{', '.join(paths) or 'no paths'}: no masks found{narrowed}")
    return found


def _expand(arg: str, pattern: str | None) -> list[tuple[str, str]]:
    """Return the (path, name) of each mask that ``arg`` names."""
    if os.path.isdir(arg):
        return _walk(arg, pattern)
    if os.path.isfile(arg):
        return [(arg, Path(arg).name)]
    if glob.has_magic(arg):
        # Names are relative to the part of the glob before its first wildcard.
        fixed = Path(*_until_magic(Path(arg).parts))
        masks: list[tuple[str, str]] = []
        for match in sorted(glob.glob(arg, recursive=True)):
            if os.path.isdir(match):
                masks += _walk(match, pattern)
            elif not Path(match).name.startswith("."):
                masks.append((match, Path(os.path.relpath(match, fixed)).as_posix()))
        return masks
    raise InputError(f"{arg}: no such file or directory")


def _until_magic(parts: tuple[str, ...]) -> Iterable[str]:
    for part in parts[:-1]:
        if glob.has_magic(part):
            return
        yield part


def _walk(root: str, pattern: str | None) -> list[tuple[str, str]]:
    def wanted(name: str, relative: str) -> bool:
        if name.startswith("."):
            return False
        if pattern is None:
            return name.lower().endswith(MASK_SUFFIXES)
        return fnmatch(relative if "/" in pattern else name, pattern)

    masks = []
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, onerror=_unreadable_folder, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:  # a link back up the tree
            dirs.clear()
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        prefix = Path(os.path.relpath(folder, root)).as_posix() + "/"
        prefix = "" if prefix == "./" else prefix
        folder = os.path.join(folder, "")  # with one separator at the end, as join gives
        for name in sorted(files):
            if wanted(name, prefix + name):
                masks.append((folder + name, prefix + name))
    return masks


def _unreadable_folder(error: OSError) -> None:
    raise InputError(f"{error.filename}: cannot read folder: {error.strerror}")


def pair_regions(masks: list[MaskFile], region_dir: str | os.PathLike) -> list[MaskFile]:
    """Return ``masks`` each paired with the region mask of the same relative path and stem.

    The region may have any extension (a ``.png`` field-of-view for a ``.tif`` label).
    Raises `MaskError` naming the first mask that has no region file.
    """
    regions = {stem(name): path for path, name in _walk(os.fspath(region_dir), None)}
    refuse_twins(masks)
    paired = []
    for mask in masks:
        region = regions.get(stem(mask.name))
        if region is None:
            raise MaskError(mask.path, f"no region mask {stem(mask.name)}.* in {region_dir}")
        paired.append(MaskFile(mask.path, mask.name, mask.size, region))
    return paired


def refuse_twins(masks: Iterable[MaskFile]) -> None:
    """Raise `InputError` if two files have one relative stem: pairing them would be a guess."""
    seen: dict[str, str] = {}
    for mask in masks:
        twin = seen.setdefault(stem(mask.name), mask.path)
        if twin != mask.path:
            raise InputError(
                f"{mask.path}: pairs with the same file as {twin} ({stem(mask.name)}.*); "
                "give one folder of masks"
            )


def stem(name: str) -> str:
    """Return a file name without its mask extension (``a/b.nii.gz`` gives ``a/b``)."""
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def read_histogram(
    mask: MaskFile | str | os.PathLike, options: ReadOptions = ReadOptions()
) -> Histogram:
    """Return the histogram of a mask's raw values, counting only its region if it has one.

    Raises `MaskError` naming the file when it cannot be read or is not a mask.
    """
    if not isinstance(mask, MaskFile):
        mask = MaskFile(os.fspath(mask), Path(mask).name)
    try:
        if mask.region is None:
            return _whole_histogram(mask.path, options)
        labels, colour = decode(mask.path, options)
        inside = _region(mask.region, options)
        if inside.shape != labels.shape:
            raise MaskError(
                mask.path,
                f"is {shape_text(labels.shape)} but its region mask {mask.region} is "
                f"{shape_text(inside.shape)}",
            )
        return _array_histogram(labels[inside != 0], mask.path, colour)
    except MaskError:
        raise
    except _READ_ERRORS as error:
        raise MaskError(mask.path, f"cannot read mask: {_reason(error)}") from None


def _region(path: str, options: ReadOptions) -> np.ndarray:
    try:
        return decode(path, options)[0]
    except _READ_ERRORS as error:
        raise MaskError(path, f"cannot read region mask: {_reason(error)}") from None


def mask_size(path: str, options: ReadOptions = ReadOptions()) -> tuple[int, ...]:
    """Return a mask's shape, (height, width) for an image, without decoding its pixels."""
    try:
        reader = _array_reader(path)
        if reader is not None:
            return tuple(reader(path, options.npz_key).shape)
        with _open_image(path, path, options) as image:
            return image.height, image.width
    except MaskError:
        raise
    except _READ_ERRORS as error:
        raise MaskError(path, f"cannot read: {_reason(error)}") from None


@contextmanager
def _open_image(source: str | io.BytesIO, path: str, options: ReadOptions) -> Iterator[Image.Image]:
    """Open an image with Pillow, refusing one above ``max_pixels`` before it is decoded."""
    # Pillow's own guard (checked on open, and again on load for TIFF) is set aside while the
    # image is read: the check below replaces it, so that --max-pixels can raise the limit as
    # well as lower it, and Pillow prints no warning of its own.
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(source) as image:
            pixels = image.width * image.height
            if pixels > options.max_pixels:
                raise MaskError(
                    path,
                    f"is {image.width}x{image.height} = {pixels:,} pixels, more than "
                    f"--max-pixels {options.max_pixels:,} (a decompression bomb?)",
                )
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _reason(error: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image format Pillow knows"  # its own message names a BytesIO
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def shape_text(shape: tuple[int, ...]) -> str:
    """Return a shape as people write it: (4, 5) gives "4x5"."""
    return "x".join(map(str, shape))


def _whole_histogram(path: str, options: ReadOptions) -> Histogram:
    reader = _array_reader(path)
    if reader is not None:
        return _array_histogram(reader(path, options.npz_key), path)
    with open(path, "rb", buffering=0) as file:  # read whole at once: a buffer only costs
        data = file.read()
    layout = png.layout(data)  # a PNG's damage is refused here, before any decoder sees it
    if layout is not None:
        histogram = _png_histogram(layout, path, options)
        if histogram is not None:
            return histogram
    with _open_image(io.BytesIO(data), path, options) as image:
        frames = [_frame_histogram(frame, path) for frame in _frames(image, path)]
    return frames[0] if len(frames) == 1 else _sum_histograms(frames)


def _png_histogram(layout: png.Layout, path: str, options: ReadOptions) -> Histogram | None:
    """Count a PNG whose layout `png.layout` has checked; None: Pillow must open it.

    The stream is inflated (and its row count checked) on every path, so that a PNG whose
    image data ends early is refused whichever decoder would count it.
    """
    if layout.width * layout.height > options.max_pixels:
        return None  # Pillow's header says why it is refused, before it decodes a pixel
    raw = png.inflate(layout)
    if png.KERNEL is not None and layout.colour_type != png.GRAY_ALPHA:
        values, counts = png.count(layout, raw)
        return Histogram(values, counts, colour=layout.colour_type in png.COLOUR_TYPES)
    lines = png.unfiltered(layout, raw)
    if lines is None:
        return None  # Pillow decodes it faster than numpy would undo its row filters
    if layout.depth == 16:
        samples = lines[:, 1:].view(">u2")
        step = _block_rows(layout.width)
        return _u16_histogram(samples[top : top + step] for top in range(0, layout.height, step))
    values, counts = _count(lines.reshape(-1))  # one contiguous buffer, filter bytes and all
    counts[0] -= lines.shape[0]  # the filter bytes, all 0, one a row
    return Histogram(values, counts) if counts[0] else Histogram(values[1:], counts[1:])


#: A 16-bit mask is counted a block of rows of about this many pixels at a time, so that a
#: large mask needs no full-size copy of its pixels.
BLOCK_PIXELS = 1 << 20


def _block_rows(width: int) -> int:
    return max(1, BLOCK_PIXELS // width)


def _u16_histogram(blocks: Iterable[np.ndarray]) -> Histogram:
    """Count 16-bit samples given as blocks of rows."""
    table = np.zeros(1 << 16, np.int64)
    for block in blocks:
        table += np.bincount(block.reshape(-1), minlength=1 << 16)
    return Histogram(*_dense(table))


def _frames(image: Image.Image, path: str) -> Iterable[Image.Image]:
    """Yield the frames to count: every page of a TIFF (the slices of one label volume); the
    first frame of anything else (an animated GIF or PNG is not a stack of masks, and Pillow
    turns GIF frames after the first into RGB). Pages must all be colours or all class ids."""
    if image.format != "TIFF":
        yield image
        return
    from PIL import ImageSequence

    colour = image.mode in COLOUR_MODES
    for frame in ImageSequence.Iterator(image):
        if (frame.mode in COLOUR_MODES) != colour:
            raise MaskError(path, "has pages of colours and pages of class ids")
        yield frame


def _frame_histogram(image: Image.Image, path: str) -> Histogram:
    if image.mode in COLOUR_MODES:
        # getcolors counts exactly in C; alpha is not part of a class colour.
        colours = image.getcolors(image.width * image.height) or []
        values = np.array([pack_rgb(*rgb[:3]) for _, rgb in colours], np.int64)
        counts = np.array([n for n, _ in colours], np.int64)
        return _sum_histograms([Histogram(values, counts, colour=True)])
    if image.mode in ("L", "P", "1"):
        # Pillow counts 8-bit pixels exactly in C, without a copy of the image.
        scale = 255 if image.mode == "1" else _sub_byte_scale(image)
        values, counts = _dense(np.array(image.histogram(), np.int64))
        return Histogram(values // scale, counts)
    if image.mode.startswith("I;16"):
        step = _block_rows(image.width)  # no full-size copy of a large 16-bit mask
        return _u16_histogram(
            np.asarray(image.crop((0, top, image.width, min(top + step, image.height))))
            for top in range(0, image.height, step)
        )
    return _array_histogram(_image_array(image, path), path)


def _sub_byte_scale(image: Image.Image) -> int:
    """Return what Pillow multiplied an image's stored samples by: 85 for 2-bit and 17 for
    4-bit gray (it stretches them to 0-255 in mode L), else 1. Only right before the image
    is loaded: its tile, which names the stored layout, is gone after."""
    tile = getattr(image, "tile", None)
    args = tile[0][3] if tile else None  # PNG: the raw mode; TIFF: (raw mode, ...)
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return {"L;2": 85, "L;2R": 85, "L;4": 17, "L;4R": 17}.get(rawmode, 1)


def decode(path: str, options: ReadOptions = ReadOptions()) -> tuple[np.ndarray, bool]:
    """Return a mask's raw values as an array, and whether they are colours (packed 0xRRGGBB)."""
    reader = _array_reader(path)
    if reader is not None:
        return reader(path, options.npz_key), False
    with _open_image(path, path, options) as image:
        frames = [_image_array(frame, path) for frame in _frames(image, path)]
        colour = image.mode in COLOUR_MODES
    return (frames[0] if len(frames) == 1 else np.stack(frames)), colour


def _image_array(image: Image.Image, path: str) -> np.ndarray:
    if image.mode in COLOUR_MODES:
        rgb = np.asarray(image)[..., :3].astype(np.int64)
        return pack_rgb(rgb[..., 0], rgb[..., 1], rgb[..., 2])
    if image.mode == "1":
        return np.asarray(image) != 0  # labels 0 and 1, whatever Pillow stores for "on"
    scale = _sub_byte_scale(image)  # before the image is loaded: loading drops its tile
    if scale > 1:  # 2- and 4-bit gray: the stored values, not Pillow's stretched ones
        return np.asarray(image) // scale
    if image.mode in INDEX_MODES:
        # The palette index is the label: a P image is never converted to RGB. (Pillow's own
        # histogram() would bin I;16 into 256 buckets; numpy counts every value.)
        return np.asarray(image)
    raise MaskError(
        path,
        f"mode {image.mode} image is not a mask: class ids must be one value per pixel "
        "(mode P, L, 1, I;16 or I), or colours (RGB, with --colors)",
    )


def pack_rgb(red, green, blue):
    """Return a colour packed as 0xRRGGBB: of ints, or of integer arrays element by element."""
    return (red << 16) | (green << 8) | blue


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
    return Histogram(*_count(np.ravel(array)), colour)


def _count(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct values of a 1-D integer array (sorted) and how often each occurs."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.empty(flat.size, bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    at = np.flatnonzero(starts)
    if len(at) * RUN_DENSITY < flat.size:
        # A mask is long runs of one label: counting the runs takes a fraction of the time of
        # counting every pixel. Float weights are exact: every sum is far below 2**53.
        lengths = np.empty(len(at), np.int64)
        np.subtract(at[1:], at[:-1], out=lengths[:-1])
        lengths[-1] = flat.size - at[-1]
        runs = flat[at]
        if flat.dtype.kind == "u" and flat.dtype.itemsize <= 2:  # at most 65536 bins
            return _dense(np.bincount(runs, weights=lengths))
        values, slot = np.unique(runs, return_inverse=True)
        counts = np.bincount(slot, weights=lengths).astype(np.int64)
        return values.astype(np.int64), counts
    if flat.dtype == np.uint8:
        # Short runs (noise, thin structures): Pillow counts bytes in C, without a copy.
        from PIL import Image

        return _dense(np.array(Image.frombuffer("L", (flat.size, 1), flat).histogram(), np.int64))
    low, high = int(flat.min()), int(flat.max())
    if low >= 0 and high < TABLE_SIZE:
        return _dense(np.bincount(flat))
    values, counts = np.unique(flat, return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


def _integral(array: np.ndarray, path: object) -> np.ndarray:
    whole = np.isfinite(array) & (np.floor(array) == array)
    if not whole.all():
        bad = np.asarray(array)[~whole].flat[0]
        raise MaskError(path, f"holds the non-integral value {bad}; class ids must be integers")
    return array.astype(np.int64)


def _dense(histogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.flatnonzero(histogram != 0)  # numpy finds non-zeros fastest in a bool array
    return values.astype(np.int64), histogram[values].astype(np.int64)


def _sum_histograms(parts: list[Histogram]) -> Histogram:
    values = np.concatenate([h.values for h in parts])
    counts = np.concatenate([h.counts for h in parts])
    distinct, slot = np.unique(values, return_inverse=True)
    total = np.zeros(len(distinct), np.int64)
    np.add.at(total, slot, counts)
    return Histogram(distinct, total, any(h.colour for h in parts))
