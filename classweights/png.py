"""Counting 8-bit PNG masks exactly, without decoding them through Pillow.

Pillow's PNG decoder inflates one scanline at a time; an 8-bit gray or palette PNG that is not
interlaced and whose scanlines all use filter type 0 (Pillow and libpng write palette images
that way) can instead be inflated in one call, at several times the speed, and its bytes are
then the pixel values: one filter byte, then ``width`` labels, per row (PNG specification,
sections 7.2 and 9.2). Every check that fails (a chunk CRC, the inflated size, a non-zero
filter byte, any other layout) returns None, and the caller decodes the file with Pillow,
which gives the same counts; a wrong count is never returned.
"""

from __future__ import annotations

import struct

import deflate
import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHUNK = struct.Struct(">I4s")  # length, type
# width, height, bit depth, colour type, compression, filter method, interlace method
_IHDR = struct.Struct(">IIBBBBB")
_GRAY, _PALETTE = 0, 3


def histogram(data: bytes) -> np.ndarray | None:
    """Return the 256-bin int64 histogram of the pixels of PNG ``data``, or None.

    None means this fast path does not apply (not an 8-bit gray or palette PNG, interlaced,
    filtered, or damaged); decode the file with Pillow instead.
    """
    layout = _layout(data)
    if layout is None:
        return None
    width, height, compressed = layout
    size = height * (width + 1)
    try:
        raw = deflate.zlib_decompress(compressed, size)  # checks the stream's Adler-32 too
    except deflate.DeflateError:
        return None
    if len(raw) != size or np.frombuffer(raw, np.uint8)[:: width + 1].any():
        return None
    # The rows with their filter bytes (all 0) as one (width + 1) x height image: Pillow
    # counts it in C without a copy; then the filter bytes come off bin 0.
    rows = Image.frombuffer("L", (width + 1, height), raw, "raw", "L", 0, 1)
    counts = np.array(rows.histogram(), np.int64)
    counts[0] -= height
    return counts


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
