"""Test helpers: hand-made masks on disk, and the command line driven through CliRunner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from PIL import Image

from classweights.cli import cli

REPO = Path(__file__).resolve().parent.parent


def save_mask(path: Path, ids, mode: str = "L") -> Path:
    """Write class ids as an image in ``mode`` (P gets a palette; the ids stay the pixel values)."""
    array = np.asarray(ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("L", "P"):
        image = Image.fromarray(array.astype(np.uint8))
        if mode == "P":
            image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    elif mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16))
    elif mode == "I":
        image = Image.fromarray(array.astype(np.int32))
    else:
        raise ValueError(mode)
    # optimize=False: Pillow's GIF writer would otherwise renumber the palette, and the ids.
    image.save(path, optimize=False)
    return path


#: Two 4x4 masks whose counts are easy to check by eye.
#: a: 12 x 0, 4 x 1.   b: 8 x 0, 4 x 1, 2 x 2, 2 x 255 (void).
#: pixels = [20, 8, 2], N = 30, ignored = 2; images = [2, 2, 1];
#: image_pixels = [32, 32, 16].
MASK_A = [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]
MASK_B = [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 255, 255]]


def run(*args: object) -> Result:
    """Run the command line in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: object) -> dict:
    """Run a command that must succeed and return its stdout parsed as JSON."""
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """Assert a clean failure: the exit code, nothing on stdout, one line naming the fragments."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def encode_png(
    ids,
    *,
    filter_type: int | Sequence[int] = 0,
    level: int = 6,
    chunks: int = 1,
    palette: bool = True,
    depth: int = 8,
) -> bytes:
    """Return a hand-written gray or palette PNG of ``ids``: rows filtered with ``filter_type``
    (one for all rows, or one per row; PNG spec, section 9.2), the stream compressed at zlib
    ``level`` and split into ``chunks`` IDATs. ``depth`` 16 stores big-endian 16-bit gray."""
    import struct
    import zlib

    ids = np.asarray(ids)
    height, width = ids.shape
    bpp = depth // 8
    x = ids.astype(">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(height, -1)
    x = x.astype(np.int64)
    a = np.pad(x, ((0, 0), (bpp, 0)))[:, :-bpp]  # the byte a pixel to the left
    b = np.pad(x, ((1, 0), (0, 0)))[:-1]  # the byte above
    c = np.pad(x, ((1, 0), (bpp, 0)))[:-1, :-bpp]  # above and a pixel to the left
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    predictors = [0 * x, a, b, (a + b) // 2, paeth]
    kinds = np.broadcast_to(np.asarray(filter_type), (height,))
    predictor = np.choose(kinds[:, None], predictors)
    filtered = ((x - predictor) % 256).astype(np.uint8)
    raw = np.hstack([kinds[:, None].astype(np.uint8), filtered]).tobytes()
    stream = zlib.compress(raw, level)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, depth, 3 if palette else 0, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    if palette:
        out += chunk(b"PLTE", bytes(range(256)) * 3)
    step = -(-len(stream) // chunks)
    for i in range(0, len(stream), step):
        out += chunk(b"IDAT", stream[i : i + step])
    return out + chunk(b"IEND", b"")
