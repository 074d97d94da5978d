"""The whole-stream PNG path counts exactly what Pillow decodes, or steps aside."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib

import deflate
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from classweights import png, read_histogram
from classweights.errors import MaskError
from classweights.masks import MAX_PIXELS
from helpers import REPO, encode_png, save_mask

IDS = np.array([[0, 0, 3, 3, 3, 9], [0, 7, 7, 255, 255, 9], [1, 1, 1, 1, 2, 2]])


def pillow_counts(data: bytes) -> list[int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.histogram()


def pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def fast_pixels(data: bytes) -> np.ndarray | None:
    """The pixels the whole-stream path reads, without the filter column; None if it steps aside."""
    layout = png.layout(data)
    lines = None if layout is None else png.scanlines(layout, MAX_PIXELS)
    rows = None if lines is None else png.rows(layout, lines)
    if rows is None:
        return None
    assert not rows[:, 0].any()
    return rows[:, 1:]


def unfiltered(data: bytes) -> np.ndarray | None:
    """The pixels numpy rebuilds from a filtered PNG; None if it steps aside."""
    layout = png.layout(data)
    return png.unfilter(layout, png.scanlines(layout, MAX_PIXELS))


def fast_counts(data: bytes) -> list[int]:
    return np.bincount(fast_pixels(data).ravel(), minlength=256).tolist()


def test_every_sample_mask_counts_as_pillow_does():
    paths = sorted((REPO / "sample_masks").rglob("*.png"))
    assert len(paths) == 32
    for path in paths:
        data = path.read_bytes()
        pixels = fast_pixels(data)
        assert pixels is not None, path  # Pillow writes palette masks unfiltered
        assert np.array_equal(pixels, pillow_pixels(data))


def test_masks_written_by_pillow(tmp_path):
    data = save_mask(tmp_path / "m.png", IDS, "P").read_bytes()
    assert np.array_equal(fast_pixels(data), pillow_pixels(data))
    # Pillow filters the rows of L images adaptively: those go through Pillow, same counts.
    gray = save_mask(tmp_path / "g.png", IDS, "L")
    assert fast_pixels(gray.read_bytes()) is None
    histogram = read_histogram(gray)
    assert histogram.counts.tolist() == [c for c in pillow_counts(gray.read_bytes()) if c]


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("palette", [True, False])
def test_every_compression_level_and_split_stream(level, chunks, palette):
    data = encode_png(IDS, level=level, chunks=chunks, palette=palette)
    assert np.array_equal(fast_pixels(data), pillow_pixels(data))
    assert fast_counts(data) == pillow_counts(data)


@pytest.mark.parametrize("filter_type", [1, 2, 3, 4])
def test_filtered_rows_fall_back_to_pillow_with_the_same_counts(tmp_path, filter_type):
    data = encode_png(IDS, filter_type=filter_type)
    assert fast_pixels(data) is None
    assert np.array_equal(pillow_pixels(data), IDS)  # the test's own encoder is right
    (tmp_path / "f.png").write_bytes(data)
    histogram = read_histogram(tmp_path / "f.png")
    assert dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True)) == {
        0: 3, 1: 4, 2: 2, 3: 3, 7: 2, 9: 2, 255: 2
    }  # fmt: skip


def test_other_layouts_step_aside(tmp_path):
    assert fast_pixels(save_mask(tmp_path / "w.png", IDS * 300, "I;16").read_bytes()) is None
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    assert fast_pixels(buffer.getvalue()) is None
    assert fast_pixels(b"GIF89a") is None
    interlaced = bytearray(encode_png(IDS))
    interlaced[8 + 8 + 12] = 1  # the IHDR's interlace byte; its CRC no longer matches either
    assert fast_pixels(bytes(interlaced)) is None
    assert png.scanlines(png.layout(encode_png(IDS)), max_pixels=IDS.size - 1) is None


def test_damaged_stream_is_never_counted(tmp_path):
    data = bytearray(encode_png(IDS, level=0))
    start = data.index(b"IDAT") + 4
    data[start + 20] ^= 0xFF  # a pixel byte: the IDAT CRC fails
    assert fast_pixels(bytes(data)) is None
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(MaskError, match=r"bad\.png: cannot read mask"):
        read_histogram(tmp_path / "bad.png")
    truncated = encode_png(IDS)[:-30]
    assert fast_pixels(truncated) is None


@settings(max_examples=60, deadline=None)
@given(
    ids=arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    level=st.integers(0, 9),
    chunks=st.integers(1, 4),
)
def test_random_masks_count_as_numpy_does(ids, level, chunks):
    data = encode_png(ids, level=level, chunks=chunks)
    assert np.array_equal(fast_pixels(data), ids)
    histogram = read_histogram_of(data)
    expected = np.bincount(ids.ravel(), minlength=256)
    assert histogram.values.tolist() == np.flatnonzero(expected).tolist()
    assert histogram.counts.tolist() == expected[expected > 0].tolist()


def read_histogram_of(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.png")
        with open(path, "wb") as file:
            file.write(data)
        return read_histogram(path)


@pytest.mark.parametrize("noise", [False, True])
def test_run_counting_and_value_counting_agree(tmp_path, noise):
    # Long runs are counted run by run; noise (a run every pixel or two) value by value.
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, (64, 64)) if noise else np.repeat(rng.integers(0, 4, (64, 4)), 16, 1)
    histogram = read_histogram_of(encode_png(ids))
    expected = np.bincount(ids.ravel(), minlength=4)
    assert histogram.counts.tolist() == expected[expected > 0].tolist()


def test_pillow_limit_is_ours():
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_libpng_decodes_filtered_gray_pngs_as_pillow_does(tmp_path, mode):
    pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(3)
    ids = np.repeat(rng.integers(0, 40, (32, 8)), 4, axis=1) * (300 if mode == "I;16" else 1)
    data = save_mask(tmp_path / "m.png", ids, mode).read_bytes()
    layout = png.layout(data)
    assert png.rows(layout, png.scanlines(layout, MAX_PIXELS)) is None  # Pillow filtered them
    assert np.array_equal(png.decode(data, layout, MAX_PIXELS), pillow_pixels(data))


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_without_imagecodecs_numpy_counts_the_same(tmp_path, mode, monkeypatch):
    ids = np.arange(48).reshape(6, 8) % 7 * (1000 if mode == "I;16" else 1)
    path = save_mask(tmp_path / "m.png", ids, mode)
    with_libpng = read_histogram(path)
    monkeypatch.setattr(png, "_libpng", lambda: None)
    data = path.read_bytes()
    assert np.array_equal(png.decode(data, png.layout(data), MAX_PIXELS), ids)
    without = read_histogram(path)
    assert without.values.tolist() == with_libpng.values.tolist()
    assert without.counts.tolist() == with_libpng.counts.tolist() == [7] * 6 + [6]


# --- rows reconstructed with numpy (png.unfilter) --------------------------------------------

ROW_FILTERS = [0, 1, 2, 4]  # all but Average, which unfilter leaves to libpng or Pillow


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("filter_type", ROW_FILTERS)
def test_unfilter_reconstructs_each_filter_type(depth, filter_type):
    ids = IDS * (257 if depth == 16 else 1)  # 16-bit: both bytes of a sample vary
    data = encode_png(ids, filter_type=filter_type, depth=depth, palette=False)
    pixels = unfiltered(data)
    assert pixels.dtype == (np.uint16 if depth == 16 else np.uint8)
    assert pixels.tolist() == ids.tolist()
    assert np.array_equal(pillow_pixels(data), ids)  # the test's own encoder is right


def test_unfilter_mixes_filter_types_row_by_row_in_palette_pngs_too():
    ids = np.tile(IDS, (2, 1))
    data = encode_png(ids, filter_type=[4, 2, 1, 0, 4, 4])
    assert fast_pixels(data) is None  # filtered: not the plain path
    assert unfiltered(data).tolist() == ids.tolist()


def test_an_average_row_is_left_to_libpng_or_pillow(tmp_path, monkeypatch):
    data = encode_png(IDS, filter_type=[2, 3, 4], palette=False)
    assert unfiltered(data) is None
    monkeypatch.setattr(png, "WIDE_ROW", 1)  # every row is wide: numpy first
    for libpng in (png._libpng, lambda: None):  # with imagecodecs, and without (Pillow)
        monkeypatch.setattr(png, "_libpng", libpng)
        assert read_histogram_of(data).counts.tolist() == [3, 4, 2, 3, 2, 2, 2]


def test_wide_rows_go_to_numpy_and_narrow_ones_to_libpng(monkeypatch):
    monkeypatch.setattr(png, "unfilter", lambda layout, lines: "numpy")
    monkeypatch.setattr(png, "_decode_libpng", lambda data, layout: "libpng")
    for ids, depth, path in [
        (np.tile(IDS, (1, 342)), 8, "numpy"),  # 2052 bytes a row
        (np.tile(IDS, (1, 171)), 16, "numpy"),  # 1026 pixels, 2052 bytes
        (np.tile(IDS, (1, 170)), 16, "libpng"),  # 2040 bytes
    ]:
        data = encode_png(ids, filter_type=4, depth=depth, palette=False)
        assert png.decode(data, png.layout(data), MAX_PIXELS) == path
    # Where libpng does not apply (imagecodecs missing, a palette PNG), numpy after all.
    monkeypatch.setattr(png, "_decode_libpng", lambda data, layout: None)
    assert png.decode(data, png.layout(data), MAX_PIXELS) == "numpy"


def test_narrow_filtered_palette_pngs_are_rebuilt_by_numpy(monkeypatch):
    data = encode_png(IDS, filter_type=[4, 2, 1])  # libpng would give colours, not indices
    assert np.array_equal(png.decode(data, png.layout(data), MAX_PIXELS), IDS)
    monkeypatch.setattr(png, "unfilter", lambda layout, lines: None)
    assert png.decode(data, png.layout(data), MAX_PIXELS) is None  # then Pillow reads it


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    depth=st.sampled_from([8, 16]),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 30)),
    blocky=st.booleans(),
)
def test_unfilter_reconstructs_random_masks(data, depth, shape, blocky):
    high = 255 if depth == 8 else 65535
    if blocky:  # runs of a few values, as masks have: the joins of Paeth rows matter there
        values = data.draw(st.lists(st.integers(0, high), min_size=1, max_size=4))
        cells = data.draw(
            arrays(np.int64, (shape[0], -(-shape[1] // 4)), elements=st.sampled_from(values))
        )
        ids = np.repeat(cells, 4, axis=1)[:, : shape[1]]
    else:
        ids = data.draw(arrays(np.int64, shape, elements=st.integers(0, high)))
    filters = data.draw(
        st.lists(st.sampled_from(ROW_FILTERS), min_size=shape[0], max_size=shape[0])
    )
    encoded = encode_png(ids, filter_type=filters, depth=depth, palette=False)
    assert unfiltered(encoded).tolist() == ids.tolist()
    assert np.array_equal(pillow_pixels(encoded), ids)


@pytest.mark.parametrize(
    ("width", "height", "depth", "palette"),
    [(0, 3, 8, True), (6, 0, 8, False), (6, 3, 16, True), (6, 3, 3, False)],
)
def test_headers_the_png_specification_forbids_are_left_to_pillow(
    tmp_path, width, height, depth, palette
):
    data = bytearray(encode_png(IDS, depth=16 if depth == 16 else 8, palette=palette))
    header = data.index(b"IHDR")
    data[header + 4 : header + 13] = struct.pack(">IIB", width, height, depth)
    crc = zlib.crc32(bytes(data[header : header + 17]))
    data[header + 17 : header + 21] = struct.pack(">I", crc)
    assert png.layout(bytes(data)) is None  # zero pixels, a 16-bit palette, 3 bits
    (tmp_path / "odd.png").write_bytes(bytes(data))
    with pytest.raises(MaskError, match=r"odd\.png: cannot read mask"):
        read_histogram(tmp_path / "odd.png")


def test_a_paeth_row_under_noise_is_left_to_libpng_or_pillow():
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (3, 4096))
    data = encode_png(noise, filter_type=[0, 4, 4], palette=False)
    assert unfiltered(data) is None  # thousands of joins in one row
    if png._libpng() is not None:
        assert np.array_equal(png.decode(data, png.layout(data), MAX_PIXELS), noise)
    values, counts = np.unique(noise, return_counts=True)
    histogram = read_histogram_of(data)
    assert histogram.values.tolist() == values.tolist()
    assert histogram.counts.tolist() == counts.tolist()


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    depth=st.sampled_from([8, 16]),
    width=st.sampled_from([1023, 1024, 1025, 2047, 2048, 2049]),
)
def test_decode_is_pillow_on_either_side_of_a_wide_row(data, depth, width):
    palette = depth == 8 and data.draw(st.booleans())
    cells = data.draw(arrays(np.int64, (4, -(-width // 64)), elements=st.integers(0, 2**depth - 1)))
    ids = np.repeat(cells, 64, axis=1)[:, :width]
    filters = data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 4]), min_size=4, max_size=4))
    encoded = encode_png(ids, filter_type=filters, depth=depth, palette=palette)
    pixels = png.decode(encoded, png.layout(encoded), MAX_PIXELS)
    assert pixels is None or np.array_equal(pixels, ids)  # None: Pillow decodes it
    assert np.array_equal(pillow_pixels(encoded), ids)
    histogram = read_histogram_of(encoded)
    values, counts = np.unique(ids, return_counts=True)
    assert histogram.values.tolist() == values.tolist()
    assert histogram.counts.tolist() == counts.tolist()


def test_a_filtered_mask_is_inflated_once(tmp_path, monkeypatch):
    calls = []
    inflate = deflate.zlib_decompress
    monkeypatch.setattr(deflate, "zlib_decompress", lambda *a: calls.append(1) or inflate(*a))
    monkeypatch.setattr(png, "WIDE_ROW", 1)  # numpy first, as for a wide mask
    path = tmp_path / "f.png"
    path.write_bytes(encode_png(IDS, filter_type=[4, 2, 1]))
    assert read_histogram(path).counts.tolist() == [3, 4, 2, 3, 2, 2, 2]
    assert len(calls) == 1
