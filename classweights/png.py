"""Reading PNG masks faster than Pillow decodes them.

Pillow's PNG decoder inflates one scanline at a time. An 8-bit gray or palette PNG that is not
interlaced and whose scanlines all use filter type 0 (Pillow and libpng write palette images
that way) can instead be inflated in one call, at several times the speed, and its bytes are
then the pixel values: one filter byte, then ``width`` labels, per row (PNG specification,
sections 7.2 and 9.2): `scanlines`, `rows`. PNGs whose rows are filtered (Pillow filters L and I;16
images) are inflated the same way and then reconstructed row by row with numpy, `unfilter`,
when their rows are wide; narrower ones decode faster in libpng, through imagecodecs when the
``fast`` extra is installed: `decode`.

Every check that fails (a chunk CRC, the inflated size, a non-zero filter byte, any other
layout) returns None, and the caller decodes the file with Pillow, which gives the same
pixels; a wrong count is never made.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import NamedTuple

import deflate
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHUNK = struct.Struct(">I4s")  # length, type
# width, height, bit depth, colour type, compression, filter method, interlace method
_IHDR = struct.Struct(">IIBBBBB")
_GRAY, _PALETTE = 0, 3
_NONE, _SUB, _UP, _AVERAGE, _PAETH = range(5)  # filter types

#: Rows of at least this many bytes are reconstructed by `unfilter` rather than libpng:
#: Python's cost is per row and libpng's per byte. bench/run.py's 2048x1024 masks (rows of
#: 2048 and 4096 bytes) decode in a third of libpng's time so; at 512 pixels libpng is faster
#: for 8-bit masks and about as fast for 16-bit ones.
WIDE_ROW = 2048

#: `unfilter` gives way to libpng on a Paeth row whose row above has more than 64 edges and
#: one more often than once in this many bytes: masks have one in a hundred bytes or fewer,
#: noise one in every byte.
BYTES_PER_JOIN = 32

#: Bit depths the PNG specification allows for each colour type (section 11.2.2).
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class Layout(NamedTuple):
    """What `layout` reads of a PNG: its header, and its image data still compressed."""

    width: int
    height: int
    depth: int
    colour_type: int
    plain: bool  # standard compression and filtering, not interlaced
    stream: bytes  # the joined IDAT data


def scanlines(layout: Layout, max_pixels: int) -> np.ndarray | None:
    """Return the inflated scanlines of a gray or palette PNG of 8 or 16 bits, as a (height,
    1 + bytes a row) uint8 array, each row's filter byte first.

    None means this path does not apply: another layout (interlaced among them), a damaged
    stream (the inflate checks the Adler-32, and the size is checked here), or more than
    ``max_pixels``, which Pillow's path then refuses.
    """
    if (
        not layout.plain
        or layout.depth not in (8, 16)
        or layout.colour_type not in (_GRAY, _PALETTE)
        or layout.width * layout.height > max_pixels
    ):
        return None
    stride = 1 + layout.width * layout.depth // 8
    try:
        raw = deflate.zlib_decompress(layout.stream, layout.height * stride)
    except deflate.DeflateError:
        return None
    if len(raw) != layout.height * stride:
        return None
    return np.frombuffer(raw, np.uint8).reshape(layout.height, stride)


def rows(layout: Layout, lines: np.ndarray) -> np.ndarray | None:
    """Return ``lines`` when their bytes are the labels: 8 bits and no row filtered.

    Column 0 holds the rows' filter bytes, all 0: the caller counts the whole array (it is
    one contiguous buffer) and takes ``height`` off the count of 0. None: the rows must be
    reconstructed first (`decode`).
    """
    return lines if layout.depth == 8 and not lines[:, 0].any() else None


def decode(
    data: bytes, layout: Layout, max_pixels: int, lines: np.ndarray | None = None
) -> np.ndarray | None:
    """Return the pixels of PNG ``data``, a gray or palette image of 8 or 16 bits whose rows
    are filtered, by the faster of `unfilter` and libpng for its width. ``lines`` are its
    `scanlines` when the caller has them already.

    None means neither applies: another kind of PNG, more than ``max_pixels``, damaged, or
    an Average row when imagecodecs is not installed (libpng decodes only gray PNGs here).
    """
    if layout.width * layout.height > max_pixels:
        return None
    if lines is None:
        lines = scanlines(layout, max_pixels)
    decoders = [lambda: unfilter(layout, lines), lambda: _decode_libpng(data, layout)]
    if layout.width * layout.depth // 8 < WIDE_ROW:
        decoders.reverse()
    for decoder in decoders:  # the faster first; the other where the first does not apply
        pixels = decoder()
        if pixels is not None:
            return pixels
    return None


def unfilter(layout: Layout, lines: np.ndarray | None) -> np.ndarray | None:
    """Return the pixels of a gray or palette PNG of 8 or 16 bits, reconstructed with numpy
    from its `scanlines` (PNG specification, section 9.2).

    None and Sub rows stand alone, an Up row adds the row above, and `_paeth` solves a Paeth
    row. None means this path does not apply: no scanlines, an Average row (each of its
    bytes waits for the one before), or a Paeth row below noise.
    """
    if lines is None:
        return None
    bpp, width = layout.depth // 8, layout.width
    filters = lines[:, 0].tolist()
    if not set(filters) <= {_NONE, _SUB, _UP, _PAETH}:
        return None
    pixels = lines[:, 1:].copy()  # rows of filter None are done
    above = np.zeros(pixels.shape[1], np.uint8)  # the row above the first is all zeros
    for kind, row in zip(filters, pixels, strict=True):
        if kind == _UP:
            np.add(row, above, out=row)  # uint8 arithmetic wraps modulo 256, as PNG's
        elif kind == _SUB:
            lanes = row.reshape(width, bpp)  # each byte adds the one a pixel before it
            np.cumsum(lanes, axis=0, dtype=np.uint8, out=lanes)
        elif kind == _PAETH and not _paeth(row, above, width, bpp):
            return None
        above = row
    # 16-bit samples are big-endian; numpy compares and counts them faster in native order.
    return pixels.view(">u2").astype(np.uint16) if bpp == 2 else pixels


def _paeth(row: np.ndarray, above: np.ndarray, width: int, bpp: int) -> bool:
    """Reconstruct a Paeth row in place (PNG specification, section 9.4); False, the row
    left as it was, when the row above has so many edges that libpng would be faster.

    Each byte adds the predictor of a (left), b (above) and c (upper left) in its lane, the
    bytes at one position of every pixel; a lane's first byte has a = c = 0. Where b == c the
    predictor is a, so between the few places where b != c (edges in the row above) a lane is
    a running sum of its bytes. Those runs are summed with numpy and joined, in order, in
    Python: only a join needs the byte on its left.
    """
    raw = row.reshape(width, bpp).T  # one row per lane
    b = above.reshape(width, bpp).T
    c = np.zeros_like(b)
    c[:, 1:] = b[:, :-1]
    sums = np.cumsum(raw, axis=1, dtype=np.uint8).reshape(-1)
    joins = b != c
    joins[:, 0] = True  # each lane starts a run
    at = np.flatnonzero(joins)
    if len(at) > max(64, row.size // BYTES_PER_JOIN):  # noise, not a mask: each costs 1 us
        return False
    offsets = []
    offset = 0  # what the current run adds to the running sum
    for position, x, up, corner, total, before in zip(
        at.tolist(),
        raw.reshape(-1)[at].tolist(),
        b.reshape(-1)[at].tolist(),
        c.reshape(-1)[at].tolist(),
        sums[at].tolist(),
        sums[at - 1].tolist(),
        strict=True,
    ):
        left = (before + offset) & 0xFF if position % width else 0
        p = left + up - corner
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
        predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
        offset = (x + predictor - total) & 0xFF
        offsets.append(offset)
    run = np.cumsum(joins.reshape(-1)) - 1  # the join each byte follows
    raw[...] = (sums + np.array(offsets, np.uint8)[run]).reshape(bpp, width)
    return True


def _decode_libpng(data: bytes, layout: Layout) -> np.ndarray | None:
    """Return the pixels of an 8- or 16-bit gray PNG decoded by libpng; None if imagecodecs
    is not installed, or the PNG is another kind or damaged."""
    decoder = _libpng()
    if decoder is None or layout.colour_type != _GRAY or layout.depth not in (8, 16):
        return None
    try:
        pixels = decoder(data)
    except (RuntimeError, ValueError):  # imagecodecs.PngError is a RuntimeError
        return None
    return pixels if pixels.shape == (layout.height, layout.width) else None


@functools.cache
def _libpng() -> Callable[[bytes], np.ndarray] | None:
    try:
        from imagecodecs import png_decode
    except ImportError:
        return None
    return png_decode


def layout(data: bytes) -> Layout | None:
    """Return the header and the image stream of PNG ``data``; None if it is not a PNG or is
    damaged (a chunk CRC, a truncated chunk)."""
    if not data.startswith(SIGNATURE):
        return None
    view = memoryview(data)
    header = None
    streams = []
    position = len(SIGNATURE)
    while position + 12 <= len(data):
        length, kind = _CHUNK.unpack_from(data, position)
        end = position + 12 + length
        if end > len(data):
            return None  # truncated
        if kind in (b"IHDR", b"IDAT"):
            stored = int.from_bytes(view[end - 4 : end], "big")
            if deflate.crc32(view[position + 4 : end - 4]) != stored:
                return None
            if kind == b"IHDR":
                header = _IHDR.unpack_from(data, position + 8)
            else:
                streams.append(view[position + 8 : end - 4])
        elif kind == b"IEND":
            break
        position = end
    if header is None or not streams:
        return None
    width, height, depth, colour_type, *methods = header
    if not width or not height or depth not in _DEPTHS.get(colour_type, ()):
        return None  # not a valid PNG: Pillow says why
    return Layout(width, height, depth, colour_type, methods == [0, 0, 0], b"".join(streams))
