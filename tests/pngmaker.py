"""A PNG writer for tests: every colour type, bit depth, row filter and interlacing, written
from the specification (sections 7-9) independently of the code under test."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))  # fmt: skip


def chunk(kind: bytes, data: bytes) -> bytes:
    """Return one chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_rows(samples: np.ndarray, depth: int, padding: bool = False) -> np.ndarray:
    """Return (height, bytes a row) uint8: ``samples`` (height, width, channels) stored at
    ``depth`` bits, big-endian, sub-byte samples packed from the high bits, rows padded with
    0 bits (with 1 bits if ``padding``: their value is unspecified, section 7.2)."""
    height = samples.shape[0]
    flat = samples.reshape(height, -1).astype(np.uint64)
    if depth == 16:
        return flat.astype(">u2").view(np.uint8).reshape(height, -1)
    if depth == 8:
        return flat.astype(np.uint8)
    bits = np.unpackbits(flat.astype(np.uint8)[..., None], axis=-1)[..., 8 - depth :]
    bits = bits.reshape(height, -1)
    if padding:
        bits = np.pad(bits, ((0, 0), (0, -bits.shape[1] % 8)), constant_values=1)
    return np.packbits(bits, axis=-1)


def filter_rows(rows: np.ndarray, bpp: int, kinds: Sequence[int]) -> np.ndarray:
    """Return the scanlines: each row's filter type, then its filtered bytes (section 9)."""
    x = rows.astype(np.int64)
    a = np.pad(x, ((0, 0), (bpp, 0)))[:, : x.shape[1]]
    b = np.pad(x, ((1, 0), (0, 0)))[: x.shape[0]]
    c = np.pad(x, ((1, 0), (bpp, 0)))[: x.shape[0], : x.shape[1]]
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    predictors = np.stack([0 * x, a, b, (a + b) // 2, paeth])
    kinds = np.asarray(kinds, np.int64)
    predictor = np.take_along_axis(predictors, kinds[None, :, None], 0)[0]
    filtered = ((x - predictor) % 256).astype(np.uint8)
    return np.hstack([kinds[:, None].astype(np.uint8), filtered])


def encode(
    samples: np.ndarray,
    *,
    depth: int = 8,
    colour_type: int = 0,
    filters: int | Sequence[int] = 0,
    interlace: bool = False,
    level: int = 6,
    chunks: int = 1,
    padding: bool = False,
) -> bytes:
    """Return a PNG of ``samples`` ((height, width) or (height, width, channels)).

    ``filters`` is one filter type for every row, or one per row of the image (for an
    interlaced image, row i of each pass takes filters[i % len]); ``padding`` sets the bits
    that pad a sub-byte row to a whole byte."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[..., None]
    height, width, channels = samples.shape
    assert channels == CHANNELS[colour_type]
    bpp = max(1, channels * depth // 8)
    kinds = np.atleast_1d(np.asarray(filters))
    parts = []
    for x0, y0, dx, dy in ADAM7 if interlace else ((0, 0, 1, 1),):
        sub = samples[y0::dy, x0::dx]
        if sub.size:
            rows = pack_rows(sub, depth, padding)
            parts.append(filter_rows(rows, bpp, np.resize(kinds, rows.shape[0])).tobytes())
    stream = zlib.compress(b"".join(parts), level)
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    if colour_type == 3:
        out += chunk(b"PLTE", bytes(range(256)) * 3 if depth == 8 else bytes(3 << depth))
    step = max(1, -(-len(stream) // chunks))
    for i in range(0, len(stream), step):
        out += chunk(b"IDAT", stream[i : i + step])
    return out + chunk(b"IEND", b"")


def pillow_histogram(data: bytes, depth: int) -> dict[int, int]:
    """Count what Pillow decodes: stored gray values, palette indices, colours 0xRRGGBB.

    Raises whatever Pillow raises on a file it cannot decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on some damaged files; it may still fail
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image)
            mode = image.mode
    if mode == "1":
        pixels = pixels != 0
    elif mode == "L" and depth < 8:
        pixels = pixels // (255 // (2**depth - 1))  # Pillow stretches 2- and 4-bit gray
    elif mode in ("RGB", "RGBA"):
        rgb = pixels[..., :3].astype(np.int64)
        pixels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values, counts = np.unique(pixels.astype(np.int64), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))
