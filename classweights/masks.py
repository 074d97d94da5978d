"""Reading label masks: finding them on disk and decoding each to a histogram of its raw values.

A mask is reduced to a `Histogram`: its distinct raw values and how many pixels hold each.
Remapping, ignoring and range checks then work on a handful of values instead of millions of
pixels (see `classweights.counting`). The raw value of an index mask is its pixel value; of a
colour mask, the colour packed as ``0xRRGGBB``.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple

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

#: Lossy formats (Pillow's names): a mask stored this way has wrong ids along every edge.
#: Known by the file's content, not its name: a JPEG named .png is still lossy.
LOSSY_FORMATS = ("JPEG", "MPO")

#: Pillow modes whose pixels are class ids (docs/design.md, "Mask formats and conventions").
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


class NotRegularFile(OSError):
    """A path that is a FIFO, a device or a socket: reading one may never end (or never stop)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: is not a regular file")
        self.strerror = "is not a regular file"
        self.filename = path  # the message names it once: see _reason
        self.filename = path


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Return ``path`` opened for unbuffered reading; the one place a mask is opened.

    Only regular files are read: a FIFO named ``*.png`` would hang the scan and ``/dev/zero``
    would fill the memory. The file is opened without blocking (a FIFO's open waits for a
    writer) and refused with `NotRegularFile` unless ``fstat`` says it is a regular file.
    """
    descriptor, _ = _open_regular(path)
    return os.fdopen(descriptor, "rb", buffering=0)


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_regular(path: str | os.PathLike) -> tuple[int, int]:
    """Return a descriptor of the regular file ``path`` and its size (see `open_regular`)."""
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFile(os.fsdecode(path))
        return descriptor, status.st_size
    except BaseException:
        os.close(descriptor)
        raise


def read_file(path: str | os.PathLike) -> bytes:
    """Return all the bytes of the regular file ``path`` (see `open_regular`): read at its
    size, then until a read returns nothing (as ``FileIO.readall`` does, without the object)."""
    descriptor, size = _open_regular(path)
    try:
        parts: list[bytes] = []
        while part := os.read(descriptor, size + 1 if not parts else 1 << 16):
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(descriptor)


def read_range(path: str | os.PathLike, start: int, size: int) -> bytes:
    """Return ``size`` bytes of the regular file ``path`` from byte ``start`` (fewer if the
    file ends first): a member of an uncompressed archive (`MaskFile.span`)."""
    with open_regular(path) as file:
        file.seek(start)
        parts: list[bytes] = []
        while size > 0 and (part := file.read(size)):
            parts.append(part)
            size -= len(part)
        return b"".join(parts)


def check_size(path: object, pixels: int, size: str, options: ReadOptions) -> None:
    """Raise `MaskError` if an image, page, array or volume of ``pixels`` (written ``size``)
    is above ``options.max_pixels``: called before anything of it is decoded."""
    if pixels > options.max_pixels:
        raise MaskError(
            path,
            f"is {size} = {pixels:,} pixels, more than max_pixels={options.max_pixels} "
            "(a decompression bomb?)",
        )


class MaskFile(NamedTuple):  # a tuple: a scan holds one per mask, and sends them to workers
    """A mask to count.

    ``path`` opens it; ``name`` is its path relative to the directory it was found in (or to
    the fixed part of a glob); ``size`` is in bytes; ``region``, when set, is a mask of the
    pixels to count; ``error``, when set, is why the listing already knows that it cannot be
    counted (it has no region mask): reading it raises that, where the other failures are
    raised, so that ``skip_errors`` lists it with them. ``span``, for a member of an
    uncompressed tar, is ``(start, size)`` of its bytes in the archive file: it is read as that
    range, without the archive's index, which every process would otherwise read again.
    """

    path: str
    name: str
    size: int = 0
    region: str | None = None
    version: str = ""  # changes when the file does: mtime_ns on disk, an ETag in a store
    error: str | None = None
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How masks are read: the array to take from ``.npz`` files, the largest image (in
    pixels, per frame) to decode, a guard against decompression bombs; the fsspec storage
    options of masks stored elsewhere (see `sources.freeze`), and a Parquet file's image
    column."""

    npz_key: str | None = None
    max_pixels: int = MAX_PIXELS
    storage_options: tuple[tuple[str, Any], ...] = ()
    column: str | None = None


@dataclass(frozen=True)
class Histogram:
    """The distinct raw values of a mask (sorted int64) and their pixel counts (positive int64).

    ``colour`` says the values are colours packed as 0xRRGGBB rather than class ids;
    ``shape`` is the decoded array's shape when it is at hand for free (an array file or a
    mask with a region), else None (`mask_size` reads it from a header).
    """

    values: np.ndarray
    counts: np.ndarray
    colour: bool = False
    lossy: bool = False  # decoded from a lossy format (`LOSSY_FORMATS`)
    shape: tuple[int, ...] | None = None
    outside: int = 0  # pixels outside the mask's region (``--roi``): not in the histogram

    @property
    def size(self) -> int:
        """Return the number of pixels (voxels) counted, whatever their value."""
        return int(self.counts.sum())


def colour_hex(packed: int) -> str:
    """Return a packed 0xRRGGBB colour as ``#rrggbb``."""
    return f"#{packed:06x}"


def find_masks(
    paths: Iterable[str | os.PathLike],
    pattern: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    column: str | None = None,
) -> list[MaskFile]:
    """Return the masks that ``paths`` (folders, files, globs, URLs, archives, Parquet files)
    name, without repeats, in order of name: `sources.iter_masks` as a list.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Where the masks are.
    pattern : str, optional
        A glob the masks' relative paths must match.
    storage_options : mapping, optional
        fsspec's options for masks stored elsewhere (credentials, endpoint).
    column : str, optional
        The image column of a Parquet file.

    Returns
    -------
    list of MaskFile
    """
    return list(sources.iter_masks(paths, pattern, storage_options=storage_options, column=column))


def pair_regions(
    masks: list[MaskFile],
    region_dir: str | os.PathLike,
    pair_key: str | None = None,
    *,
    skip_errors: bool = False,
) -> list[MaskFile]:
    """Return ``masks`` each paired with the region mask of the same sample id (`sample_id`:
    by default the relative path and stem).

    The region may have any extension (a ``.png`` field-of-view for a ``.tif`` label).
    Raises `MaskError` naming the first mask that has no region file; with ``skip_errors``
    that mask is returned with the error instead (`MaskFile.error`), for the scan to list.
    """
    walked = list(sources.walk(os.fspath(region_dir)))
    refuse_twins(walked, pair_key)
    regions = {sample_id(region.name, pair_key, region.path): region.path for region in walked}
    refuse_twins(masks, pair_key)
    paired = []
    for mask in masks:
        key = sample_id(mask.name, pair_key, mask.path)
        region = regions.get(key)
        if region is None:
            wanted = f"{key}.*" if pair_key is None else f"of sample {key!r}"
            why = f"no region mask {wanted} in {region_dir}"
            if not skip_errors:
                raise MaskError(mask.path, why)
            paired.append(mask._replace(error=why))
            continue
        paired.append(mask._replace(region=region))
    return paired


def refuse_twins(masks: Iterable[MaskFile], pair_key: str | None = None) -> None:
    """Raise `InputError` if two files have one sample id: pairing them would be a guess."""
    seen: dict[str, str] = {}
    for mask in masks:
        key = sample_id(mask.name, pair_key, mask.path)
        twin = seen.setdefault(key, mask.path)
        if twin != mask.path:
            shown = f"{key}.*" if pair_key is None else f"sample {key!r}"
            raise InputError(
                f"{mask.path}: pairs with the same file as {twin} ({shown}); "
                "give one folder of masks, or a pair_key that tells them apart"
            )


def sample_id(name: str, pair_key: str | None = None, path: object = None) -> str:
    """Return the id that pairs a file with its region mask or image: the relative path
    without its extension, or with ``pair_key`` (a regular expression of one group, searched
    in that) the group: ``r"^(\\d+)_"`` gives ``21`` for ``21_manual1.gif`` and for
    ``21_training.tif``. Raises `MaskError` naming ``path`` when the expression finds none.
    """
    key = stem(name)
    if pair_key is None:
        return key
    found = re.search(pair_key, key)
    if found is None or found.group(1) is None:
        raise MaskError(path or name, f"pair_key={pair_key!r} finds no sample id in {key!r}")
    return found.group(1)


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

    Parameters
    ----------
    mask : MaskFile, str or os.PathLike
        The mask (a `MaskFile` may name its region mask).
    options : ReadOptions
        How it is read (the ``.npz`` array, the pixel limit).

    Returns
    -------
    Histogram
        Its distinct raw values and their pixel counts.

    Raises
    ------
    MaskError
        Naming the file, when it cannot be read or is not a mask.
    """
    if not isinstance(mask, MaskFile):
        mask = MaskFile(os.fspath(mask), Path(mask).name)
    if mask.error is not None:
        raise MaskError(mask.path, mask.error)
    try:
        if mask.region is None:
            return _whole_histogram(mask, options)
        labels, colour = decode(mask.path, options)
        inside = _region(mask.region, options)
        if inside.shape != labels.shape:
            raise MaskError(
                mask.path,
                f"is {shape_text(labels.shape)} but its region mask {mask.region} is "
                f"{shape_text(inside.shape)}",
            )
        keep = inside != 0
        histogram = _array_histogram(labels[keep], mask.path, colour)
        outside = keep.size - int(np.count_nonzero(keep))
        return replace(histogram, shape=labels.shape, outside=outside)
    except MaskError:
        raise
    except NotRegularFile:
        raise MaskError(mask.path, "is not a regular file") from None
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
            return tuple(reader(path, options).shape)
        with _opened(path, options) as file, _open_image(file, path, options) as image:
            return image.height, image.width
    except MaskError:
        raise
    except _READ_ERRORS as error:
        raise MaskError(path, f"cannot read: {_reason(error)}") from None


@contextmanager
def _open_image(source: str | IO[bytes], path: str, options: ReadOptions) -> Iterator[Image.Image]:
    """Open an image with Pillow, refusing one above ``max_pixels`` before it is decoded."""
    # Pillow's own guard (checked on open, and again on load for TIFF) is set aside while the
    # image is read: the check below replaces it, so that --max-pixels can raise the limit as
    # well as lower it, and Pillow prints no warning of its own.
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(source) as image:
            check_size(path, image.width * image.height, f"{image.width}x{image.height}", options)
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _reason(error: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image format Pillow knows"  # its own message names a BytesIO
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return error.strerror  # the file is named once, by the caller
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def shape_text(shape: tuple[int, ...]) -> str:
    """Return an array's shape as people write a size, width first: (height 4, width 5)
    gives "5x4", as Pillow and image viewers say it (a volume: width x height x depth)."""
    return "x".join(map(str, reversed(shape)))


def _whole_histogram(mask: MaskFile, options: ReadOptions) -> Histogram:
    path = mask.path
    reader = _array_reader(path)
    if reader is not None:
        array = reader(path, options)
        # The shape rides along: per-image rows need it, and an .npz or NIfTI file costs a
        # whole decompression to read again.
        return replace(_array_histogram(array, path), shape=array.shape)
    data = sources.read_bytes(mask, options)  # whole at once: a buffer only costs
    layout = png.layout(data)  # a PNG's damage is refused here, before any decoder sees it
    if layout is not None:
        histogram = _png_histogram(layout, path, options)
        if histogram is not None:
            return histogram
    with _open_image(io.BytesIO(data), path, options) as image:
        frames = [_frame_histogram(frame, path) for frame in _frames(image, path, options)]
        lossy = image.format in LOSSY_FORMATS
    histogram = frames[0] if len(frames) == 1 else _sum_histograms(frames)
    return replace(histogram, lossy=True) if lossy else histogram


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
        colour = layout.colour_type in png.COLOUR_TYPES
        return Histogram(values, counts, colour=colour, shape=(layout.height, layout.width))
    rows = png.rebuilt(layout, raw)
    if rows is None:
        return None  # Average or Paeth rows: Pillow undoes them faster than numpy would
    colour = layout.colour_type in png.COLOUR_TYPES  # 8-bit RGB or RGBA
    if colour:
        samples = rows.reshape(layout.height, layout.width, -1)
    else:
        samples = rows.view(">u2") if layout.depth == 16 else rows
    step = _block_rows(layout.width)  # no full-size copy of a large mask's samples
    blocks = (samples[top : top + step] for top in range(0, layout.height, step))
    return replace(_runs_histogram(blocks, colour), shape=(layout.height, layout.width))


#: A mask counted by runs is counted a block of rows of about this many pixels at a time,
#: so that a large mask needs no full-size copy of its pixels.
BLOCK_PIXELS = 1 << 20


def _block_rows(width: int) -> int:
    return max(1, BLOCK_PIXELS // width)


def _runs_histogram(blocks: Iterable[np.ndarray], colour: bool) -> Histogram:
    """Count pixels given as blocks of rows by runs of one value along the rows: colours
    (the last axis their channels; `_count_colours`) or samples (`_count`)."""
    if colour:
        parts = [Histogram(*_count_colours(block.reshape(-1, block.shape[-1])), colour=True)
                 for block in blocks]  # fmt: skip
    else:
        parts = [Histogram(*_count(block.reshape(-1))) for block in blocks]
    return parts[0] if len(parts) == 1 else _sum_histograms(parts)


def _row_blocks(image: Image.Image) -> Iterator[np.ndarray]:
    """Yield a decoded image's pixels as arrays, a block of `BLOCK_PIXELS` rows at a time: no
    full-size copy of a large mask."""
    step = _block_rows(image.width)
    if step >= image.height:
        yield np.asarray(image)
        return
    for top in range(0, image.height, step):
        yield np.asarray(image.crop((0, top, image.width, min(top + step, image.height))))


def _frames(image: Image.Image, path: str, options: ReadOptions) -> Iterable[Image.Image]:
    """Yield the frames to count: every page of a TIFF (the slices of one label volume); the
    first frame of anything else (an animated GIF or PNG is not a stack of masks, and Pillow
    turns GIF frames after the first into RGB). Pages must all be colours or all class ids,
    and each is held to ``--max-pixels`` before it is decoded, not only the first."""
    if image.format != "TIFF":
        yield image
        return
    from PIL import ImageSequence

    colour = image.mode in COLOUR_MODES
    for number, frame in enumerate(ImageSequence.Iterator(image)):
        if (frame.mode in COLOUR_MODES) != colour:
            raise MaskError(path, "has pages of colours and pages of class ids")
        size = f"{frame.width}x{frame.height}, page {number + 1},"
        check_size(path, frame.width * frame.height, size, options)
        yield frame


def _frame_histogram(image: Image.Image, path: str) -> Histogram:
    if image.mode in ("L", "P", "1"):
        # Pillow counts 8-bit pixels exactly in C, without a copy of the image.
        scale = 255 if image.mode == "1" else _sub_byte_scale(image)
        values, counts = _dense(np.array(image.histogram(), np.int64))
        return Histogram(values // scale, counts)
    # Colours and 16-bit samples by runs of one value along the rows (`_count_colours`,
    # `_count`): Pillow's getcolors and a 65536-bin count take a step a pixel, two to eight
    # times as long on a mask. Alpha is not part of a class colour.
    if image.mode in COLOUR_MODES or image.mode.startswith("I;16"):
        return _runs_histogram(_row_blocks(image), image.mode in COLOUR_MODES)
    return _array_histogram(_image_array(image, path), path)


def _sub_byte_scale(image: Image.Image) -> int:
    """Return what Pillow multiplied an image's stored samples by: 85 for 2-bit and 17 for
    4-bit gray (it stretches them to 0-255 in mode L), else 1. Only right before the image
    is loaded: its tile, which names the stored layout, is gone after."""
    tile = getattr(image, "tile", None)
    args = tile[0][3] if tile else None  # PNG: the raw mode; TIFF: (raw mode, ...)
    rawmode = args[0] if isinstance(args, tuple) and args else args
    scales = {"L;2": 85, "L;2R": 85, "L;4": 17, "L;4R": 17}
    return scales.get(rawmode, 1) if isinstance(rawmode, str) else 1


def decode(path: str, options: ReadOptions = ReadOptions()) -> tuple[np.ndarray, bool]:
    """Return a mask's raw values as an array, and whether they are colours (packed 0xRRGGBB)."""
    reader = _array_reader(path)
    if reader is not None:
        return reader(path, options), False
    with open_checked(path, options) as image:
        frames = [_image_array(frame, path) for frame in _frames(image, path, options)]
        colour = image.mode in COLOUR_MODES
    return (frames[0] if len(frames) == 1 else np.stack(frames)), colour


def checked_bytes(path: str, options: ReadOptions = ReadOptions()) -> bytes:
    """Return the bytes of an image that Pillow is to decode whole, a PNG's checked first as a
    whole mask's are (`png.layout`, `png.inflate`): Pillow reads a damaged chunk, and counts
    the rows missing from the image data as label 0."""
    data = sources.read_bytes(path, options)
    layout = png.layout(data)
    if layout is not None and layout.width * layout.height <= options.max_pixels:
        png.inflate(layout)  # raises for image data of fewer or more rows than the header's
    return data


@contextmanager
def open_checked(path: str, options: ReadOptions) -> Iterator[Image.Image]:
    """Open a mask for Pillow to decode whole, its bytes checked first (`checked_bytes`)."""
    with _open_image(io.BytesIO(checked_bytes(path, options)), path, options) as image:
        yield image


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
        "(mode P, L, 1, I;16 or I), or colours (RGB, with colors=FILE)",
    )


def pack_rgb(red, green, blue):
    """Return a colour packed as 0xRRGGBB: of ints, or of integer arrays element by element."""
    return (red << 16) | (green << 8) | blue


@contextmanager
def _opened(path: str, options: ReadOptions) -> Iterator[BinaryIO]:
    """Yield a mask opened for reading: a local regular file as it is (Pillow then reads only
    what it needs), anything else as its bytes."""
    if sources.is_local(path):
        with open_regular(path) as file:
            yield file
    else:
        yield io.BytesIO(sources.read_bytes(path, options))


def _read_npy(path: str, options: ReadOptions) -> np.ndarray:
    # Read, never memory-mapped: a file truncated while it is mapped kills the process (SIGBUS).
    return _parse_npy(io.BytesIO(sources.read_bytes(path, options)), path, options)


def _parse_npy(stream: IO[bytes], path: str, options: ReadOptions) -> np.ndarray:
    """Return the array of a ``.npy`` stream, its header checked before its data is read."""
    from numpy.lib import format as npy

    version = npy.read_magic(stream)
    read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    if version not in read_header:
        raise MaskError(path, f"is a .npy file of version {version[0]}.{version[1]}, not 1 or 2")
    shape, fortran, dtype = read_header[version](stream)
    if dtype.hasobject:
        raise MaskError(path, "holds Python objects, not integer class ids")
    count = math.prod(shape)
    check_size(path, count, shape_text(shape), options)
    wanted = count * dtype.itemsize
    data = stream.read(wanted)
    if len(data) < wanted:
        raise MaskError(
            path, f"is shorter than its header says: {len(data):,} of {wanted:,} bytes of data"
        )
    return np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran else "C")


def _read_npz(path: str, options: ReadOptions) -> np.ndarray:
    import zipfile  # here: a scan of PNGs does not pay for its import

    try:
        with zipfile.ZipFile(io.BytesIO(sources.read_bytes(path, options))) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            npz_key = options.npz_key
            if npz_key is None and len(members) == 1:
                (npz_key,) = members
            if npz_key not in members:
                wanted = f"no array {npz_key!r}" if npz_key else "several arrays"
                raise MaskError(
                    path,
                    f"holds {wanted}; choose one of {', '.join(sorted(members))} with npz_key",
                )
            with archive.open(members[npz_key]) as member:
                return _parse_npy(member, path, options)  # its header held to --max-pixels
    except zipfile.BadZipFile as error:
        raise ValueError(str(error)) from None  # one of _READ_ERRORS: "cannot read mask: ..."


def _read_nifti(path: str, options: ReadOptions) -> np.ndarray:
    try:
        import nibabel
    except ImportError:
        raise MaskError(path, "reading NIfTI volumes needs nibabel: pip install nibabel") from None
    import gzip

    from nibabel.filebasedimages import ImageFileError
    from nibabel.imageglobals import logger
    from nibabel.spatialimages import HeaderDataError
    from nibabel.wrapstruct import WrapStructError

    data = sources.read_bytes(path, options)  # read, not memory-mapped (see _read_npy)
    stream: IO[bytes] = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":  # .nii.gz
        stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]  # an IO[bytes] too
    # nibabel writes a damaged header's faults to stderr itself, beside the error's one line.
    disabled, logger.disabled = logger.disabled, True
    try:
        sizeof_hdr = stream.read(4)
        stream.seek(0)
        nifti2 = 540 in struct.unpack("<i", sizeof_hdr) + struct.unpack(">i", sizeof_hdr)
        image = (nibabel.Nifti2Image if nifti2 else nibabel.Nifti1Image).from_stream(stream)
        shape = tuple(image.header.get_data_shape())
        check_size(path, math.prod(shape), shape_text(shape), options)  # before the voxels
        return np.asanyarray(image.dataobj)
    except (WrapStructError, HeaderDataError, ImageFileError, OverflowError) as error:
        # nibabel's errors for a damaged file (OverflowError: an offset or size beyond any
        # array) made one of _READ_ERRORS, as for other masks: "cannot read mask: ..."
        raise ValueError(_reason(error)) from None
    finally:
        logger.disabled = disabled


_ARRAY_READERS: dict[str, Callable[[str, ReadOptions], np.ndarray]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".nii": _read_nifti,
    ".nii.gz": _read_nifti,
}


_ARRAY_SUFFIXES = tuple(_ARRAY_READERS)


def _array_reader(path: str) -> Callable[[str, ReadOptions], np.ndarray] | None:
    name = sources.leaf(path).lower()
    if not name.endswith(_ARRAY_SUFFIXES):  # the common case, a PNG, in one call
        return None
    return next(r for suffix, r in _ARRAY_READERS.items() if name.endswith(suffix))


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


def _count_colours(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct colours of (n, 3 or 4) uint8 pixels, packed 0xRRGGBB (sorted), and
    how often each occurs: by runs of one colour, as `_count` counts labels; alpha is left
    out."""
    red, green, blue = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    starts = np.ones(len(pixels), bool)
    starts[1:] = (red[1:] != red[:-1]) | (green[1:] != green[:-1]) | (blue[1:] != blue[:-1])
    at = np.flatnonzero(starts)
    lengths = np.diff(at, append=len(pixels))
    runs = pack_rgb(*(channel[at].astype(np.int64) for channel in (red, green, blue)))
    values, slot = np.unique(runs, return_inverse=True)
    return values, np.bincount(slot, weights=lengths, minlength=len(values)).astype(np.int64)


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


# Last: sources lists and reads the masks this module describes, and imports its names.
from . import sources  # noqa: E402
