"""Differential fuzzing: a damaged PNG is either counted exactly as Pillow decodes it, or refused
(issue 9). Valid PNGs of every kind are mutated (chunk order, duplicated and missing chunks,
lengths, filter bytes, row counts, truncation, trailing data, flipped bytes), on the kernel
and the pure path alike."""

from __future__ import annotations

import struct
import zlib

import deflate
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from classweights import _native, png, read_histogram
from classweights.errors import MaskError
from pngmaker import CHANNELS, chunk, encode, pillow_histogram

pytestmark = pytest.mark.usefixtures("png_path")

KINDS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 2), (3, 8), (6, 8)]
CHUNK_OPS = ["swap", "duplicate", "drop", "insert", "split", "header", "filter", "cut", "extra"]
BYTE_OPS = ["truncate", "trailing", "flip", "length"]


def split_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    found, position = [], 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        found.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return found


def mutate_chunks(draw, parts: list[tuple[bytes, bytes]], op: str) -> list[tuple[bytes, bytes]]:
    """One mutation at the chunk level; every chunk keeps a valid CRC."""
    parts = list(parts)
    index = draw(st.integers(0, len(parts) - 1))
    idats = [i for i, (kind, _) in enumerate(parts) if kind == b"IDAT"]
    headers = [i for i, (kind, body) in enumerate(parts) if kind == b"IHDR" and len(body) == 13]
    try:
        raw = zlib.decompress(b"".join(parts[i][1] for i in idats))
    except zlib.error:
        raw = None
    if (op in ("split", "filter", "cut", "extra") and raw is None) or (
        op == "header" and not headers
    ):
        return parts  # an earlier mutation left nothing for this one

    def with_stream(stream: bytes) -> list[tuple[bytes, bytes]]:
        kept = [part for i, part in enumerate(parts) if i not in idats[1:]]
        kept[idats[0]] = (b"IDAT", stream)
        return kept

    if op == "swap":
        other = draw(st.integers(0, len(parts) - 1))
        parts[index], parts[other] = parts[other], parts[index]
    elif op == "duplicate":
        parts.insert(draw(st.integers(0, len(parts))), parts[index])
    elif op == "drop":
        del parts[index]
    elif op == "insert":  # an ancillary or critical chunk anywhere
        kind = draw(st.sampled_from([b"tEXt", b"zzZz", b"QQQQ", b"PLTE", b"IEND", b"IHDR"]))
        parts.insert(index, (kind, draw(st.binary(max_size=16))))
    elif op == "split":  # the image data in pieces, maybe with a chunk between them
        stream = parts[idats[0]][1]
        cut = draw(st.integers(0, len(stream)))
        between = [(b"tEXt", b"a\0b")] if draw(st.booleans()) else []
        at = idats[0]
        parts[at : at + 1] = [(b"IDAT", stream[:cut]), *between, (b"IDAT", stream[cut:])]
    elif op == "header":  # a header that disagrees with the data
        fields = list(struct.unpack(">IIBBBBB", parts[headers[0]][1]))
        field = draw(st.integers(0, 6))
        fields[field] = min(255, max(0, fields[field] + draw(st.integers(-3, 3))))
        parts[headers[0]] = (b"IHDR", struct.pack(">IIBBBBB", *fields))
    elif op == "filter":  # any byte of the inflated stream, filter bytes included
        raw = bytearray(raw)
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        parts = with_stream(zlib.compress(bytes(raw)))
    elif op == "cut":  # a complete, checksummed stream with fewer bytes than declared
        parts = with_stream(zlib.compress(raw[: draw(st.integers(0, max(0, len(raw) - 1)))]))
    elif op == "extra":  # more bytes than declared
        parts = with_stream(zlib.compress(raw + draw(st.binary(min_size=1, max_size=64))))
    return parts


def mutate_bytes(draw, data: bytes, op: str) -> bytes:
    """One mutation of the file's bytes: CRCs are not mended."""
    if op == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if op == "trailing":
        return data + draw(st.binary(min_size=1, max_size=32))
    if op == "flip":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    # "length": a chunk's length field
    starts, position = [], 8
    while position + 8 <= len(data):
        starts.append(position)
        position += 12 + struct.unpack_from(">I", data, position)[0]
    at = draw(st.sampled_from(starts))
    length = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)))
    return data[:at] + struct.pack(">I", length) + data[at + 4 :]


def complete_stream(data: bytes) -> bool:
    """Whether the file's IDAT data (all of it, however placed) inflates to at least the rows
    its first header declares: an independent check that Pillow did not pad missing rows."""
    parts = split_chunks(data)
    headers = [body for kind, body in parts if kind == b"IHDR" and len(body) == 13]
    if not headers:
        return False
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", headers[0])
    bits = CHANNELS.get(colour_type, 1) * depth
    if interlace:
        return True  # the tool checks interlaced streams by size; not re-derived here
    try:
        raw = zlib.decompressobj().decompress(b"".join(b for k, b in parts if k == b"IDAT"))
    except zlib.error:
        return False
    return len(raw) >= height * (1 + (width * bits + 7) // 8)


#: The draws of `mutated_png`: a kind, a shape, interlaced or not, a seed, and the mutations.
MUTATED_PNGS = dict(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 40)),
    interlace=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)


def mutated_png(data, kind, shape, interlace, seed) -> bytes:
    """A valid PNG of ``kind`` and ``shape``, then up to two chunk mutations and one byte
    mutation drawn from ``data``."""
    colour_type, depth = kind
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 2**depth, (shape[0], -(-shape[1] // 3), CHANNELS[colour_type]))
    samples = np.repeat(cells, 3, axis=1)[:, : shape[1]]
    filters = rng.integers(0, 5, shape[0])
    valid = encode(
        samples, depth=depth, colour_type=colour_type, filters=filters, interlace=interlace
    )
    parts = split_chunks(valid)
    for op in data.draw(st.lists(st.sampled_from(CHUNK_OPS), max_size=2)):
        parts = mutate_chunks(data.draw, parts, op)
    mutated = b"\x89PNG\r\n\x1a\n" + b"".join(chunk(kind, body) for kind, body in parts)
    for op in data.draw(st.lists(st.sampled_from(BYTE_OPS), max_size=1)):
        mutated = mutate_bytes(data.draw, mutated, op)

    return mutated


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(**MUTATED_PNGS)
def test_a_mutated_png_counts_as_pillow_decodes_it_or_is_refused(
    tmp_path, data, kind, shape, interlace, seed
):
    mutated = mutated_png(data, kind, shape, interlace, seed)
    path = tmp_path / "fuzz.png"
    path.write_bytes(mutated)
    try:
        histogram = read_histogram(path)
    except MaskError as error:
        assert "\n" not in str(error)
        event("refused")  # --hypothesis-show-statistics shows how often
        return  # refused: always an allowed answer
    event("counted")
    ours = dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True))
    headers = [body for kind, body in split_chunks(mutated) if kind == b"IHDR"]
    try:
        theirs = pillow_histogram(mutated, headers[0][8])  # the bit depth the file declares
    except Exception as error:  # any failure of Pillow's
        pytest.fail(f"counted a file Pillow cannot decode ({error!r}): {ours}")
    assert ours == theirs
    assert complete_stream(mutated), "counted a file whose image data ends early"


def walked(walk, data: bytes) -> object:
    """What a chunk walk gives for ``data``: its result, or the message it refuses it with."""
    try:
        return walk(data)
    except ValueError as error:  # png.PNGError is a ValueError, as is the kernel's
        return str(error)


@pytest.mark.skipif(_native.KERNEL is None, reason="the C kernel is not built")
@settings(max_examples=300, deadline=None)
@given(**MUTATED_PNGS)
def test_the_kernel_walks_the_chunks_as_the_python_walk_does(data, kind, shape, interlace, seed):
    # The compiled `layout` and `png.walk` are two writings of the same rules: same result,
    # same message, on valid and damaged files alike.
    mutated = mutated_png(data, kind, shape, interlace, seed)
    compiled = walked(lambda d: _native.KERNEL.layout(d, deflate.crc32), mutated)
    python = walked(png.walk, mutated)
    if isinstance(python, tuple):
        python = (*python[:5], list(python[5]))
    assert compiled == python
