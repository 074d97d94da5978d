"""Per-image rows: `scan --per-image FILE`, the writers and the reader."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from classweights.counting import LabelSpec
from classweights.errors import InputError
from classweights.per_image import FORMATS, InOrder, Row, Table, TaskRows, read_rows, writing
from classweights.scan import scan
from helpers import MASK_A, MASK_B, assert_one_line_error, run, run_json, save_mask

#: The rows of MASK_A and MASK_B with 255 ignored (see helpers: counts by eye).
ROWS = [
    Row("a.png", 4, 4, 0, {0: 12, 1: 4}),
    Row("b.png", 4, 4, 2, {0: 8, 1: 4, 2: 2}),
]


@pytest.fixture
def two_masks(tmp_path):
    save_mask(tmp_path / "masks" / "a.png", MASK_A)
    save_mask(tmp_path / "masks" / "b.png", MASK_B)
    return tmp_path / "masks"


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_rows_of_hand_made_masks_in_every_format(tmp_path, two_masks, suffix):
    out = tmp_path / f"rows{suffix}"
    doc = run_json("scan", two_masks, "--ignore-index", 255, "--per-image", out, "-q")
    assert list(read_rows(out)) == ROWS
    # Summed, the rows are the document's counts.
    counts = Table.of(read_rows(out)).counts(doc["num_classes"])
    assert counts.pixels.tolist() == [c["pixels"] for c in doc["classes"]]
    assert counts.images.tolist() == [c["images"] for c in doc["classes"]]
    assert counts.image_pixels.tolist() == [c["image_pixels"] for c in doc["classes"]]
    assert counts.ignored == doc["totals"]["ignored"]
    assert counts.files == doc["totals"]["files"]


def test_csv_and_jsonl_are_plain_text(tmp_path, two_masks):
    run_json("scan", two_masks, "--ignore-index", 255, "--per-image", tmp_path / "r.csv", "-q")
    assert (tmp_path / "r.csv").read_text() == (
        "path,height,width,ignored,pixels\na.png,4,4,0,0:12 1:4\nb.png,4,4,2,0:8 1:4 2:2\n"
    )
    run_json("scan", two_masks, "--ignore-index", 255, "--per-image", tmp_path / "r.jsonl", "-q")
    assert (tmp_path / "r.jsonl").read_text().splitlines()[1] == (
        '{"path":"b.png","height":4,"width":4,"ignored":2,"pixels":{"0":8,"1":4,"2":2}}'
    )


def test_a_value_map_sums_raw_values_into_one_class(tmp_path, two_masks):
    out = tmp_path / "r.jsonl"
    run_json("scan", two_masks, "--map", "2:1", "--map", "255:1", "--per-image", out, "-q")
    assert list(read_rows(out))[1] == Row("b.png", 4, 4, 0, {0: 8, 1: 8})


def _many_masks(root, count=150):
    rng = np.random.default_rng(3)
    for i in range(count):
        ids = rng.integers(0, 1 + i % 5, size=(3 + i % 4, 5), dtype=np.uint8)
        ids[0, 0] = 255 if i % 3 == 0 else ids[0, 0]
        save_mask(root / f"d{i % 7}" / f"m{i:03d}.png", ids)
    return root


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_same_rows_in_path_order_whatever_the_workers(tmp_path, suffix):
    masks = _many_masks(tmp_path / "masks")
    files = []
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}{suffix}"
        doc = run_json(
            "scan", masks, "--ignore-index", 255, "--workers", workers, "--per-image", out, "-q"
        )
        files.append(out)
    rows = [list(read_rows(f)) for f in files]
    assert rows[0] == rows[1] == rows[2]
    assert [r.path for r in rows[0]] == sorted(r.path for r in rows[0])
    assert len(rows[0]) == 150
    assert Table.of(rows[0]).counts(doc["num_classes"]).pixels.tolist() == [
        c["pixels"] for c in doc["classes"]
    ]
    if suffix == ".csv":
        assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()


def test_rows_from_the_library_match_a_pillow_count(tmp_path):
    masks = _many_masks(tmp_path / "masks", 20)
    got: list[Row] = []
    scan([masks], LabelSpec(ignore_index=(255,)), rows=got.extend, workers=1)
    from PIL import Image

    for row in got:
        ids = np.asarray(Image.open(masks / row.path))
        values, counts = np.unique(ids, return_counts=True)
        expect = {int(v): int(n) for v, n in zip(values, counts, strict=True) if v != 255}
        assert row.pixels == expect
        assert row.ignored == int((ids == 255).sum())
        assert (row.height, row.width) == ids.shape


def test_in_order_hands_rows_on_in_task_order():
    seen: list[Row] = []
    in_order = InOrder(seen.extend)
    parts = [TaskRows(i, [Row(str(i), 1, 1, 0, {})]) for i in range(4)]
    for i in (2, 0, 3):
        in_order.put(parts[i])
    assert [r.path for r in seen] == ["0"] and in_order.waiting == 2
    in_order.put(parts[1])
    assert [r.path for r in seen] == ["0", "1", "2", "3"] and in_order.waiting == 0


def test_a_failed_scan_leaves_no_file(tmp_path, two_masks):
    (two_masks / "c.png").write_bytes(b"not a png")
    out = tmp_path / "rows.csv"
    result = run("scan", two_masks, "--ignore-index", 255, "--per-image", out)
    assert result.exit_code == 3
    assert os.listdir(tmp_path) == ["masks"]


def test_no_file_is_left_when_the_weights_fail(tmp_path):
    # Every pixel ignored: the scan succeeds, the weights do not (exit 3), and the rows,
    # complete as they are, would describe a command that failed.
    save_mask(tmp_path / "ign" / "v.png", [[255, 255], [255, 255]])
    out = tmp_path / "rows.csv"
    result = run("scan", tmp_path / "ign", "--ignore-index", 255, "--per-image", out)
    assert_one_line_error(result, 3, "no pixels")
    assert sorted(os.listdir(tmp_path)) == ["ign"]


def test_skipped_masks_have_no_row(tmp_path, two_masks):
    (two_masks / "c.png").write_bytes(b"not a png")
    out = tmp_path / "rows.csv"
    run_json("scan", two_masks, "--ignore-index", 255, "--skip-errors", "--per-image", out, "-q")
    assert [r.path for r in read_rows(out)] == ["a.png", "b.png"]


def test_bad_per_image_names_are_usage_errors(tmp_path, two_masks):
    result = run("scan", two_masks, "--per-image", tmp_path / "rows.txt")
    assert result.exit_code == 2
    assert "--per-image" in result.stderr and ".csv, .jsonl, .parquet" in result.stderr
    result = run("scan", two_masks, "--per-image", tmp_path / "nowhere" / "rows.csv")
    assert result.exit_code == 2


def test_refuses_to_write_over_a_link(tmp_path, two_masks):
    target = tmp_path / "target.csv"
    target.write_text("keep")
    (tmp_path / "link.csv").symlink_to(target)
    result = run("scan", two_masks, "--ignore-index", 255, "--per-image", tmp_path / "link.csv")
    assert_one_line_error(result, 3, "link.csv", "not a regular file")
    assert target.read_text() == "keep"


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.csv", "path,pixels\na.png,0:1\n", "header"),
        ("bad.csv", "path,height,width,ignored,pixels\na.png,4,4,0,0-12\n", "not a per-image"),
        ("bad.jsonl", '{"path": "a.png"}\n', "no 'height' field"),
        ("bad.jsonl", '{"path":"a","height":1,"width":1,"ignored":-1,"pixels":{}}\n', "ignored -1"),
        ("bad.parquet", "not parquet", "not a per-image file"),
    ],
)
def test_reading_a_bad_file_is_one_input_error(tmp_path, name, text, fragment):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=fragment) as error:
        list(read_rows(tmp_path / name))
    assert name in str(error.value)


def test_writing_is_atomic_when_the_block_fails(tmp_path):
    out = tmp_path / "rows.jsonl"
    out.write_text("old")
    with pytest.raises(KeyboardInterrupt), writing(out) as write:
        write(ROWS)
        raise KeyboardInterrupt
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["rows.jsonl"]


def test_values_that_may_not_occur_are_in_no_column(two_masks):
    # Without strict, label 2 (out of 0..1) and 255 (not ignored) are tallied as unexpected by
    # the scan, and a row holds neither: its pixels are the counted classes alone.
    got: list[Row] = []
    result = scan([two_masks], LabelSpec(num_classes=2), strict=False, rows=got.extend)
    assert got == [
        Row("a.png", 4, 4, 0, {0: 12, 1: 4}, 0),
        Row("b.png", 4, 4, 0, {0: 8, 1: 4}, 4),  # 2 x 2 and 2 x 255, in no class column
    ]
    summed = Table.of(got).counts(2)
    assert summed.pixels.tolist() == result.counts.pixels.tolist() == [20, 8]
    assert summed.image_pixels.tolist() == result.counts.image_pixels.tolist() == [32, 32]
    # A file has no column for them: writing such a row is refused, not silently short.
    out = two_masks.parent / "rows.csv"
    with (
        pytest.raises(InputError, match=r"b\.png: 4 pixels of values that may not occur"),
        writing(out) as write,
    ):
            scan([two_masks], LabelSpec(num_classes=2), strict=False, rows=write, workers=1)
    assert not out.exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    masks=st.lists(
        arrays(
            np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.integers(0, 6)
        ),
        min_size=1,
        max_size=6,
    ),
    ignore=st.sets(st.integers(0, 6), max_size=2),
    mapping=st.dictionaries(st.integers(0, 6), st.integers(0, 6), max_size=3),
    num_classes=st.none() | st.integers(1, 7),
)
def test_rows_always_add_up_to_the_counts(tmp_path_factory, masks, ignore, mapping, num_classes):
    """Whatever the masks, ignore list, value map and class count (labels past it are
    unexpected, left out of the classes): the rows' sums are the scan's counts."""
    root = tmp_path_factory.mktemp("masks")
    for i, ids in enumerate(masks):
        save_mask(root / f"m{i}.png", ids)
    spec = LabelSpec(
        num_classes=num_classes, ignore_index=tuple(ignore), mapping=tuple(mapping.items())
    )
    got: list[Row] = []
    result = scan([root], spec, rows=got.extend, workers=1, strict=False)
    table = Table.of(got)
    counts = result.counts
    summed = table.counts(counts.num_classes)
    assert summed.pixels.tolist() == counts.pixels.tolist()
    assert summed.images.tolist() == counts.images.tolist()
    assert summed.image_pixels.tolist() == counts.image_pixels.tolist()
    assert (summed.ignored, summed.files) == (counts.ignored, counts.files)
    assert [r.path for r in got] == sorted(r.path for r in got)
    assert [(r.height, r.width) for r in got] == [masks[int(r.path[1:-4])].shape for r in got]


def test_array_rows_have_their_shape_and_are_decoded_once(tmp_path, monkeypatch):
    from classweights import masks

    ids = np.array([[0, 0, 1], [2, 2, 2]], np.uint8)  # 2 high, 3 wide: 2 x 0, 1 x 1, 3 x 2
    np.savez_compressed(tmp_path / "a.npz", labels=ids)
    np.save(tmp_path / "v.npy", ids.T)
    loads = []
    read_npz = masks._read_npz

    def counted(path, key):
        loads.append(path)
        return read_npz(path, key)

    monkeypatch.setitem(masks._ARRAY_READERS, ".npz", counted)
    got: list[Row] = []
    scan([tmp_path], LabelSpec(), rows=got.extend, workers=1)
    assert got == [
        Row("a.npz", 2, 3, 0, {0: 2, 1: 1, 2: 3}),
        Row("v.npy", 3, 2, 0, {0: 2, 1: 1, 2: 3}),
    ]
    assert len(loads) == 1
