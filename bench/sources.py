"""Benchmark masks read from elsewhere against the same masks in a local folder.

Lines, each a ratio to the local default scan measured in the same run (runs interleaved,
medians; above 1 is slower than the local folder):

- ``tar shard``: the masks in one uncompressed ``.tar`` (a WebDataset shard), read as a folder;
- ``s3 (moto, loopback)``: the masks in a bucket of moto's S3 server on 127.0.0.1, read
  through s3fs: what the protocol and the per-object requests cost, without a network.

The 2,000 masks (512x512, palette PNG, 19 classes plus void) are generated deterministically
under ``bench/data/sources/`` on the first run. Needs ``pip install '.[test]'`` (moto, s3fs).
``bench/run.py`` can call `lines` and print them with its own report.

Usage: python bench/sources.py [--data DIR] [--runs N] [--count N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 20240611
SIZE = 512


def generate(directory: Path, count: int) -> Path:
    """Write ``count`` palette masks into ``directory/masks`` once, and a tar shard of them."""
    masks = directory / "masks"
    done = directory / f"done-{count}"
    if not done.exists():
        rng = np.random.default_rng(SEED)
        masks.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            labels = np.zeros((SIZE, SIZE), np.uint8)
            for _ in range(12):  # rectangles of classes over a background, void along an edge
                y, x = rng.integers(0, SIZE - 64, 2)
                h, w = rng.integers(16, 192, 2)
                labels[y : y + h, x : x + w] = rng.integers(0, 19)
            labels[:, :4] = 255
            image = Image.fromarray(labels, "P")
            image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
            image.save(masks / f"{index:06d}.png")
        with tarfile.open(directory / "masks.tar", "w") as shard:
            for path in sorted(masks.iterdir()):
                shard.add(path, arcname=path.name)
        done.touch()
    return masks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _upload(endpoint: str, masks: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    fs.mkdir("bench")
    fs.put([str(p) for p in sorted(masks.iterdir())], "bench/masks/")


def _timed(arguments: list[str], env: dict[str, str]) -> float:
    # The masks' void is 255 (`generate`): without saying so, the scan refuses to guess.
    command = [sys.executable, "-m", "classweights", "scan", *arguments, "--ignore-index", "255",
               "-q"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def lines(data: Path, runs: int = 5, count: int = 2000) -> list[str]:
    """Return the report lines: each source's median time over the local scan's."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    masks = generate(data / "sources", count)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        _upload(endpoint, masks)
        store = ["--storage-option", f"client_kwargs.endpoint_url={endpoint}"]
        cases = {
            "local": [str(masks)],
            "tar shard": [str(data / "sources" / "masks.tar")],
            "s3 (moto, loopback)": ["s3://bench/masks", *store],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for arguments in cases.values():  # warm the caches once, untimed
            _timed(arguments, env)
        for _ in range(runs):
            for name, arguments in cases.items():
                times[name].append(_timed(arguments, env))
    finally:
        server.stop()
    local = statistics.median(times["local"])
    spread = max((max(t) - min(t)) / statistics.median(t) for t in times.values())
    report = [f"sources: {count} masks {SIZE}x{SIZE}, local {local:.2f} s, spread {spread:.0%}"]
    for name in list(cases)[1:]:
        median = statistics.median(times[name])
        report.append(f"  {name:<22} {median:6.2f} s  {median / local:5.2f} x local")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    arguments = parser.parse_args()
    print("\n".join(lines(arguments.data, arguments.runs, arguments.count)), flush=True)


if __name__ == "__main__":
    main()
