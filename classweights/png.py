"""Reading PNG masks faster than Pillow decodes them.

Pillow's PNG decoder inflates one scanline at a time. An 8-bit gray or palette PNG that is not
interlaced and whose scanlines all use filter type 0 (Pillow and libpng write palette images
that way) can instead be inflated in one call, at several times the speed, and its bytes are
then the pixel values: one filter byte, then ``width`` labels, per row (PNG specification,
sections 7.2 and 9.2): `rows`. Gray PNGs whose rows are filtered (Pillow filters L and I;16
images) are decoded by libpng through imagecodecs, when the ``fast`` extra is installed, at
about twice Pillow's speed for 16-bit masks: `decode`.

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


class Layout(NamedTuple):
    """What `layout` reads of a PNG: its header, and its image data still compressed."""

    width: int
    height: int
    depth: int
    colour_type: int
    plain: bool  # standard compression and filtering, not interlaced
    stream: bytes  # the joined IDAT data


def rows(layout: Layout, max_pixels: int) -> np.ndarray | None:
    """Return the pixel rows of a PNG as a (height, 1 + width) uint8 array, or None.

    Column 0 holds the rows' filter bytes, all 0: the caller counts the whole array (it is
    one contiguous buffer) and takes ``height`` off the count of 0. None means this path does
    not apply (not an 8-bit gray or palette PNG, interlaced, filtered, damaged, or more than
    ``max_pixels``, which Pillow's path then refuses).
    """
    if (
        not layout.plain
        or layout.depth != 8
        or layout.colour_type not in (_GRAY, _PALETTE)
        or layout.width * layout.height > max_pixels
    ):
        return None
    width, height = layout.width, layout.height
    size = height * (width + 1)
    try:
        raw = deflate.zlib_decompress(layout.stream, size)  # checks the Adler-32 too
    except deflate.DeflateError:
        return None
    if len(raw) != size:
        return None
    pixels = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    return None if pixels[:, 0].any() else pixels


def decode(data: bytes, layout: Layout, max_pixels: int) -> np.ndarray | None:
    """Return the pixels of PNG ``data``, an 8- or 16-bit gray image, decoded by libpng.

    None means this path does not apply: another kind of PNG, more than ``max_pixels``,
    damaged, or imagecodecs is not installed.
    """
    decoder = _libpng()
    if (
        decoder is None
        or layout.colour_type != _GRAY
        or layout.depth not in (8, 16)
        or layout.width * layout.height > max_pixels
    ):
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
    return Layout(width, height, depth, colour_type, methods == [0, 0, 0], b"".join(streams))
