"""Reading 8-bit PNG masks at the speed of one inflate, without decoding them through Pillow.

Pillow's PNG decoder inflates one scanline at a time; an 8-bit gray or palette PNG that is not
interlaced and whose scanlines all use filter type 0 (Pillow and libpng write palette images
that way) can instead be inflated in one call, at several times the speed, and its bytes are
then the pixel values: one filter byte, then ``width`` labels, per row (PNG specification,
sections 7.2 and 9.2). Every check that fails (a chunk CRC, the inflated size, a non-zero
filter byte, any other layout) returns None, and the caller decodes the file with Pillow,
which gives the same pixels; a wrong count is never made.
"""

from __future__ import annotations

import struct

import deflate
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHUNK = struct.Struct(">I4s")  # length, type
# width, height, bit depth, colour type, compression, filter method, interlace method
_IHDR = struct.Struct(">IIBBBBB")
_GRAY, _PALETTE = 0, 3


def rows(data: bytes, max_pixels: int) -> np.ndarray | None:
    """Return the pixel rows of PNG ``data`` as a (height, 1 + width) uint8 array, or None.

    Column 0 holds the rows' filter bytes, all 0: the caller counts the whole array (it is
    one contiguous buffer) and takes ``height`` off the count of 0. None means this fast path
    does not apply (not an 8-bit gray or palette PNG, interlaced, filtered, damaged, or more
    than ``max_pixels``, which Pillow's path then refuses); decode the file with Pillow.
    """
    layout = _layout(data)
    if layout is None:
        return None
    width, height, compressed = layout
    if width * height > max_pixels:
        return None
    size = height * (width + 1)
    try:
        raw = deflate.zlib_decompress(compressed, size)  # checks the stream's Adler-32 too
    except deflate.DeflateError:
        return None
    if len(raw) != size:
        return None
    pixels = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    return None if pixels[:, 0].any() else pixels


def _layout(data: bytes) -> tuple[int, int, bytes] | None:
    """Return ``(width, height, zlib stream)`` of a countable PNG, or None."""
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
    if depth != 8 or colour_type not in (_GRAY, _PALETTE) or methods != [0, 0, 0]:
        return None
    return width, height, b"".join(streams)
