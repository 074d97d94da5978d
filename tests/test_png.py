"""PNG masks count exactly what Pillow decodes, on the compiled kernel and the pure-Python path
alike, and a PNG that a conforming decoder would refuse is refused (issue 9, items 2-4)."""

from __future__ import annotations

import importlib.util
import io
import os
import shlex
import shutil
import struct
import subprocess
import sys
import sysconfig
import zlib
from itertools import pairwise

import deflate
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classweights import png, read_histogram
from classweights.errors import MaskError
from classweights.masks import MAX_PIXELS, ReadOptions, decode
from helpers import REPO, encode_png, save_mask
from pngmaker import CHANNELS, chunk, encode, pillow_histogram

pytestmark = pytest.mark.usefixtures("png_path")

IDS = np.array([[0, 0, 3, 3, 3, 9], [0, 7, 7, 255, 255, 9], [1, 1, 1, 1, 2, 2]])
IDS_COUNTS = {0: 3, 1: 4, 2: 2, 3: 3, 7: 2, 9: 2, 255: 2}

#: Every colour type a mask can be (gray with alpha is refused) and its bit depths.
KINDS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4),
         (3, 8), (6, 8), (6, 16)]  # fmt: skip
#: Widths around every sub-byte and word boundary, and wide rows up to 4,100 pixels. The
#: kernel looks for runs 64 bytes a step (48 for pixels of 3 and 6 bytes) from a row's second
#: pixel: a step's worth of pixels, one more and two more take its three ways to end a row
#: (a short row, steps only, a last step that overlaps) at every pixel size.
WIDTHS = [1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 18, 31, 32, 33, 34, 63, 64, 65, 66, 127, 255,
          257, 511, 1023, 1025, 2047, 2049, 4095, 4100]  # fmt: skip

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def counts_of(data: bytes, tmp_path) -> dict[int, int]:
    path = tmp_path / "m.png"
    path.write_bytes(data)
    histogram = read_histogram(path)
    assert histogram.colour == (b"IHDR" in data and data[25] in (2, 6))
    assert np.all(np.diff(histogram.values) > 0) and np.all(histogram.counts > 0)
    return dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True))


def refusal(data: bytes, tmp_path) -> str:
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    with pytest.raises(MaskError) as error:
        read_histogram(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def mask_samples(rng, height: int, width: int, colour_type: int, depth: int) -> np.ndarray:
    """Blocks of a few values with edges at odd places, as masks are, or noise."""
    channels = CHANNELS[colour_type]
    palette = rng.integers(0, 2**depth, (rng.integers(1, 6), channels))
    if rng.random() < 0.2:
        return rng.integers(0, 2**depth, (height, width, channels))
    run = int(rng.integers(1, 9))
    cells = rng.integers(0, len(palette), (height, -(-width // run)))
    return palette[np.repeat(cells, run, axis=1)[:, :width]]


# --- every layout, against Pillow --------------------------------------------------------


def test_every_sample_mask_counts_as_pillow_does(tmp_path):
    paths = sorted((REPO / "sample_masks").rglob("*.png"))
    assert len(paths) == 32
    for path in paths:
        data = path.read_bytes()
        assert counts_of(data, tmp_path) == pillow_histogram(data, 8), path


@pytest.mark.parametrize(("colour_type", "depth"), KINDS)
@pytest.mark.parametrize("interlace", [False, True])
def test_every_colour_type_depth_and_filter_counts_as_pillow_does(
    tmp_path, colour_type, depth, interlace
):
    rng = np.random.default_rng([colour_type, depth, interlace])
    for width in WIDTHS if not interlace else [w for w in WIDTHS if w <= 34]:
        height = int(rng.integers(1, 7))
        samples = mask_samples(rng, height, width, colour_type, depth)
        filters = rng.integers(0, 5, height)  # mixed, a filter type a row
        data = encode(
            samples, depth=depth, colour_type=colour_type, filters=filters, interlace=interlace
        )
        assert counts_of(data, tmp_path) == pillow_histogram(data, depth), (width, filters)


@pytest.mark.parametrize("filter_type", range(5))
@pytest.mark.parametrize(("colour_type", "depth"), [(0, 8), (0, 16), (2, 8), (6, 8), (6, 16)])
def test_each_filter_type_alone_on_wide_rows(tmp_path, filter_type, colour_type, depth):
    rng = np.random.default_rng(filter_type)
    samples = mask_samples(rng, 5, 4100, colour_type, depth)
    data = encode(samples, depth=depth, colour_type=colour_type, filters=filter_type)
    assert counts_of(data, tmp_path) == pillow_histogram(data, depth)


def every_pair_of_filters() -> list[int]:
    """Filter types 0..4 in an order that holds each ordered pair once: a de Bruijn sequence
    of order 2 (26 rows). What a row leaves for the one below (nothing, the row, its runs)
    depends on the filter below; each pair is one way."""
    seen, sequence = set(), [0]  # Martin's construction: the highest type not yet after it
    while len(seen) < 25:
        last = sequence[-1]
        nxt = next(s for s in range(4, -1, -1) if (last, s) not in seen)
        seen.add((last, nxt))
        sequence.append(nxt)
    return sequence


def moving_edges(rng, height: int, width: int, colour_type: int, depth: int) -> np.ndarray:
    """Runs of a few values whose edges stay, move by a pixel or jump from row to row, as a
    mask's edges do: a run below an edge above may go on or end there."""
    channels = CHANNELS[colour_type]
    palette = rng.integers(0, 2**depth, (int(rng.integers(2, 5)), channels))
    row = palette[rng.integers(0, len(palette), width)]
    rows = []
    for _ in range(height):
        move = rng.integers(0, 4)
        if move == 1:  # every edge a pixel to the right
            row = np.concatenate([row[:1], row[:-1]])
        elif move == 2:  # a new run somewhere
            start = int(rng.integers(0, width))
            row = row.copy()
            row[start : start + int(rng.integers(1, 40))] = palette[rng.integers(0, len(palette))]
        elif move == 3:
            row = np.repeat(palette[rng.integers(0, len(palette), -(-width // 3))], 3, 0)[:width]
        rows.append(row)
    return np.stack(rows)


@pytest.mark.parametrize(("colour_type", "depth"), KINDS)
def test_every_pair_of_filters_on_edges_that_move(tmp_path, colour_type, depth):
    filters = every_pair_of_filters()
    assert len(filters) == 26 and len(set(pairwise(filters))) == 25
    rng = np.random.default_rng([colour_type, depth])
    for width in [1, 2, 17, 33, 34, 65, 66, 257, 1025]:
        samples = moving_edges(rng, len(filters), width, colour_type, depth)
        # Sub-byte rows padded with 1 bits: the padding is no pixel, whatever the filter.
        data = encode(samples, depth=depth, colour_type=colour_type, filters=filters, padding=True)
        assert counts_of(data, tmp_path) == pillow_histogram(data, depth), width


def test_the_kernels_portable_code_counts_as_the_built_kernel(tmp_path, png_path):
    """The kernel's code for machines without SSE2 and for big-endian ones (words put
    together byte by byte), built here as the installed kernel was, counts every layout the
    same; skipped only where no compiler is at hand."""
    from classweights import _native

    if png_path != "compiled":
        pytest.skip("compares two builds of the kernel: once is enough")
    command = shlex.split(sysconfig.get_config_var("LDSHARED") or "cc -shared")
    if shutil.which(command[0]) is None:
        pytest.skip(f"no C compiler ({command[0]})")
    built = tmp_path / f"_kernel{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = ["-O1", "-fPIC", "-U__SSE2__", "-DLITTLE_ENDIAN_WORDS=0"]
    include = f"-I{sysconfig.get_paths()['include']}"
    source = str(REPO / "classweights" / "_kernel.c")
    subprocess.run([*command, *flags, include, source, "-o", str(built)], check=True)
    spec = importlib.util.spec_from_file_location("_kernel", built)
    portable = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(portable)
    rng = np.random.default_rng(7)
    filters = every_pair_of_filters()
    for colour_type, depth in KINDS:
        for width in [1, 5, 33, 66, 257]:
            for make in (moving_edges, mask_samples):
                samples = make(rng, len(filters), width, colour_type, depth)
                data = encode(samples, depth=depth, colour_type=colour_type, filters=filters)
                found = _native.KERNEL.layout(data, deflate.crc32)
                assert portable.layout(data, deflate.crc32) == found
                layout = png.layout(data)
                raw = png.inflate(layout)
                arguments = (raw, width, len(filters), depth, colour_type)
                assert portable.count(*arguments) == _native.KERNEL.count(*arguments)


@SETTINGS
@given(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    width=st.one_of(st.integers(1, 40), st.integers(41, 4100)),
    height=st.integers(1, 6),
    interlace=st.booleans(),
    chunks=st.integers(1, 3),
)
def test_random_masks_count_as_pillow_does(tmp_path, data, kind, width, height, interlace, chunks):
    colour_type, depth = kind
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    samples = mask_samples(rng, height, width, colour_type, depth)
    filters = data.draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    encoded = encode(
        samples,
        depth=depth,
        colour_type=colour_type,
        filters=filters,
        interlace=interlace,
        chunks=chunks,
    )
    assert counts_of(encoded, tmp_path) == pillow_histogram(encoded, depth)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("chunks", [1, 3])
def test_every_compression_level_and_split_stream(tmp_path, level, chunks):
    data = encode_png(IDS, level=level, chunks=chunks)
    assert counts_of(data, tmp_path) == IDS_COUNTS


def test_masks_pillow_writes(tmp_path):
    for mode, scale in [("P", 1), ("L", 1), ("I;16", 257)]:
        data = save_mask(tmp_path / "m.png", IDS * scale, mode).read_bytes()
        expected = {value * scale: n for value, n in IDS_COUNTS.items()}
        assert counts_of(data, tmp_path) == expected == pillow_histogram(data, 8)


# --- issue 9, item 4: sub-byte gray is counted as stored ----------------------------------


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_sub_byte_gray_counts_stored_values_not_pillows_rescaled_ones(tmp_path, depth):
    labels = np.arange(12).reshape(3, 4) % 2**depth
    data = encode(labels, depth=depth, colour_type=0, filters=[0, 1, 4])
    values, counts = np.unique(labels, return_counts=True)
    assert counts_of(data, tmp_path) == dict(zip(values.tolist(), counts.tolist(), strict=True))
    path = tmp_path / "m.png"
    assert decode(str(path))[0].tolist() == labels.tolist()  # the region path too


# --- issue 9, items 2 and 3: what a conforming decoder refuses is refused ----------------


def chunks_of(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, data) pairs."""
    found, position = [], 8
    while position < len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        found.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return found


def assemble(parts: list[tuple[bytes, bytes]]) -> bytes:
    return png.SIGNATURE + b"".join(chunk(kind, body) for kind, body in parts)


def test_a_second_header_after_the_image_data_is_refused(tmp_path):
    parts = chunks_of(encode_png(IDS, palette=False))
    big = struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0)
    data = assemble([*parts[:-1], (b"IHDR", big), parts[-1]])
    assert "has a second IHDR header" in refusal(data, tmp_path)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (["IDAT", "IHDR", "IEND"], "has a IDAT chunk before its IHDR header"),
        (["IHDR", "IDAT", "tEXt", "IDAT", "IEND"], "IDAT chunks that are not consecutive"),
        (["IHDR", "IDAT", "PLTE", "IEND"], "has a PLTE chunk after its image data"),
        (["IHDR", "PLTE", "PLTE", "IDAT", "IEND"], "has a second PLTE chunk"),
        (["IHDR", "IEND"], "has no image data"),
        (["IHDR", "IDAT"], "ends before its IEND chunk"),
        (["IHDR", "QQQQ", "IDAT", "IEND"], "unknown critical chunk QQQQ"),
    ],
)
def test_chunks_out_of_order_are_refused(tmp_path, order, message):
    parts = dict(chunks_of(encode_png(IDS, palette=False)))
    stream = parts[b"IDAT"]
    bodies = iter([stream[:10], stream[10:]] if order.count("IDAT") == 2 else [stream])
    pieces = {"tEXt": b"a\0b", "PLTE": bytes(range(9)), "QQQQ": b"x"}
    layout = []
    for kind in order:
        body = next(bodies) if kind == "IDAT" else pieces.get(kind, parts.get(kind.encode()))
        layout.append((kind.encode(), body))
    assert message in refusal(assemble(layout), tmp_path)


def frame(width: int, height: int, x: int = 0, y: int = 0, size: int = 26) -> tuple:
    """An APNG frame control chunk (fcTL) of ``size`` bytes: number, size, place, timing."""
    body = struct.pack(">IIIIIHHBB", 0, width, height, x, y, 1, 10, 0, 0)
    return (b"fcTL", (body + bytes(size))[:size])


def test_an_animation_frame_that_is_not_the_image_it_stands_for_is_refused(tmp_path):
    # Before the image data, a frame is the image itself (APNG, fcTL): of the header's size,
    # at (0, 0). Pillow reads the image data at the frame's size instead.
    parts = chunks_of(encode(IDS, colour_type=0, filters=[4]))
    height, width = IDS.shape
    control = (b"acTL", struct.pack(">II", 1, 0))

    def animated(*chunks: tuple) -> bytes:
        return assemble([parts[0], control, *chunks])

    assert counts_of(animated(frame(width, height), *parts[1:]), tmp_path) == IDS_COUNTS
    said = f"as its image, which its header says is {width}x{height}"
    assert refusal(animated(frame(4, 3), *parts[1:]), tmp_path).endswith(
        f"cannot read mask: has an animation frame of 4x3 at (0, 0) {said}"
    )
    assert f"of {width}x{height} at (1, 0) {said}" in refusal(
        animated(frame(width, height, x=1), *parts[1:]), tmp_path
    )
    assert "has an fcTL chunk of 25 bytes, not 26" in refusal(
        animated(frame(width, height, size=25), *parts[1:]), tmp_path
    )
    # After the image data a frame is another one, not the image: the image is what counts.
    after = animated(*parts[1:-1], frame(2, 2, x=1), parts[-1])
    assert counts_of(after, tmp_path) == IDS_COUNTS


def test_a_png_read_whole_by_pillow_is_checked_as_a_mask_is(tmp_path):
    # With --roi (the mask and its region mask) and in multilabel masks, Pillow decodes the
    # PNG: it would count the rows missing from the image data as label 0.
    from classweights.masks import MaskFile
    from classweights.multilabel import read_channels_file

    short = with_header(encode_png(IDS, palette=False), height=6)
    (tmp_path / "short.png").write_bytes(short)
    save_mask(tmp_path / "whole.png", np.ones_like(IDS))
    ends = "image data ends after 3 of 6 rows"
    for mask, region, said in [
        ("short.png", "whole.png", f"short.png: cannot read mask: {ends}"),
        ("whole.png", "short.png", f"short.png: cannot read region mask: {ends}"),
    ]:
        with pytest.raises(MaskError) as error:
            read_histogram(MaskFile(str(tmp_path / mask), mask, region=str(tmp_path / region)))
        assert str(error.value).endswith(said)
    with pytest.raises(png.PNGError, match=ends):
        read_channels_file(str(tmp_path / "short.png"), ReadOptions())


def test_a_palette_image_without_a_palette_is_refused(tmp_path):
    parts = [part for part in chunks_of(encode_png(IDS)) if part[0] != b"PLTE"]
    assert "without a PLTE chunk" in refusal(assemble(parts), tmp_path)


def test_ancillary_chunks_and_trailing_data_are_fine(tmp_path):
    parts = chunks_of(encode_png(IDS))
    data = assemble([parts[0], (b"tEXt", b"k\0v"), *parts[1:-1], (b"tIME", bytes(7)), parts[-1]])
    assert counts_of(data + b"trailing bytes after IEND", tmp_path) == IDS_COUNTS


def test_a_damaged_chunk_is_refused(tmp_path):
    data = bytearray(encode_png(IDS, level=0))
    start = data.index(b"IDAT") + 4
    data[start + 20] ^= 0xFF  # a pixel byte: the IDAT CRC fails
    assert "damaged IDAT chunk (its CRC does not match)" in refusal(bytes(data), tmp_path)
    assert "truncated" in refusal(encode_png(IDS)[:-30], tmp_path)


def with_header(data: bytes, **fields) -> bytes:
    """Return a PNG with IHDR fields replaced (width, height, depth, colour_type, interlace)."""
    parts = chunks_of(data)
    names = ["width", "height", "depth", "colour_type", "compression", "filter", "interlace"]
    values = dict(zip(names, struct.unpack(">IIBBBBB", parts[0][1]), strict=True)) | fields
    return assemble([(b"IHDR", struct.pack(">IIBBBBB", *values.values())), *parts[1:]])


def test_fewer_rows_than_declared_are_refused_not_padded(tmp_path):
    data = with_header(encode_png(IDS, palette=False), height=6)
    assert counts_of(encode_png(IDS, palette=False), tmp_path) == IDS_COUNTS
    with Image.open(io.BytesIO(data)) as image:
        assert np.asarray(image)[3:].tolist() == [[0] * 6] * 3  # Pillow pads them
    assert refusal(data, tmp_path).endswith("cannot read mask: image data ends after 3 of 6 rows")
    # A stream cut short inside a row, and one with more rows than the header: refused too.
    header = chunks_of(encode_png(IDS, palette=False))[0]
    cut = zlib.compress(bytes(7 * 2 + 1))  # rows of 7 bytes: two and one byte of a third
    assert "ends after 2 of 3 rows" in refusal(
        assemble([header, (b"IDAT", cut), (b"IEND", b"")]), tmp_path
    )
    assert "more image data than its 2 rows" in refusal(
        with_header(encode_png(IDS, palette=False), height=2), tmp_path
    )


def test_an_interlaced_stream_that_ends_early_is_refused(tmp_path):
    data = encode(IDS, colour_type=0, interlace=True)
    parts = chunks_of(data)
    short = zlib.compress(zlib.decompress(parts[1][1])[:-3])
    message = refusal(assemble([parts[0], (b"IDAT", short), parts[2]]), tmp_path)
    assert "image data ends after" in message and "(interlaced)" in message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 0}, "invalid size 0x3"),
        ({"height": 0}, "invalid size 6x0"),
        ({"depth": 3}, "invalid bit depth 3 for colour type 0"),
        ({"depth": 16, "colour_type": 3}, "invalid bit depth 16 for colour type 3"),
        ({"colour_type": 5}, "invalid colour type 5"),
        ({"interlace": 2}, "unknown compression, filter or interlace method"),
    ],
)
def test_headers_the_png_specification_forbids_are_refused(tmp_path, fields, message):
    data = with_header(encode_png(IDS, palette=False), **fields)
    assert message in refusal(data, tmp_path)


def test_an_unknown_filter_type_is_refused(tmp_path, png_path):
    parts = chunks_of(encode_png(IDS, filter_type=[0, 2, 0], palette=False))
    raw = bytearray(zlib.decompress(parts[1][1]))
    raw[2 * 7] = 5  # rows of 1 + 6 bytes: the third row's filter type
    message = refusal(assemble([parts[0], (b"IDAT", zlib.compress(raw)), parts[2]]), tmp_path)
    if png_path == "compiled":
        assert message.endswith("row 3 has filter type 5 (PNG has 0 to 4)")


def test_gray_with_alpha_is_not_a_mask(tmp_path):
    data = encode(np.zeros((2, 3, 2), np.uint8), colour_type=4)
    assert "mode LA image is not a mask" in refusal(data, tmp_path)


def test_a_png_above_max_pixels_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    path = tmp_path / "m.png"
    path.write_bytes(encode_png(IDS))
    monkeypatch.setattr(deflate, "zlib_decompress", None)  # never called
    with pytest.raises(MaskError, match=r"is 6x3 = 18 pixels, more than max_pixels=17"):
        read_histogram(path, ReadOptions(max_pixels=17))


def test_pillow_limit_is_ours():
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS


def test_a_mask_is_inflated_once(tmp_path, monkeypatch):
    calls = []
    inflate = deflate.zlib_decompress
    monkeypatch.setattr(deflate, "zlib_decompress", lambda *a: calls.append(1) or inflate(*a))
    path = tmp_path / "f.png"
    path.write_bytes(encode_png(IDS, filter_type=[4, 2, 1]))
    assert read_histogram(path).counts.tolist() == [3, 4, 2, 3, 2, 2, 2]
    assert len(calls) == 1


# --- which path is active -------------------------------------------------------------------


def test_version_says_which_png_path_is_active(tmp_path):
    def version(**env) -> list[str]:
        command = [sys.executable, "-m", "classweights", "--version"]
        # Not from the checkout (python -m puts the working folder first on the path): the
        # installed package, the one whose kernel find_spec sees.
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=True,
            cwd=tmp_path,
        )
        return result.stdout.splitlines()

    built = importlib.util.find_spec("classweights._kernel") is not None
    lines = version(CLASSWEIGHTS_PURE="0")
    assert lines[0].startswith("classweights, version ")
    assert lines[1] == (
        "PNG kernel: compiled"
        if built
        else "PNG kernel: pure Python (the C extension was not built)"
    )
    assert version(CLASSWEIGHTS_PURE="1")[1] == "PNG kernel: pure Python (CLASSWEIGHTS_PURE is set)"
