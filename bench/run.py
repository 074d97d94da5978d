"""Benchmark ``classweights scan`` on masks that look like real annotation, against the baselines
of docs/design.md, "Performance".

Each measurement is a whole process, interpreter start included, on a warm page cache, run in
turn with the others (interleaved) so that noise on the machine spreads over all of them:

- ``naive``: the throw-away one-process script, ``np.unique`` on every mask Pillow decodes
  (timed on every k-th mask and scaled by k, marked ``~``: it is the slowest by far);
- ``decode``: Pillow decoding every mask and nothing else, on all cores;
- ``opencv``: ``cv2.imread(IMREAD_UNCHANGED)`` and a count (``np.bincount``; ``np.unique`` of
  packed colours) on all cores: what a competent user writes;
- ``floor``: reading every file and inflating its image data with libdeflate, on all cores:
  no exact count of a PNG can cost less;
- ``scan``: ``python -m classweights scan DIR -q ...``.

The masks (generated deterministically under ``bench/data/`` on the first run, then reused)
are drawn as annotation tools draw them: polygons at every angle, ellipses, thin poles and
lines, 19 classes with a Zipf-like imbalance, void (255) outlines around some objects. Each
mask is written by Pillow with its defaults (P, L, I;16 as ids x 1000 with void 65535, RGB in
Cityscapes colours) and by OpenCV's ``imwrite`` with its defaults (L, I;16, RGB: OpenCV cannot
write palette PNGs), at 512x512 (2,000 masks) and 2048x1024 (200 masks). Before anything is
timed, every mask's counts are checked against Pillow's.

A line of the report gives the median times, then the ratios scan/decode, scan/opencv and
scan/floor, then the steady-state cost per mask (the time for 2N masks minus that for N,
divided by N: start-up drops out; N is at least 1,000, the 200 large masks linked 5 and 10
times over; the two are timed one after the other, and the median of those paired
differences is taken, so that the load of a shared machine, which drifts from run to run,
cancels within a pair) of the scan and of the floor, ``spread`` (the largest
(max - min) / median of the timings: how far to trust them) and the scan's peak memory (main
process + largest worker). The memory line compares that peak at 2,000 and 20,000 masks. The
"easy case" line is the previous benchmark's grid of axis-aligned rectangles, whose rows
mostly repeat the row above. ``--real DIR`` adds a line for a folder of your own masks.

Usage: python bench/run.py [--quick] [--runs N] [--data DIR] [--real DIR [--real-options ...]]
       [--pure] [--beyond]
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw

#: Bump when the drawing or encoding changes, so that old datasets are regenerated.
GENERATOR_VERSION = 2
SEED = 20240611

#: (name, width, height, number of masks), and the same with --quick.
SIZES = (("512x512", 512, 512, 2000), ("2048x1024", 2048, 1024, 200))
QUICK_SIZES = (("512x512", 512, 512, 200), ("2048x1024", 2048, 1024, 20))
#: The memory measurement's large set: the 512x512 Pillow palette masks linked this many times.
MEMORY_COPIES = 10
#: The steady-state cost per mask is timed on N and 2N masks, N at least this many: a set of
#: fewer masks (the 200 large ones) is linked k and 2k times over, so that the difference
#: between the two (a second or more) stands well above a whole process's noise.
STEADY_MASKS = 1000

#: Writer -> modes it writes; mode as Pillow names it -> directory name.
WRITERS = {"pillow": ("P", "L", "I;16", "RGB"), "opencv": ("L", "I;16", "RGB")}
MODE_DIRS = {"P": "P", "L": "L", "I;16": "I16", "RGB": "RGB"}

VOID = 255
#: I;16 masks store id * 1000, so that values exceed 255, and void as 65535.
I16_SCALE = 1000
I16_VOID = 65535

#: Cityscapes' 19 training classes and their colours; void is black.
CLASSES = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)
VOID_COLOR = (0, 0, 0)

#: Class frequencies fall off like 1/(id + 1)^1.2 (Zipf-like), as in real datasets: road is
#: common, bicycles are rare.
CLASS_P = 1 / np.arange(1, len(CLASSES) + 1) ** 1.2
CLASS_P /= CLASS_P.sum()

#: ids -> colour, as a lookup table indexed by the uint8 label (palette and RGB masks).
COLOR_LUT = np.zeros((256, 3), np.uint8)
COLOR_LUT[: len(CLASSES)] = [color for _, color in CLASSES]
COLOR_LUT[VOID] = VOID_COLOR

#: The naive script is timed on about this many masks of a set (a fifth with --quick) and
#: scaled to all of them; on colour masks, whose np.unique(axis=0) takes seconds a mask, on
#: a tenth as many.
NAIVE_SAMPLE = 100

#: Peak memory is reported in MB (10**6 bytes); ru_maxrss is in KiB on Linux, bytes on macOS.
MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024

NAIVE_CODE = """
import sys
from pathlib import Path

import numpy as np
from PIL import Image

totals = {}
for path in sorted(Path(sys.argv[1]).glob("*.png"))[:: int(sys.argv[2])]:
    mask = np.array(Image.open(path))
    if mask.ndim == 3:
        values, counts = np.unique(mask.reshape(-1, 3), axis=0, return_counts=True)
        values = [tuple(value) for value in values.tolist()]
    else:
        values, counts = np.unique(mask, return_counts=True)
        values = values.tolist()
    for value, count in zip(values, counts.tolist()):
        totals[value] = totals.get(value, 0) + count
print(totals)
"""

#: The pool every all-cores baseline runs its ``work(paths)`` in.
POOL_CODE = """
import multiprocessing
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    paths = [str(path) for path in sorted(Path(sys.argv[1]).glob("*.png"))]
    workers = os.cpu_count()
    chunk = max(1, min(256, len(paths) // (4 * workers)))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    method = "fork" if sys.platform.startswith("linux") else None
    with multiprocessing.get_context(method).Pool(workers) as pool:
        assert sum(pool.imap_unordered(work, chunks)) == len(paths)
"""

DECODE_CODE = (
    """
from PIL import Image


def work(paths):
    for path in paths:
        with Image.open(path) as image:
            image.load()
    return len(paths)
"""
    + POOL_CODE
)

OPENCV_CODE = (
    """
import cv2
import numpy as np

cv2.setNumThreads(0)  # one process a core already


def work(paths):
    totals = {}
    for path in paths:
        mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if mask.ndim == 3:  # BGR: pack the colours, count the distinct ones
            packed = (mask[..., 2].astype(np.uint32) << 16) | (mask[..., 1].astype(np.uint32) << 8)
            values, counts = np.unique(packed | mask[..., 0], return_counts=True)
        else:
            counts = np.bincount(mask.ravel(), minlength=1 << (8 * mask.itemsize))
            values = np.flatnonzero(counts)
            counts = counts[values]
        for value, count in zip(values.tolist(), counts.tolist()):
            totals[value] = totals.get(value, 0) + count
    return len(paths)
"""
    + POOL_CODE
)

#: The floor: read the file, find its image data, inflate it in one call. No CRC, no count.
FLOOR_CODE = (
    """
import struct

import deflate

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def work(paths):
    for path in paths:
        with open(path, "rb", buffering=0) as file:
            data = file.read()
        width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
        stream, position = [], 8
        while position < len(data):
            length, kind = struct.unpack_from(">I4s", data, position)
            if kind == b"IDAT":
                stream.append(data[position + 8 : position + 8 + length])
            elif kind == b"IEND":
                break
            position += 12 + length
        size = height * (1 + (width * CHANNELS[colour] * depth + 7) // 8)
        deflate.zlib_decompress(b"".join(stream), size)
    return len(paths)
"""
    + POOL_CODE
)

#: Runs ``python -m classweights ARGS...`` exactly as -m does, then reports peak memory on
#: stderr: RUSAGE_SELF is the main process, RUSAGE_CHILDREN the largest reaped worker (Linux
#: keeps the maximum over reaped children, not the sum). The report is an exit handler: the
#: command line ends its process without the interpreter's teardown, after running those.
RUSAGE_MARKER = "bench-maxrss"
SCAN_CODE = f"""
import atexit
import resource
import runpy
import sys


def peak():
    main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("{RUSAGE_MARKER}", main, worker, file=sys.stderr, flush=True)


atexit.register(peak)
runpy.run_module("classweights", run_name="__main__", alter_sys=True)
"""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds the report alone."""
    print(message, file=sys.stderr, flush=True)


# --- datasets ---------------------------------------------------------------------------


def zipf_class(rng: np.random.Generator) -> int:
    return int(rng.choice(len(CLASSES), p=CLASS_P))


def polygon(rng, cx: float, cy: float, radius: float, corners: int) -> list[tuple[float, float]]:
    """A star-shaped polygon around (cx, cy), turned by a random angle: edges at every angle."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners)) + rng.uniform(0, 2 * np.pi)
    radii = radius * rng.uniform(0.5, 1.0, corners)
    return [
        (float(cx + r * np.cos(a)), float(cy + r * np.sin(a)))
        for a, r in zip(angles, radii, strict=True)
    ]


def draw_labels(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Return a uint8 mask drawn as annotation tools draw them (class ids, 255 void)."""
    image = Image.new("L", (width, height), zipf_class(rng))
    draw = ImageDraw.Draw(image)
    size = min(width, height)
    # A horizon: sky or building above, road below, split by a slanted polyline.
    horizon = [(x, height * rng.uniform(0.3, 0.5)) for x in np.linspace(0, width, 7)]
    draw.polygon([(0, 0), *horizon, (width, 0)], fill=int(rng.choice([2, 10])))
    draw.polygon([(0, height), *horizon, (width, height)], fill=int(rng.choice([0, 1, 9])))
    for _ in range(int(rng.integers(8, 16))):  # objects: polygons and ellipses at any angle
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = size * rng.uniform(0.03, 0.2)
        fill = zipf_class(rng)
        outline = VOID if rng.random() < 0.3 else None  # void outlines, as VOC draws them
        if rng.random() < 0.7:
            points = polygon(rng, cx, cy, radius, int(rng.integers(3, 12)))
            draw.polygon(points, fill=fill)
            if outline is not None:
                draw.line([*points, points[0]], fill=outline, width=int(rng.integers(1, 4)))
        else:
            box = [cx - radius, cy - radius * rng.uniform(0.3, 1), cx + radius, cy + radius]
            draw.ellipse(box, fill=fill, outline=outline, width=int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(2, 8))):  # poles: thin, nearly upright
        x, top = rng.uniform(0, width), rng.uniform(0, height * 0.6)
        bottom = top + height * rng.uniform(0.1, 0.4)
        lean = rng.uniform(-0.05, 0.05) * height
        draw.line([(x, top), (x + lean, bottom)], fill=5, width=int(rng.integers(2, 6)))
    for _ in range(int(rng.integers(1, 4))):  # lines at any angle: wires, lane marks
        points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(2)]
        draw.line(points, fill=zipf_class(rng), width=int(rng.integers(1, 3)))
    return np.asarray(image).copy()


def draw_grid_labels(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """The previous benchmark's masks: a grid of 64-pixel cells with rectangles over it."""
    grid = rng.choice(len(CLASSES), size=(height // 64, width // 64), p=CLASS_P)
    labels = np.repeat(np.repeat(grid.astype(np.uint8), 64, axis=0), 64, axis=1)
    for _ in range(rng.integers(4, 12)):
        top, left = rng.integers(0, height), rng.integers(0, width)
        rect_h, rect_w = rng.integers(height // 16, height // 3, size=2)
        labels[top : top + rect_h, left : left + rect_w] = (
            VOID if rng.random() < 0.1 else rng.choice(len(CLASSES), p=CLASS_P)
        )
    labels[:4] = labels[-4:] = VOID
    labels[:, :4] = labels[:, -4:] = VOID
    return labels


def pixels_of(labels: np.ndarray, mode: str) -> np.ndarray:
    """Return the array a mask of ``mode`` stores: ids, ids x 1000 (void 65535), colours."""
    if mode == "I;16":
        return np.where(labels == VOID, I16_VOID, labels.astype(np.uint16) * I16_SCALE).astype(
            np.uint16
        )
    if mode == "RGB":
        return COLOR_LUT[labels]
    return labels


def save(path: Path, labels: np.ndarray, mode: str, writer: str) -> None:
    """Write the mask with ``writer``'s default settings."""
    pixels = pixels_of(labels, mode)
    if writer == "opencv":
        import cv2

        cv2.imwrite(str(path), pixels[..., ::-1] if mode == "RGB" else pixels)  # BGR
        return
    image = Image.fromarray(pixels)
    if mode == "P":
        image.putpalette(COLOR_LUT.tobytes())
    image.save(path)


def write_mask(task: tuple[Path, int, int, int, str]) -> None:
    """Draw mask number ``index`` and save it in every mode and writer; seeded by its index
    alone, so the dataset is the same whatever the order the workers take the masks in."""
    directory, width, height, index, kind = task
    rng = np.random.default_rng([SEED, width, height, index])
    if kind == "easy":
        labels = draw_grid_labels(rng, width, height)
        save(directory / "L" / f"{index:05d}.png", labels, "L", "pillow")
        return
    labels = draw_labels(rng, width, height)
    for writer, modes in WRITERS.items():
        for mode in modes:
            save(directory / writer / MODE_DIRS[mode] / f"{index:05d}.png", labels, mode, writer)


def generate(directory: Path, width: int, height: int, count: int, kind: str) -> None:
    """Write ``count`` masks of ``width`` x ``height`` on all cores, and the 2N link sets."""
    sets = [Path("L")] if kind == "easy" else [
        Path(writer) / MODE_DIRS[mode] for writer, modes in WRITERS.items() for mode in modes
    ]  # fmt: skip
    for name in sets:
        (directory / name).mkdir(parents=True)
    tasks = [(directory, width, height, index, kind) for index in range(count)]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for done, _ in enumerate(pool.imap_unordered(write_mask, tasks, chunksize=8), 1):
            if done % max(1, count // 10) == 0:
                log(f"  {directory.name}: {done}/{count} masks")
    for name in sets:
        link_copies(directory / name, directory / f"{name}-x2", 2)


def link_copies(source: Path, target: Path, copies: int) -> None:
    """Fill ``target`` with ``copies`` hard links of every mask in ``source``, renamed: the
    scan reads each link as a file of its own."""
    target.mkdir(parents=True)
    files = sorted(source.glob("*.png"))
    for copy in range(copies):
        for number, path in enumerate(files):
            os.link(path, target / f"{copy * len(files) + number:05d}.png")


def ensure(directory: Path, manifest: dict, make: Callable[[Path], None]) -> None:
    """Run ``make(directory)`` unless ``directory`` holds a dataset made with ``manifest``.

    The manifest is written last, so an interrupted generation is redone on the next run.
    """
    marker = directory / "manifest.json"
    manifest = json.loads(json.dumps(manifest))  # as it reads back: tuples become lists
    if marker.exists() and json.loads(marker.read_text()) == manifest:
        return
    log(f"generating {directory} ...")
    started = time.perf_counter()
    shutil.rmtree(directory, ignore_errors=True)
    make(directory)
    marker.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"generated {directory} in {time.perf_counter() - started:.0f} s")


def prepare_data(data: Path, sizes: tuple) -> None:
    """Generate whatever of the datasets is missing, and the colour table of the RGB masks."""
    data.mkdir(parents=True, exist_ok=True)
    colors = [
        {"id": i, "color": list(color), "name": name} for i, (name, color) in enumerate(CLASSES)
    ]
    colors.append({"id": VOID, "color": list(VOID_COLOR), "name": "void"})
    (data / "colors.json").write_text(json.dumps(colors, indent=2) + "\n")
    for name, width, height, count in sizes:
        manifest = {"version": GENERATOR_VERSION, "seed": SEED, "size": [width, height],
                    "count": count, "writers": WRITERS}  # fmt: skip
        ensure(data / f"{name}-{count}", manifest, partial(
            generate, width=width, height=height, count=count, kind="real"))  # fmt: skip
    name, width, height, count = sizes[0]
    easy = {"version": GENERATOR_VERSION, "seed": SEED, "size": [width, height], "count": count}
    ensure(data / f"easy-{count}", easy, partial(
        generate, width=width, height=height, count=count, kind="easy"))  # fmt: skip
    source = data / f"{name}-{count}" / "pillow" / "P"
    ensure(data / f"memory-{count}", {"links": str(source.relative_to(data)), "copies":
           MEMORY_COPIES, "version": GENERATOR_VERSION}, partial(
        lambda target: link_copies(source, target / "P", MEMORY_COPIES)))  # fmt: skip


def warm_cache(directories: list[Path]) -> None:
    """Read every file once, so that no timed run, the first one included, waits for the disk."""
    for directory in directories:
        for path in directory.glob("*.png"):
            path.read_bytes()


# --- exactness --------------------------------------------------------------------------


def pillow_counts(path: str) -> dict[int, int]:
    with Image.open(path) as image:
        pixels = np.asarray(image)
    if pixels.ndim == 3:
        rgb = pixels[..., :3].astype(np.int64)
        pixels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values, counts = np.unique(pixels, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def differs(path: str) -> str | None:
    """Return ``path`` if classweights counts it otherwise than Pillow decodes it."""
    from classweights import MaskError, read_histogram

    try:
        histogram = read_histogram(path)
    except MaskError:
        return path
    ours = dict(zip(histogram.values.tolist(), histogram.counts.tolist(), strict=True))
    return None if ours == pillow_counts(path) else path


def check_counts(directories: list[Path]) -> str:
    """Check every mask's counts against Pillow's, on all cores; return the report line."""
    paths = [str(path) for directory in directories for path in sorted(directory.glob("*.png"))]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        wrong = [p for p in pool.imap_unordered(differs, paths, chunksize=16) if p is not None]
    if wrong:
        return f"counts DIFFER from Pillow's on {len(wrong)} of {len(paths)} masks, e.g. {wrong[0]}"
    return f"counts identical to Pillow's on all {len(paths):,} masks"


# --- measurements -----------------------------------------------------------------------


class ScanFailed(Exception):
    """The scan exited with an error; the message is the line of stderr that says why."""


@dataclass
class ScanRun:
    """One scan: its wall-clock time and the ru_maxrss (KiB) of its main and largest worker."""

    seconds: float
    main_kib: int
    worker_kib: int


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command`` and return its wall-clock time, interpreter start included."""
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started, result


def time_code(code: str, *args: object) -> float:
    seconds, _ = timed([sys.executable, "-c", code, *map(str, args)], check=True)
    return seconds


def run_scan(directory: Path, options: list[str]) -> ScanRun:
    """Time ``classweights scan`` on ``directory`` and return it with its peak memory."""
    command = [sys.executable, "-c", SCAN_CODE, "scan", str(directory), "-q", *options]
    seconds, result = timed(command, stderr=subprocess.PIPE, text=True)
    lines = result.stderr.splitlines()
    if result.returncode != 0:
        raise ScanFailed(error_line([line for line in lines if RUSAGE_MARKER not in line]))
    _, main_kib, worker_kib = lines[-1].split()
    return ScanRun(seconds, int(main_kib), int(worker_kib))


def error_line(lines: list[str]) -> str:
    """Return the line that says why the scan failed (click's "Error" line, else the last)."""
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or [line for line in lines if line.strip()] or ["no message"])[-1]


def scan_options(mode: str, data: Path) -> list[str]:
    """Return the scan options that describe the masks of ``mode``."""
    if mode == "I;16":
        # ids x 1000 are sparse on purpose (values above 255): keep them all as classes.
        classes = (len(CLASSES) - 1) * I16_SCALE + 1
        return ["--ignore-index", str(I16_VOID), "--num-classes", str(classes)]
    if mode == "RGB":
        return ["--colors", str(data / "colors.json"), "--ignore-index", str(VOID)]
    return ["--ignore-index", str(VOID)]


@dataclass
class SetResult:
    """Every run of every measurement on one set of masks."""

    files: int
    naive_step: int
    steady: int = 0  # N of the steady-state pair (N and 2N masks); 0: no pair
    times: dict[str, list[float]] = field(default_factory=dict)
    scans: list[ScanRun] = field(default_factory=list)
    scan_error: str | None = None

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])


def steady_pair(directory: Path, least: int) -> tuple[Path, Path]:
    """Return the sets of N and 2N masks that the steady-state cost is timed on: the masks of
    ``directory`` and its -x2 link set, or for a set of fewer than ``least`` masks, its masks
    linked k and 2k times over (made here the first time)."""
    files = len(list(directory.glob("*.png")))
    copies = -(-least // files)
    if copies == 1:
        return directory, directory.with_name(directory.name + "-x2")
    pair = []
    for k in (copies, 2 * copies):
        target = directory.with_name(f"{directory.name}-x{k}")
        if len(list(target.glob("*.png"))) != k * files:
            shutil.rmtree(target, ignore_errors=True)
            link_copies(directory, target, k)
        pair.append(target)
    return pair[0], pair[1]


def measure_set(
    directory: Path,
    options: list[str],
    runs: int,
    pair: tuple[Path, Path] | None,
    naive_sample: int,
) -> SetResult:
    """Run every measurement in turn, ``runs`` times, on the masks of ``directory`` (and the
    floor and the scan on ``pair``, N and 2N masks, for the steady-state cost); the naive
    script on about ``naive_sample`` of them."""
    files = len(list(directory.glob("*.png")))
    result = SetResult(files=files, naive_step=max(1, files // naive_sample))
    if pair is not None:
        result.steady = len(list(pair[0].glob("*.png")))

    def scan(path: Path) -> float:
        run = run_scan(path, options)
        if path == directory:  # the peak memory reported is that of the set itself
            result.scans.append(run)
        return run.seconds

    def timed(name: str, run: Callable[[Path], float]) -> None:
        # The set, then the pair right after (a pair sees the same load); N is often the set.
        seconds = {directory: run(directory)}
        for path in pair or ():
            if path not in seconds:
                seconds[path] = run(path)
        result.add(name, seconds[directory])
        if pair is not None:
            result.add(f"{name} N", seconds[pair[0]])
            result.add(f"{name} 2N", seconds[pair[1]])

    for _ in range(runs):
        result.add("naive", time_code(NAIVE_CODE, directory, result.naive_step) * result.naive_step)
        result.add("decode", time_code(DECODE_CODE, directory))
        result.add("opencv", time_code(OPENCV_CODE, directory))
        timed("floor", partial(time_code, FLOOR_CODE))
        if result.scan_error is None:
            try:
                timed("scan", scan)
            except ScanFailed as error:
                result.scan_error = str(error)
    return result


# --- report -----------------------------------------------------------------------------


def seconds(value: float) -> str:
    """Three significant digits, without switching to exponents for long naive runs."""
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} s"


def megabytes(kib: float) -> float:
    return kib * MAXRSS_BYTES / 1e6


def spread(values: list[float]) -> float:
    """Return (max - min) / median: a noisy machine shows here before it shows in medians."""
    return (max(values) - min(values)) / statistics.median(values)


def peak(scans: list[ScanRun]) -> tuple[float, float]:
    """Return the median peaks, in MB, of the scan's main process and of its largest worker."""
    return (
        megabytes(statistics.median(run.main_kib for run in scans)),
        megabytes(statistics.median(run.worker_kib for run in scans)),
    )


def per_mask(result: SetResult, name: str) -> float:
    """Return the steady-state cost of one mask in microseconds: the median over runs of the
    time for 2N masks minus that for N, divided by N, each pair timed one after the other."""
    pairs = zip(result.times[f"{name} N"], result.times[f"{name} 2N"], strict=False)
    return statistics.median(double - single for single, double in pairs) / result.steady * 1e6


def format_line(label: str, result: SetResult) -> str:
    m = result.median
    naive = f"~{seconds(m('naive'))}" if result.naive_step > 1 else seconds(m("naive"))
    line = (
        f"{label:<26} {result.files:>5} files  naive {naive}  decode {seconds(m('decode'))}"
        f"  opencv {seconds(m('opencv'))}  floor {seconds(m('floor'))}"
    )
    if result.scan_error is not None:
        return f"{line}  scan n/a (scan failed: {result.scan_error})"
    scan = m("scan")
    line += (
        f"  scan {seconds(scan)} | scan/decode {scan / m('decode'):.2f}"
        f"  scan/opencv {scan / m('opencv'):.2f}  scan/floor {scan / m('floor'):.2f}"
    )
    if "scan 2N" in result.times:
        per_scan, per_floor = per_mask(result, "scan"), per_mask(result, "floor")
        ratio = f"{per_scan / per_floor:.2f}x" if per_floor > 0 else "n/a"
        line += f" | per mask: scan {per_scan:.0f} us, floor {per_floor:.0f} us ({ratio})"
    main, worker = peak(result.scans)
    return (
        f"{line} | spread {max(map(spread, result.times.values())):.0%}"
        f"  peak {main:.0f} + {worker:.0f} MB"
    )


def format_memory(small: list[ScanRun], large: list[ScanRun], small_files: int) -> str:
    small_total, large_total = sum(peak(small)), sum(peak(large))
    return (
        f"peak memory of scan (main + largest worker): {small_files:,} masks"
        f" {' + '.join(f'{mb:.0f}' for mb in peak(small))} MB,"
        f" {small_files * MEMORY_COPIES:,} masks {' + '.join(f'{mb:.0f}' for mb in peak(large))}"
        f" MB (ratio {large_total / small_total:.2f})"
    )


def header(runs: int) -> str:
    from classweights import _native

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Pillow {PIL.__version__},"
        f" numpy {np.__version__}, {_native.description()}; median of {runs} runs,"
        " whole processes, interleaved, warm page cache"
    )


def compile_tool() -> None:
    """Byte-compile classweights, as pip does for what it installs (an editable install run
    with PYTHONDONTWRITEBYTECODE set would compile it again in every process)."""
    spec = importlib.util.find_spec("classweights")
    compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parent / "data",
        help="where the datasets are generated and reused [default: bench/data]",
    )
    parser.add_argument("--runs", type=int, help="runs of each measurement [default: 5]")
    parser.add_argument(
        "--quick", action="store_true", help="200 and 20 masks, 3 runs: to try the benchmark"
    )
    parser.add_argument("--real", type=Path, help="a folder of your own PNG masks: one more line")
    parser.add_argument(
        "--pure",
        action="store_true",
        help="time the scan on its pure-Python path (CLASSWEIGHTS_PURE=1), as an install "
        "without a C compiler runs it",
    )
    parser.add_argument(
        "--real-options",
        default="",
        help='scan options for --real, e.g. "--ignore-index 255" [default: none]',
    )
    parser.add_argument(
        "--beyond",
        action="store_true",
        help="also the lines of bench/beyond.py (Dask, --cache, memory at 200,000 masks) and "
        "bench/sources.py (a tar shard, S3 on a local moto server)",
    )
    args = parser.parse_args()
    if args.pure:  # inherited by every scan this run starts; the header says which path
        os.environ["CLASSWEIGHTS_PURE"] = "1"
    runs = args.runs or (3 if args.quick else 5)
    sizes = QUICK_SIZES if args.quick else SIZES
    data = args.data.resolve()

    prepare_data(data, sizes)
    compile_tool()
    steady = STEADY_MASKS // (10 if args.quick else 1)
    sets = []  # (label, directory, (N, 2N) for the steady-state cost, scan options)
    for name, _, _, count in sizes:
        for writer, modes in WRITERS.items():
            for mode in modes:
                directory = data / f"{name}-{count}" / writer / MODE_DIRS[mode]
                pair = steady_pair(directory, steady)
                sets.append((f"{name} {writer} {mode}", directory, pair, scan_options(mode, data)))
    count = sizes[0][3]
    easy = data / f"easy-{count}" / "L"
    sets.append((f"{sizes[0][0]} easy case (grid) L", easy, steady_pair(easy, steady),
                 scan_options("L", data)))  # fmt: skip
    if args.real is not None:
        sets.append((f"real: {args.real.name}", args.real, None, shlex.split(args.real_options)))
    memory_set = data / f"memory-{count}" / "P"
    log("warming the page cache ...")
    warm_cache([d for _, directory, pair, _ in sets for d in (directory, *(pair or ()))] +
               [memory_set])  # fmt: skip
    log("checking every mask's counts against Pillow's ...")
    checked = check_counts([directory for _, directory, _, _ in sets])

    print(header(runs), flush=True)
    print(checked, flush=True)
    results = {}
    for label, directory, pair, options in sets:
        log(f"measuring {label} ...")
        naive_sample = NAIVE_SAMPLE // (10 if "--colors" in options else 1)
        naive_sample = max(1, naive_sample // (5 if args.quick else 1))
        results[label] = measure_set(directory, options, runs, pair, naive_sample)
        print(format_line(label, results[label]), flush=True)
    reference = results[sets[0][0]]  # the 512x512 Pillow palette masks
    log(f"measuring the peak memory of scan on {memory_set} ...")
    if reference.scan_error is None:
        large = [run_scan(memory_set, scan_options("P", data)) for _ in range(runs)]
        print(format_memory(reference.scans, large, reference.files))
    else:
        print(f"peak memory of scan: n/a (scan failed: {reference.scan_error})")
    print(
        "~ naive: timed on every k-th mask, times k;"
        " OpenCV cannot write palette PNGs, so its sets are L, I;16 and RGB"
    )
    if args.beyond:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import beyond
        import sources

        for line in beyond.lines(data, runs):
            print(line, flush=True)
        for line in sources.lines(data, runs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
