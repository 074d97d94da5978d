"""Masks in S3: a real S3 endpoint (moto's server) on 127.0.0.1, never a real AWS host."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from classweights.masks import find_masks
from helpers import MASK_A, MASK_B, assert_one_line_error, run, run_json, save_mask

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

MASKS = {"a/1.png": MASK_A, "a/2.png": MASK_B, "b/3.png": MASK_B, "top.png": MASK_A}


@pytest.fixture(scope="module")
def endpoint():
    """An S3 endpoint on a free loopback port, for this module's tests."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch):
    """Dummy credentials, no instance metadata, quick failures: nothing reaches AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    return endpoint


def options(endpoint: str) -> list[str]:
    """The --storage-option flags that point s3fs at the endpoint, failing fast."""
    return [
        "--storage-option",
        f"client_kwargs.endpoint_url={endpoint}",
        "--storage-option",
        "config_kwargs.connect_timeout=2",
        "--storage-option",
        "config_kwargs.retries.max_attempts=1",
        "--workers",
        "1",
    ]


def bucket_of_masks(endpoint: str, bucket: str, root: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    fs.mkdir(bucket)
    for path in sorted(root.rglob("*.png")):
        fs.pipe_file(f"{bucket}/masks/{path.relative_to(root).as_posix()}", path.read_bytes())


def test_a_bucket_counts_as_the_disk_does(s3, tmp_path):
    for name, ids in MASKS.items():
        save_mask(tmp_path / "masks" / name, ids, "P")
    bucket_of_masks(s3, "cw-same", tmp_path / "masks")
    local = run_json("scan", tmp_path / "masks", "--ignore-index", "255", "-q")
    stored = run_json("scan", "s3://cw-same/masks", *options(s3), "--ignore-index", "255", "-q")
    assert stored["source"].pop("paths") == ["s3://cw-same/masks"]
    local["source"].pop("paths")
    assert stored == local  # counts, weights and the fingerprint
    assert local["totals"]["files"] == 4
    # A single object, and a glob over a prefix.
    one = run_json("scan", "s3://cw-same/masks/top.png", *options(s3), "-q")
    assert one["totals"] == {"files": 1, "pixels": 16, "ignored": 0}
    some = run_json(
        "scan", "s3://cw-same/masks/a/*.png", *options(s3), "--ignore-index", "255", "-q"
    )
    assert some["totals"]["files"] == 2
    # A tar shard in the bucket is a folder, its members read by range requests.
    import s3fs

    with tarfile.open(tmp_path / "masks.tar", "w") as shard:
        shard.add(tmp_path / "masks", arcname=".")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3}, skip_instance_cache=True)
    fs.put_file(str(tmp_path / "masks.tar"), "cw-same/masks.tar")
    tarred = run_json("scan", "s3://cw-same/masks.tar", *options(s3), "--ignore-index", "255")
    assert tarred["source"].pop("paths") == ["s3://cw-same/masks.tar"]
    assert tarred == local
    # A stored file's version is its ETag, which changes when the object does.
    endpoint = {"client_kwargs": {"endpoint_url": s3}}
    listed = find_masks(["s3://cw-same/masks"], storage_options=endpoint)
    assert [m.name for m in listed] == sorted(MASKS)
    assert all(m.version.strip('"') for m in listed)


def test_check_takes_storage_options_too(s3, tmp_path):
    save_mask(tmp_path / "m" / "x.png", MASK_B, "P")
    bucket_of_masks(s3, "cw-check", tmp_path / "m")
    result = run("check", "s3://cw-check/masks", *options(s3), "--allowed-values", "0-2", "-q")
    assert result.exit_code == 1  # 255 is not allowed
    assert "255" in result.stdout


def test_no_bucket_missing_object_and_refused_access_are_one_line(s3, tmp_path):
    save_mask(tmp_path / "m" / "x.png", MASK_A, "P")
    bucket_of_masks(s3, "cw-errors", tmp_path / "m")
    result = run("scan", "s3://cw-no-such-bucket/masks", *options(s3))
    assert_one_line_error(result, 3, "s3://cw-no-such-bucket/masks", "no such")
    result = run("scan", "s3://cw-errors/masks/missing.png", *options(s3))
    assert_one_line_error(result, 3, "s3://cw-errors/masks/missing.png", "no such")
    # A wrong endpoint is a network error after the (one) retry, not a hang or a traceback.
    wrong = [o.replace(s3, "http://127.0.0.1:9") for o in options(s3)]
    result = run("scan", "s3://cw-errors/masks", *wrong)
    assert_one_line_error(result, 3, "s3://cw-errors/masks")


def test_a_bucket_policy_that_denies_is_access_denied(s3, tmp_path):
    import s3fs

    save_mask(tmp_path / "m" / "x.png", MASK_A, "P")
    bucket_of_masks(s3, "cw-denied", tmp_path / "m")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3}, skip_instance_cache=True)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                       "Resource": ["arn:aws:s3:::cw-denied", "arn:aws:s3:::cw-denied/*"]}],
    }  # fmt: skip
    fs.call_s3("put_bucket_policy", Bucket="cw-denied", Policy=json.dumps(policy))
    result = run("scan", "s3://cw-denied/masks", *options(s3))
    if result.exit_code == 0:
        pytest.skip("this moto does not enforce bucket policies")
    assert_one_line_error(result, 3, "s3://cw-denied/masks", "access denied")
