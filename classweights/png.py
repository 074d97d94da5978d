"""Reading PNG masks: the file's layout checked as a conforming decoder checks it, its image
data inflated in one call, and its pixels counted by the compiled kernel.

`layout` walks the chunks and refuses (`PNGError`) any file a conforming decoder would not
read as one image: a chunk CRC that fails, IHDR anywhere but first or more than once, PLTE
after the image data, IDAT chunks that are not consecutive, an unknown critical chunk, an
invalid header. `inflate` inflates the joined IDAT data with libdeflate, in one call (Pillow
inflates a scanline at a time), and refuses a stream that holds fewer or more rows than the
header declares: Pillow would pad the missing rows with zeros and count them as label 0.

`count` then hands the scanlines to ``classweights._kernel`` (C, built by ``pip install``
where a compiler is found), which undoes each row's filter (PNG specification, section 9)
and counts the row in the same pass. Without the kernel (`KERNEL` is None), `rebuilt`
rebuilds with numpy the rows of an 8- or 16-bit gray or palette PNG stored unfiltered or
with the Sub or Up filter (palette writers, OpenCV), which numpy counts; every other PNG is
decoded by Pillow, after the checks here: Pillow undoes Average and Paeth rows faster than
numpy could.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import deflate
import numpy as np

from ._native import KERNEL

SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHUNK = struct.Struct(">I4s")  # length, type
_CRC = struct.Struct(">I")
# width, height, bit depth, colour type, compression, filter method, interlace method
_IHDR = struct.Struct(">IIBBBBB")
_FRAME = struct.Struct(">IIII")  # an fcTL chunk's width, height, x and y, after its number
_GRAY, _RGB, _PALETTE, GRAY_ALPHA, _RGBA = 0, 2, 3, 4, 6

#: Bit depths the PNG specification allows for each colour type (section 11.2.2).
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
#: Samples a pixel, by colour type.
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Colour types whose pixels are colours (counted as 0xRRGGBB) rather than class ids.
COLOUR_TYPES = (_RGB, _RGBA)

#: Adam7 interlace passes (section 8.2): first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # fmt: skip

_MAX_LENGTH = 2**31 - 1  # of a chunk, and of the width and height (section 5.3)


class PNGError(ValueError):
    """A PNG whose bytes break the PNG specification; the message says how, in a few words."""


class Layout(NamedTuple):
    """What `layout` reads of a PNG: its header, and its image data still compressed."""

    width: int
    height: int
    depth: int
    colour_type: int
    interlaced: bool
    stream: bytes | memoryview  # the IDAT data, joined


class Pass(NamedTuple):
    """A reduced image of an interlaced PNG (or the whole image of one that is not): its size
    in pixels, and where its scanlines are in the inflated stream."""

    width: int
    height: int
    start: int
    size: int


def layout(data: bytes) -> Layout | None:
    """Return the header and the image stream of PNG ``data``; None if ``data`` is not a PNG.

    Raises `PNGError` when it is a PNG that a conforming decoder would refuse, or read as
    something else than what Pillow reads: see the module's docstring. The kernel walks the
    chunks where it is built (`walk` in C: the same checks, the same messages).
    """
    if KERNEL is None:
        found = walk(data)
    else:
        try:
            found = KERNEL.layout(data, deflate.crc32)
        except ValueError as error:
            raise PNGError(str(error)) from None
    if found is None:
        return None
    width, height, depth, colour_type, interlaced, spans = found
    view = memoryview(data)
    if len(spans) == 1:
        stream: bytes | memoryview = view[spans[0][0] : spans[0][1]]
    else:
        stream = b"".join(view[start:end] for start, end in spans)
    return Layout(width, height, depth, colour_type, interlaced, stream)


Walk = tuple[int, int, int, int, bool, list[tuple[int, int]]]


def walk(data: bytes) -> Walk | None:
    """Walk the chunks of ``data``: None if it is not a PNG, else its width, height, bit
    depth, colour type, whether it is interlaced, and the (start, end) offsets of its IDAT
    chunks' data. Raises `PNGError` for the first thing a conforming decoder would refuse."""
    if not data.startswith(SIGNATURE):
        return None
    view = memoryview(data)
    header = None
    palette = False
    spans: list[tuple[int, int]] = []
    after_data = False  # a chunk other than IDAT came after the image data
    position = len(SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise PNGError("is truncated (it ends before its IEND chunk)")
        length, kind = _CHUNK.unpack_from(data, position)
        end = position + 12 + length
        if length > _MAX_LENGTH or not kind.isalpha():
            name = kind.decode("latin-1")
            raise PNGError(f"has a damaged chunk at byte {position} (type {name!r})")
        name = kind.decode("ascii")
        if end > len(data):
            raise PNGError(f"is truncated (in its {name} chunk)")
        if deflate.crc32(view[position + 4 : end - 4]) != _CRC.unpack_from(data, end - 4)[0]:
            raise PNGError(f"has a damaged {name} chunk (its CRC does not match)")
        if header is None and kind != b"IHDR":
            raise PNGError(f"has a {name} chunk before its IHDR header")
        if kind == b"IHDR":
            if header is not None:
                raise PNGError("has a second IHDR header")
            if length != _IHDR.size:
                raise PNGError(f"has an IHDR header of {length} bytes, not 13")
            header = _header(_IHDR.unpack_from(data, position + 8))
        elif kind == b"IDAT":
            if after_data:
                raise PNGError("has IDAT chunks that are not consecutive")
            if header is not None and header[3] == _PALETTE and not palette:  # w, h, depth, type
                raise PNGError("is a palette image without a PLTE chunk before its image data")
            spans.append((position + 8, end - 4))
        elif kind == b"IEND":
            break  # what follows IEND is not part of the PNG
        else:
            after_data = bool(spans)
            if kind == b"PLTE":
                if spans:
                    raise PNGError("has a PLTE chunk after its image data")
                if palette:
                    raise PNGError("has a second PLTE chunk")
                if not length or length % 3 or length > 768:
                    raise PNGError(f"has a PLTE chunk of {length} bytes")
                palette = True
            elif kind == b"fcTL" and not spans and header is not None:  # (IHDR came first)
                _check_first_frame(data, position, length, header)
            elif kind[0] & 0x20 == 0:  # upper case: a chunk that a decoder must understand
                raise PNGError(f"has an unknown critical chunk {name}")
        position = end
    if not spans or header is None:
        raise PNGError("has no image data (no IDAT chunk)")  # IDAT before IHDR: refused above
    return (*header, spans)


def _check_first_frame(data: bytes, position: int, length: int, header: tuple) -> None:
    """An APNG's frame before its image data is the image itself (the APNG specification,
    fcTL), whose size and place the header gives: refuse one that says otherwise, which a
    decoder reading the frame would read at another size."""
    if length != 26:
        raise PNGError(f"has an fcTL chunk of {length} bytes, not 26")
    width, height, x, y = _FRAME.unpack_from(data, position + 12)
    if (width, height, x, y) != (header[0], header[1], 0, 0):
        raise PNGError(
            f"has an animation frame of {width}x{height} at ({x}, {y}) as its image, which its "
            f"header says is {header[0]}x{header[1]}"
        )


def _header(header: tuple[int, ...]) -> tuple[int, int, int, int, bool]:
    width, height, depth, colour_type, compression, filtering, interlace = header
    if not 0 < width <= _MAX_LENGTH or not 0 < height <= _MAX_LENGTH:
        raise PNGError(f"has an invalid size {width}x{height} in its IHDR header")
    if colour_type not in _DEPTHS:
        raise PNGError(f"has an invalid colour type {colour_type}")
    if depth not in _DEPTHS[colour_type]:
        raise PNGError(f"has an invalid bit depth {depth} for colour type {colour_type}")
    if compression or filtering or interlace > 1:
        raise PNGError(
            f"has an unknown compression, filter or interlace method "
            f"({compression}, {filtering}, {interlace})"
        )
    return width, height, depth, colour_type, interlace == 1


def passes(layout: Layout) -> list[Pass]:
    """Return the reduced images whose scanlines make up the inflated stream, in order: one,
    the whole image, unless it is interlaced (Adam7: seven, the empty ones left out)."""
    bits = _CHANNELS[layout.colour_type] * layout.depth
    if not layout.interlaced:
        return [
            Pass(
                layout.width, layout.height, 0, layout.height * (1 + (layout.width * bits + 7) // 8)
            )
        ]
    found = []
    start = 0
    for x, y, dx, dy in _ADAM7:
        width = (layout.width - x + dx - 1) // dx
        height = (layout.height - y + dy - 1) // dy
        if width and height:
            size = height * (1 + (width * bits + 7) // 8)  # a filter byte, then the row
            found.append(Pass(width, height, start, size))
            start += size
    return found


def inflate(layout: Layout) -> bytes:
    """Return the inflated image data of a PNG: exactly its scanlines, each one filter byte
    and then the row's bytes.

    Raises `PNGError` for a stream that is damaged or holds fewer or more rows than the
    header declares.
    """
    parts = passes(layout)
    expected = parts[-1].start + parts[-1].size
    try:
        raw = deflate.zlib_decompress(layout.stream, expected)
    except deflate.DeflateError:
        _why_not(layout, expected)  # raises
    if len(raw) != expected:
        raise PNGError(_short(layout, len(raw), expected))
    return raw


def _why_not(layout: Layout, expected: int) -> None:
    """Raise the `PNGError` that says why libdeflate refused the stream: zlib says more."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(layout.stream, expected + 1)
    except zlib.error as error:
        raise PNGError(f"has damaged image data ({error})") from None
    if len(raw) > expected:
        held = "interlace passes" if layout.interlaced else f"{layout.height} rows"
        raise PNGError(f"has more image data than its {held} hold")
    if not inflater.eof:
        raise PNGError(_short(layout, len(raw), expected) + " (the stream is cut short)")
    raise PNGError("has damaged image data")


def _short(layout: Layout, size: int, expected: int) -> str:
    if layout.interlaced:
        return f"image data ends after {size:,} of {expected:,} bytes (interlaced)"
    return f"image data ends after {size // (expected // layout.height)} of {layout.height} rows"


def count(layout: Layout, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct values of a PNG's pixels (sorted int64) and how many pixels hold
    each, counted by the compiled kernel from ``raw``, its `inflate`-d scanlines.

    Gray and palette pixels are their stored values (1-, 2- and 4-bit ones too); RGB and
    RGBA pixels their colour packed as 0xRRGGBB (alpha left out; of 16-bit samples the high
    byte, as Pillow reads them). Raises `PNGError` for a row with an unknown filter type.
    """
    if KERNEL is None:
        raise RuntimeError("the compiled kernel is not built (or CLASSWEIGHTS_PURE is set)")
    if layout.colour_type == GRAY_ALPHA:
        raise PNGError("is gray with alpha: no kernel counts it")
    if not layout.interlaced:  # one pass: the whole stream
        return _kernel_count(raw, layout.width, layout.height, layout, "")
    view = memoryview(raw)
    found = []
    for number, part in enumerate(passes(layout), 1):
        stream = view[part.start : part.start + part.size]
        where = f" in interlace pass {number}"
        found.append(_kernel_count(stream, part.width, part.height, layout, where))
    distinct, slot = np.unique(np.concatenate([values for values, _ in found]), return_inverse=True)
    counts = np.bincount(slot, np.concatenate([counts for _, counts in found]))
    return distinct, counts.astype(np.int64)


def _kernel_count(
    stream: bytes | memoryview, width: int, height: int, layout: Layout, where: str
) -> tuple[np.ndarray, np.ndarray]:
    assert KERNEL is not None
    try:
        values, counts = KERNEL.count(stream, width, height, layout.depth, layout.colour_type)
    except ValueError as error:
        raise PNGError(f"{error}{where}") from None
    return np.frombuffer(values, np.int64), np.frombuffer(counts, np.int64)


def rebuilt(layout: Layout, raw: bytes) -> np.ndarray | None:
    """Return the pixel bytes of an 8- or 16-bit gray or palette PNG, or an 8-bit RGB or RGBA
    one, whose rows are stored unfiltered or with the Sub or Up filter (what OpenCV, libpng's
    fast settings and palette writers produce), rebuilt with numpy: a (height, bytes a row)
    uint8 array, 16-bit samples big-endian. For the pure path; the kernel undoes every filter.

    None: another kind of PNG, or Average or Paeth rows, whose every byte waits for the one
    on its left (Pillow undoes those faster than numpy could).
    """
    index = layout.colour_type in (_GRAY, _PALETTE) and layout.depth in (8, 16)
    colour = layout.colour_type in COLOUR_TYPES and layout.depth == 8
    if layout.interlaced or not (index or colour):
        return None
    lines = np.frombuffer(raw, np.uint8).reshape(layout.height, -1)
    kinds = lines[:, 0]
    if not kinds.any():
        return lines[:, 1:]  # all stored as they are
    if kinds.max() > 2:
        return None
    rows = lines[:, 1:].copy()
    # Sub (section 9.2): a byte adds the one a pixel to its left, a running sum along each
    # lane of the row; rows of None and Sub need nothing from the row above.
    sub = np.flatnonzero(kinds == 1)
    if sub.size:
        part = rows if sub.size == len(rows) else rows[sub]  # OpenCV writes every row Sub
        lanes = layout.depth // 8 * _CHANNELS[layout.colour_type]  # bytes a pixel
        for lane in range(lanes):
            part[:, lane::lanes] = _running_sums(part[:, lane::lanes])
        rows[sub] = part
    # Up: a row adds the one above, a running sum down each run of Up rows from the rebuilt
    # row before it (uint8 sums wrap around, as the filters' arithmetic does).
    up = np.flatnonzero(kinds == 2)
    if up.size:
        breaks = np.flatnonzero(np.diff(up) > 1)
        starts, ends = up[np.r_[0, breaks + 1]], up[np.r_[breaks, len(up) - 1]] + 1
        for start, end in zip(starts, ends, strict=True):
            run = np.cumsum(rows[start:end], axis=0, dtype=np.uint8)
            rows[start:end] = run + rows[start - 1] if start else run
    return rows


def _running_sums(residuals: np.ndarray) -> np.ndarray:
    """Return the running sums (mod 256) along each row of a 2-D uint8 array, from its
    non-zero entries alone: a mask's residuals are 0 but at its edges, and numpy's cumsum
    would take a step for every byte (four times longer here)."""
    height, width = residuals.shape
    flat = np.ascontiguousarray(residuals).reshape(-1)
    at = np.flatnonzero(flat)
    sums = np.cumsum(flat[at], dtype=np.uint8)  # the sum over the whole array, at each edge
    spread = np.repeat(np.r_[np.uint8(0), sums], np.diff(np.r_[0, at, flat.size]))
    total = spread.reshape(height, width)
    total -= np.r_[np.uint8(0), total[:-1, -1]][:, None]  # less what the rows above carried in
    return total
