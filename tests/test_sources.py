"""Masks anywhere: memory://, archives (tar, tar.gz, zip, WebDataset shards) and Parquet files
give the counts, weights and fingerprint of the same masks on disk."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import tarfile
import warnings
import zipfile
from pathlib import Path

import fsspec
import numpy as np
import pytest

import classweights
from classweights import LabelSpec
from classweights.errors import MaskError
from classweights.masks import MaskFile, ReadOptions, find_masks, read_histogram
from classweights.sources import freeze, iter_masks, parse_storage_options, read_bytes
from helpers import MASK_A, MASK_B, assert_one_line_error, run, run_json, save_mask

#: The same masks in every store: names with folders, one at the top.
MASKS = {"a/1.png": MASK_A, "a/2.png": MASK_B, "b/3.png": MASK_B, "top.png": MASK_A}


@pytest.fixture
def on_disk(tmp_path) -> Path:
    root = tmp_path / "masks"
    for name, ids in MASKS.items():
        save_mask(root / name, ids, "P")
    (root / "notes.txt").write_text("not a mask")
    return root


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def scan_doc(*args: object) -> dict:
    return run_json("scan", *args, "--ignore-index", "255", "-q")


def same_dataset(doc: dict, local: dict) -> None:
    """Assert two documents agree on everything but the paths they were given."""
    doc, local = json.loads(json.dumps(doc)), json.loads(json.dumps(local))
    assert doc["source"].pop("paths") != local["source"].pop("paths")
    assert doc == local


def test_memory_url_counts_as_the_disk_does(on_disk):
    memory = fsspec.filesystem("memory")
    for name, data in files(on_disk).items():
        memory.pipe_file(f"/cw-test/masks/{name}", data)
    try:
        local = scan_doc(on_disk)
        assert local["totals"] == {"files": 4, "pixels": 60, "ignored": 4}
        same_dataset(scan_doc("memory://cw-test/masks"), local)
        # A glob in a URL, and a single stored file.
        globbed = scan_doc("memory://cw-test/masks/*/*.png")
        assert globbed["totals"]["files"] == 3
        single = scan_doc("memory://cw-test/masks/top.png")
        assert single["classes"][1]["pixels"] == 4
        # An archive in a store is a folder too; so is a Parquet file.
        shard = io.BytesIO()
        with tarfile.open(fileobj=shard, mode="w") as out:
            out.add(on_disk, arcname=".")
        memory.pipe_file("/cw-test/masks.tar", shard.getvalue())
        same_dataset(scan_doc("memory://cw-test/masks.tar"), local)
        write_hf_parquet(on_disk.parent / "t.parquet", [(d, n) for n, d in files(on_disk).items()
                                                        if n.endswith(".png")])  # fmt: skip
        memory.pipe_file("/cw-test/t.parquet", (on_disk.parent / "t.parquet").read_bytes())
        same_dataset(scan_doc("memory://cw-test/t.parquet"), local)
    finally:
        memory.rm("/cw-test", recursive=True)


def test_workers_read_stored_masks_themselves(tmp_path):
    # Enough masks for the worker pool: each worker builds its own filesystem from the URL.
    # (Not memory://: its files live in this process alone, and workers may be spawned.)
    for i in range(80):
        save_mask(tmp_path / "m" / f"{i:03d}.png", MASK_B if i % 2 else MASK_A, "P")
    doc = scan_doc(f"file://{tmp_path / 'm'}", "--workers", "2")
    assert doc["totals"] == {"files": 80, "pixels": 80 * 16 - 40 * 2, "ignored": 40 * 2}


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_memory_masks_are_counted_where_their_files_are(tmp_path, monkeypatch, start):
    # A worker forked from this process sees its memory filesystem; one spawned (this
    # process runs another thread, or START_METHOD says so) would find it empty.
    monkeypatch.setattr(importlib.import_module("classweights.scan"), "START_METHOD", start)
    memory = fsspec.filesystem("memory")
    for i in range(80):
        save_mask(tmp_path / "m" / f"{i:03d}.png", MASK_B if i % 2 else MASK_A, "P")
        memory.pipe_file(f"/cw-spawn/{i:03d}.png", (tmp_path / "m" / f"{i:03d}.png").read_bytes())
    try:
        spec = LabelSpec(ignore_index=255)
        stored = classweights.scan("memory://cw-spawn", spec, workers=2)
        assert stored.counts == classweights.scan(tmp_path / "m", spec, workers=2).counts
        assert stored.counts.files == 80
    finally:
        memory.rm("/cw-spawn", recursive=True)


@pytest.fixture
def web_server(on_disk):
    """A web server on 127.0.0.1 whose index pages list the masks as links, without sizes."""
    import functools
    import http.server
    import threading

    pytest.importorskip("aiohttp")  # fsspec's http filesystem
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # not on the test's stderr
            pass

    handler = functools.partial(Quiet, directory=on_disk.parent)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_masks_on_a_web_server_have_the_sizes_of_a_local_folder(on_disk, web_server):
    local = scan_doc(on_disk)
    same_dataset(scan_doc(f"{web_server}/masks/"), local)  # the fingerprint too
    top = scan_doc(f"{web_server}/masks/*.png")
    assert top["source"]["fingerprint"] == scan_doc(on_disk / "top.png")["source"]["fingerprint"]


def test_a_link_to_nothing_on_a_web_server_is_a_mask_that_cannot_be_read(on_disk, web_server):
    # Asking the server for its size failed the whole listing (a traceback for a folder).
    page = on_disk.parent / "page"
    page.mkdir()
    (page / "1.png").write_bytes((on_disk / "top.png").read_bytes())
    (page / "index.html").write_text('<a href="1.png">1</a> <a href="gone.png">gone</a>')
    for url in (f"{web_server}/page/", f"{web_server}/page/*.png"):
        doc = scan_doc(url, "--skip-errors")
        assert doc["totals"]["files"] == 1
        assert [error["file"] for error in doc["errors"]] == [f"{web_server}/page/gone.png"]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".zip"])
def test_archives_are_folders(on_disk, tmp_path, suffix):
    archive = tmp_path / f"masks{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as out:
            for name, data in files(on_disk).items():
                out.writestr(name, data)
    else:
        with tarfile.open(archive, "w:gz" if "gz" in suffix else "w") as out:
            out.add(on_disk, arcname=".")
    local = scan_doc(on_disk)
    same_dataset(scan_doc(archive), local)  # the fingerprint too: names and sizes agree
    masks = find_masks([archive])
    assert [m.name for m in masks] == sorted(MASKS)
    assert read_bytes(masks[0], ReadOptions()) == (on_disk / "a" / "1.png").read_bytes()


@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_archive_names_stored_from_the_root_or_twice_read_as_unpacking_would(
    on_disk, tmp_path, suffix
):
    # Names with a leading / lose it; a name stored twice is its last entry, once (the zip
    # listed it twice and read the last entry for both; a zip's /name was never found).
    archive, stored = tmp_path / f"masks{suffix}", files(on_disk)
    entries = [(f"/{name}", data) for name, data in stored.items()]
    entries.insert(0, ("/top.png", stored["a/2.png"]))  # overwritten below by the real one
    with contextlib.ExitStack() as stack:
        if suffix == ".zip":
            out = stack.enter_context(zipfile.ZipFile(archive, "w"))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
            for name, data in entries:
                out.writestr(name, data)
        else:
            tar = stack.enter_context(tarfile.open(archive, "w"))
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert [m.name for m in find_masks([archive])] == sorted(MASKS)
    same_dataset(scan_doc(archive), scan_doc(on_disk))


def test_a_plain_tar_member_is_read_as_a_range_without_the_archive_index(
    on_disk, tmp_path, monkeypatch
):
    archive = tmp_path / "masks.tar"
    with tarfile.open(archive, "w") as out:
        out.add(on_disk, arcname=".")
        link = tarfile.TarInfo("hard.png")
        link.type, link.linkname = tarfile.LNKTYPE, "./a/1.png"
        out.addfile(link)  # a hard link: no bytes of its own
    with tarfile.open(archive) as tar:
        offsets = {m.name.removeprefix("./"): m.offset_data for m in tar.getmembers()}
    masks = {m.name: m for m in find_masks([archive])}
    first = masks["a/1.png"]
    size = (on_disk / "a" / "1.png").stat().st_size
    assert first.span == (offsets["a/1.png"], size)
    assert masks["hard.png"].span is None  # read through the archive's index, as before
    with tarfile.open(tmp_path / "masks.tar.gz", "w:gz") as out:
        out.add(on_disk, arcname=".")
    assert {m.span for m in find_masks([tmp_path / "masks.tar.gz"])} == {None}

    def no_index(*args):
        raise AssertionError("the archive's index was read")

    # In a worker: no index is built for a member that has its span.
    monkeypatch.setattr("classweights.sources._archive_filesystem", no_index)
    assert read_bytes(first, ReadOptions()) == (on_disk / "a" / "1.png").read_bytes()
    assert read_histogram(first).counts.sum() == np.size(MASK_A)
    # An archive cut short since it was listed: one line naming the member.
    with open(archive, "r+b") as file:
        file.truncate(offsets["a/1.png"] + 10)
    with pytest.raises(MaskError, match=f"cannot read: the archive ends {size - 10} bytes early"):
        read_bytes(first, ReadOptions())


def test_a_tar_member_in_a_store_is_one_ranged_read(on_disk, tmp_path, monkeypatch):
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w") as out:
        out.add(on_disk, arcname=".")
    memory = fsspec.filesystem("memory")
    memory.pipe_file("/cw-range/masks.tar", shard.getvalue())
    first = find_masks(["memory://cw-range/masks.tar"])[0]
    expected = (on_disk / "a" / "1.png").read_bytes()
    asked = []
    whole = memory.cat_file

    def cat_file(path, start=None, end=None, **kwargs):
        asked.append((start, end))
        return whole(path, start, end, **kwargs)

    monkeypatch.setattr(memory, "cat_file", cat_file)
    assert read_bytes(first, ReadOptions()) == expected
    assert asked == [(first.span[0], first.span[0] + len(expected))]
    # A web server that ignores the range sends the whole archive: the member is cut from it.
    monkeypatch.setattr(memory, "cat_file", lambda path, start=None, end=None: whole(path))
    assert read_bytes(first, ReadOptions()) == expected


def test_webdataset_shards_with_a_glob(on_disk, tmp_path):
    # WebDataset: samples as KEY.EXT files one after another, over several shards.
    shards = tmp_path / "shards"
    shards.mkdir()
    names = sorted(MASKS)
    for shard in range(2):
        with tarfile.open(shards / f"train-{shard:04d}.tar", "w") as out:
            for index, name in enumerate(names[shard * 2 : shard * 2 + 2]):
                key = f"sample{shard * 2 + index:06d}"
                for ext, data in [
                    ("jpg", b"\xff\xd8 not a mask"),
                    ("json", b'{"label": 1}'),
                    ("seg.png", (on_disk / name).read_bytes()),
                ]:
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    out.addfile(info, io.BytesIO(data))
    doc = scan_doc(shards / "train-*.tar", "--glob", "*.seg.png")
    local = scan_doc(on_disk)
    for key in ("classes", "totals", "weights"):
        assert doc[key] == local[key]
    masks = find_masks([shards / "train-*.tar"], "*.seg.png")
    assert [m.name for m in masks] == [f"sample{i:06d}.seg.png" for i in range(4)]
    assert masks[0].path.startswith("tar://sample000000.seg.png::")


def write_hf_parquet(path: Path, rows: list[tuple[bytes | None, str | None]], **kwargs) -> None:
    """Write a Parquet file as Hugging Face `datasets` writes an Image column: a struct of
    bytes and path, with the features in the schema's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {"label": {"_type": "Image"}, "id": {"dtype": "int64", "_type": "Value"}}
    schema = pa.schema(
        [("label", image), ("id", pa.int64())],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    table = pa.table(
        {
            "label": pa.array([{"bytes": b, "path": p} for b, p in rows], image),
            "id": pa.array(range(len(rows)), pa.int64()),
        },
        schema=schema,
    )
    pq.write_table(table, path, **kwargs)


def test_parquet_image_column_as_hugging_face_writes_it(on_disk, tmp_path):
    # Rows out of name order, over several row groups: read lazily, listed in name order.
    rows = [((on_disk / name).read_bytes(), name) for name in reversed(sorted(MASKS))]
    write_hf_parquet(tmp_path / "train.parquet", rows, row_group_size=3)
    local = scan_doc(on_disk)
    same_dataset(scan_doc(tmp_path / "train.parquet"), local)
    same_dataset(scan_doc(tmp_path / "train.parquet", "--column", "label"), local)
    masks = find_masks([tmp_path / "train.parquet"])
    assert [m.name for m in masks] == sorted(MASKS)
    assert masks[0].path.endswith("train.parquet#3")


def test_parquet_rows_without_a_path_and_plain_binary(on_disk, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = [(on_disk / name).read_bytes() for name in sorted(MASKS)]
    write_hf_parquet(tmp_path / "nameless.parquet", [(d, None) for d in data])
    masks = find_masks([tmp_path / "nameless.parquet"])
    assert [m.name for m in masks] == [f"nameless.parquet#{i}" for i in range(4)]
    pq.write_table(
        pa.table({"mask": pa.array(data, pa.binary()), "image": pa.array(data, pa.binary())}),
        tmp_path / "two.parquet",
    )
    result = run("scan", tmp_path / "two.parquet")
    assert_one_line_error(result, 3, "two.parquet", "several image columns (mask, image)")
    result = run("scan", tmp_path / "two.parquet", "--column", "nope")
    assert_one_line_error(result, 3, "no column 'nope'", "mask, image")
    doc = scan_doc(tmp_path / "two.parquet", "--column", "mask")
    assert doc["totals"] == scan_doc(on_disk)["totals"]


@pytest.mark.parametrize("path", [None, "int64"])
def test_parquet_structs_without_a_text_path_name_rows_by_number(on_disk, tmp_path, path):
    # {bytes} alone, or a path that is a number: the rows are FILE#ROW, as without a path.
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = [(on_disk / name).read_bytes() for name in sorted(MASKS)]
    fields = [("bytes", pa.binary())] + ([("path", pa.int64())] if path else [])
    rows = [{"bytes": d, "path": i} if path else {"bytes": d} for i, d in enumerate(data)]
    pq.write_table(pa.table({"label": pa.array(rows, pa.struct(fields))}), tmp_path / "s.parquet")
    masks = find_masks([tmp_path / "s.parquet"])
    assert [m.name for m in masks] == [f"s.parquet#{i}" for i in range(4)]
    assert scan_doc(tmp_path / "s.parquet")["totals"] == scan_doc(on_disk)["totals"]


def test_storage_options_parse_as_json_with_dotted_keys():
    options = parse_storage_options(
        ["anon=true", "retries=3", "profile=dev", "client_kwargs.endpoint_url=http://h:9000"]
    )
    assert options == {
        "anon": True,
        "retries": 3,
        "profile": "dev",
        "client_kwargs": {"endpoint_url": "http://h:9000"},
    }
    frozen = ReadOptions(storage_options=freeze(options))
    assert hash(frozen) == hash(ReadOptions(storage_options=freeze(dict(options))))
    assert dict(frozen.storage_options)["client_kwargs"] == {"endpoint_url": "http://h:9000"}
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_storage_options(["anon"])
    result = run("scan", "sample_masks", "--storage-option", "anon")
    assert result.exit_code == 2
    assert "not KEY=VALUE" in result.stderr


def test_missing_package_unknown_protocol_and_missing_url(tmp_path):
    if not _installed("gcsfs"):
        result = run("scan", "gs://bucket/masks")
        assert_one_line_error(result, 3, "gs://bucket/masks", "needs gcsfs", "'.[gcs]'")
    if not _installed("huggingface_hub"):
        result = run("scan", "hf://datasets/o/n/train.parquet", "--column", "label")
        assert_one_line_error(result, 3, "hf://datasets/o/n/train.parquet", "'.[hf]'")
    assert_one_line_error(run("scan", "nope://x/y"), 3, "nope://x/y", "unknown protocol")
    result = run("scan", "memory://cw-none/masks")
    assert_one_line_error(result, 3, "memory://cw-none/masks", "no such file")
    result = run("scan", tmp_path / "missing.tar")
    assert_one_line_error(result, 3, "missing.tar", "no such file or directory")
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    assert_one_line_error(run("scan", tmp_path / "broken.zip"), 3, "broken.zip")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_local_listing_is_lazy_sorted_and_versioned(on_disk):
    stream = iter_masks([on_disk])
    first = next(stream)  # a generator: nothing listed past what is asked for
    assert isinstance(first, MaskFile) and first.name == "a/1.png"
    assert first.version == str(os.stat(first.path).st_mtime_ns)
    assert [first.name, *(m.name for m in stream)] == sorted(MASKS)
    assert [m.name for m in iter_masks([f"file://{on_disk}"])] == sorted(MASKS)
    # Several paths come out merged in name order, without repeats.
    both = iter_masks([on_disk / "b", on_disk / "a", on_disk / "a" / "1.png"])
    assert [m.name for m in both] == ["1.png", "2.png", "3.png"]


def test_stored_npy_and_nifti_are_read_from_bytes(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = np.array([[[0, 1], [1, 2]], [[2, 2], [0, 0]]], np.uint8)
    memory = fsspec.filesystem("memory")
    np.save(buffer := io.BytesIO(), volume)
    memory.pipe_file("/cw-arrays/v.npy", buffer.getvalue())
    for name in ("v.nii", "v.nii.gz"):
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / name)
        memory.pipe_file(f"/cw-arrays/{name}", (tmp_path / name).read_bytes())
    try:
        for name in ("v.npy", "v.nii", "v.nii.gz"):
            counts = read_histogram(MaskFile(f"memory://cw-arrays/{name}", name))
            pairs = zip(counts.values.tolist(), counts.counts.tolist(), strict=True)
            assert dict(pairs) == {0: 3, 1: 2, 2: 3}
    finally:
        memory.rm("/cw-arrays", recursive=True)
