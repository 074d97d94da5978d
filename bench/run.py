"""Benchmark ``classweights scan`` against the two baselines of DESIGN.md, "Performance".

Each measurement is a whole process, interpreter start included, on a warm page cache:

- ``naive``: the throw-away one-process script, ``np.unique`` on every decoded mask;
- ``decode``: Pillow decoding every mask and nothing else, on all cores: no exact count can
  be faster than this while it goes through Pillow's decoder;
- ``scan``: ``python -m classweights scan DIR -q --ignore-index ...``.

The datasets are generated deterministically under ``bench/data/`` on the first run and
reused afterwards: 2000 masks of 512x512 and 200 of 2048x1024, 19 classes plus void, each
mask written as a palette (P), 8-bit gray (L), 16-bit (I;16, ids times 1000) and colour-coded
(RGB) PNG, plus 20,000 512x512 palette masks (hard links) for the memory measurement.

How to read a line of the report (times are medians of the runs, run in turn so that noise
on the machine spreads over all three):

- ``speed-up`` is naive / scan: what the tool saves over the script people write (on RGB
  masks the naive time, marked ``~``, is extrapolated from every 20th mask);
- ``scan/decode`` is scan / decode: below 1 means counting costs less than Pillow's decoding
  alone, which is possible because the tool inflates PNGs itself, each in one call;
- ``spread`` is the largest (max - min) / median of the three timings: how far to trust them;
- ``peak`` is the peak resident memory of the scan's main process plus that of its largest
  worker; the memory line compares it at 2,000 and 20,000 masks, where a ratio near 1 says
  memory does not grow with the dataset.

Usage: python bench/run.py [--data DIR] [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import multiprocessing
import os
import platform
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
from PIL import Image

#: Bump when the drawing or encoding changes, so that old datasets are regenerated.
GENERATOR_VERSION = 1
SEED = 20240611

#: (name, width, height, number of masks)
SIZES = (("512x512", 512, 512, 2000), ("2048x1024", 2048, 1024, 200))
#: The memory measurement's large set: the 512x512 palette masks linked this many times.
MEMORY_SET = "20000x512"
MEMORY_COPIES = 10

#: Mode as Pillow names it -> directory name; "I;16" would need quoting in every shell.
MODE_DIRS = {"P": "P", "L": "L", "I;16": "I16", "RGB": "RGB"}

VOID = 255
#: Side of the cells of the coarse label grid; a 512x512 mask is an 8x8 grid before the
#: rectangles are drawn over it. Large regions keep the PNGs as small as real masks.
CELL = 64
BORDER = 4
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

#: Class frequencies fall off like 1/(id + 1), as in real datasets (road is common, bicycles
#: are rare), so that the masks have rare classes too.
CLASS_P = 1 / np.arange(1, len(CLASSES) + 1)
CLASS_P /= CLASS_P.sum()

#: ids -> colour, as a lookup table indexed by the uint8 label (palette and RGB masks).
COLOR_LUT = np.zeros((256, 3), np.uint8)
COLOR_LUT[: len(CLASSES)] = [color for _, color in CLASSES]
COLOR_LUT[VOID] = VOID_COLOR

#: np.unique(axis=0) on an HxWx3 mask takes about 0.2 s per 512x512 mask, so over all RGB
#: files the naive script would take most of the run: it is timed on every STEP-th file and
#: the time multiplied by STEP (interpreter start included in what is scaled; it is small).
NAIVE_RGB_STEP = 20

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

DECODE_CODE = """
import multiprocessing
import os
import sys
from pathlib import Path

from PIL import Image


def decode(paths):
    for path in paths:
        with Image.open(path) as image:
            image.load()
    return len(paths)


if __name__ == "__main__":
    paths = [str(path) for path in sorted(Path(sys.argv[1]).glob("*.png"))]
    workers = os.cpu_count()
    chunk = max(1, min(256, len(paths) // (4 * workers)))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    method = "fork" if sys.platform.startswith("linux") else None
    with multiprocessing.get_context(method).Pool(workers) as pool:
        assert sum(pool.imap_unordered(decode, chunks)) == len(paths)
"""

#: Runs ``python -m classweights ARGS...`` exactly as -m does, then reports peak memory on
#: stderr. os.wait4 on the scan would give only the largest of its processes (the main one
#: and its reaped workers alike), so the scan reports on itself: RUSAGE_SELF is the main
#: process, RUSAGE_CHILDREN the largest worker (Linux keeps the maximum over reaped children,
#: not the sum; the pool reaps its workers before the command returns). Their sum is the peak
#: of the main process and one worker; workers share the main's pages after fork, so the
#: whole tree uses less than main + workers x worker.
RUSAGE_MARKER = "bench-maxrss"
SCAN_CODE = f"""
import resource
import runpy
import sys

try:
    runpy.run_module("classweights", run_name="__main__", alter_sys=True)
finally:
    main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("{RUSAGE_MARKER}", main, worker, file=sys.stderr)
"""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds the report alone."""
    print(message, file=sys.stderr, flush=True)


# --- datasets ---------------------------------------------------------------------------


def draw_labels(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Return a uint8 mask of large regions: a coarse grid, rectangles over it, a void border.

    Per-pixel noise would make PNGs many times larger and slower than real masks.
    """
    grid = rng.choice(len(CLASSES), size=(height // CELL, width // CELL), p=CLASS_P)
    labels = np.repeat(np.repeat(grid.astype(np.uint8), CELL, axis=0), CELL, axis=1)
    for _ in range(rng.integers(4, 12)):
        top, left = rng.integers(0, height), rng.integers(0, width)
        rect_h, rect_w = rng.integers(height // 16, height // 3, size=2)
        # One rectangle in ten is void, like the unlabelled objects of real masks.
        value = VOID if rng.random() < 0.1 else rng.choice(len(CLASSES), p=CLASS_P)
        labels[top : top + rect_h, left : left + rect_w] = value
    labels[:BORDER] = labels[-BORDER:] = VOID
    labels[:, :BORDER] = labels[:, -BORDER:] = VOID
    return labels


def encode(labels: np.ndarray, mode: str) -> Image.Image:
    """Return the mask ``labels`` as an image of ``mode``, the way datasets store them."""
    if mode == "P":
        image = Image.fromarray(labels)
        image.putpalette(COLOR_LUT.tobytes())
        return image
    if mode == "L":
        return Image.fromarray(labels)
    if mode == "I;16":
        ids = labels.astype(np.uint16) * I16_SCALE
        return Image.fromarray(np.where(labels == VOID, I16_VOID, ids).astype(np.uint16))
    return Image.fromarray(COLOR_LUT[labels])


def write_mask(task: tuple[Path, int, int, int]) -> None:
    """Draw mask number ``index`` and save it in every mode; seeded by its index alone, so
    the dataset is the same whatever the order the workers take the masks in."""
    directory, width, height, index = task
    labels = draw_labels(np.random.default_rng([SEED, width, height, index]), width, height)
    for mode, name in MODE_DIRS.items():
        encode(labels, mode).save(directory / name / f"{index:05d}.png")


def generate_size(directory: Path, width: int, height: int, count: int) -> None:
    """Write ``count`` masks of ``width`` x ``height`` in every mode, on all cores."""
    for name in MODE_DIRS.values():
        (directory / name).mkdir(parents=True)
    tasks = [(directory, width, height, index) for index in range(count)]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for done, _ in enumerate(pool.imap_unordered(write_mask, tasks, chunksize=16), 1):
            if done % max(1, count // 10) == 0:
                log(f"  {directory.name}: {done}/{count} masks")


def link_copies(source: Path, directory: Path, copies: int) -> None:
    """Fill ``directory/P`` with ``copies`` hard links of every file in ``source``, renamed.

    The scan reads each link as a file of its own, which is all the memory measurement needs.
    """
    target = directory / MODE_DIRS["P"]
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
    manifests = {}
    for name, width, height, count in sizes:
        manifests[name] = {
            "version": GENERATOR_VERSION,
            "seed": SEED,
            "size": [width, height],
            "count": count,
            "modes": list(MODE_DIRS),
        }
        ensure(
            data / name,
            manifests[name],
            partial(generate_size, width=width, height=height, count=count),
        )
    small = SIZES[0][0]
    ensure(
        data / MEMORY_SET,
        {"links": f"{small}/P", "copies": MEMORY_COPIES, "source": manifests[small]},
        partial(link_copies, data / small / MODE_DIRS["P"], copies=MEMORY_COPIES),
    )


def warm_cache(directories: list[Path]) -> None:
    """Read every file once, so that no timed run, the first one included, waits for the disk."""
    for directory in directories:
        for path in directory.glob("*.png"):
            path.read_bytes()


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


def time_naive(directory: Path, step: int) -> float:
    """Time the naive script over every ``step``-th mask of ``directory``."""
    seconds, _ = timed([sys.executable, "-c", NAIVE_CODE, str(directory), str(step)], check=True)
    return seconds


def time_decode(directory: Path) -> float:
    """Time Pillow decoding every mask of ``directory`` on all cores."""
    seconds, _ = timed([sys.executable, "-c", DECODE_CODE, str(directory)], check=True)
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
    """Return the line that says why the scan failed.

    Click prints a usage error as "Usage: ...", a hint, then "Error: ...", and a traceback
    ends with the exception; the first line of either says nothing about the cause, so this
    is the "Error" line if there is one, else the last line.
    """
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or [line for line in lines if line.strip()] or ["no message"])[-1]


def scan_options(mode: str, data: Path) -> list[str]:
    """Return the scan options that describe the masks of ``mode``."""
    if mode == "I;16":
        return ["--ignore-index", str(I16_VOID)]
    if mode == "RGB":
        return ["--colors", str(data / "colors.json"), "--ignore-index", str(VOID)]
    return ["--ignore-index", str(VOID)]


@dataclass
class SetResult:
    """Every run of the three measurements on one dataset."""

    files: int
    naive_scale: int
    naive: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    scans: list[ScanRun] = field(default_factory=list)
    scan_error: str | None = None


def measure_set(directory: Path, mode: str, data: Path, runs: int) -> SetResult:
    """Run naive, decode and scan in turn ``runs`` times on the masks of ``directory``."""
    step = NAIVE_RGB_STEP if mode == "RGB" else 1
    result = SetResult(files=len(list(directory.glob("*.png"))), naive_scale=step)
    for _ in range(runs):
        result.naive.append(time_naive(directory, step) * step)
        result.decode.append(time_decode(directory))
        if result.scan_error is None:
            try:
                result.scans.append(run_scan(directory, scan_options(mode, data)))
            except ScanFailed as error:
                result.scan_error = str(error)
    return result


# --- report -----------------------------------------------------------------------------


def seconds(value: float) -> str:
    """Three significant digits, without switching to exponents for long naive runs."""
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} s"


def megabytes(kib: float) -> float:
    """Convert ru_maxrss to MB, the unit of DESIGN.md."""
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


def format_line(size: str, mode: str, result: SetResult) -> str:
    naive = statistics.median(result.naive)
    decode = statistics.median(result.decode)
    estimate = "~" if result.naive_scale > 1 else ""
    line = (
        f"{size:<9} {mode:<4} {result.files:>5} files  naive {estimate}{seconds(naive)}"
        f"  decode {seconds(decode)}"
    )
    if result.scan_error is not None:
        return f"{line}  scan n/a (scan failed: {result.scan_error})"
    scan = statistics.median(run.seconds for run in result.scans)
    main, worker = peak(result.scans)
    timings = (result.naive, result.decode, [run.seconds for run in result.scans])
    return (
        f"{line}  scan {seconds(scan)}  speed-up {naive / scan:.1f}x"
        f"  scan/decode {scan / decode:.2f}  spread {max(map(spread, timings)):.0%}"
        f"  peak {main:.0f} MB + {worker:.0f} MB/worker"
    )


def format_memory(small: list[ScanRun], large: list[ScanRun], small_files: int) -> str:
    small_total, large_total = sum(peak(small)), sum(peak(large))
    large_files = small_files * MEMORY_COPIES
    return (
        f"peak memory of scan (main + largest worker): {small_files:,} masks"
        f" {' + '.join(f'{mb:.0f}' for mb in peak(small))} MB,"
        f" {large_files:,} masks {' + '.join(f'{mb:.0f}' for mb in peak(large))} MB"
        f" (ratio {large_total / small_total:.2f})"
    )


def header(runs: int) -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Pillow {PIL.__version__},"
        f" numpy {np.__version__}; median of {runs} runs, whole processes, warm page cache"
    )


def compile_tool() -> None:
    """Byte-compile classweights, as pip does for what it installs.

    An editable install run with PYTHONDONTWRITEBYTECODE set (as on the machines this project
    is built on) never writes its bytecode, and every scan would compile the package again:
    30 ms a process that no installed copy pays.
    """
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
        "--quick",
        action="store_true",
        help="3 runs and only the 512x512 sets",
    )
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    sizes = SIZES[:1] if args.quick else SIZES
    data = args.data.resolve()

    prepare_data(data, sizes)
    compile_tool()
    sets = [(name, mode, data / name / MODE_DIRS[mode]) for name, *_ in sizes for mode in MODE_DIRS]
    memory_set = data / MEMORY_SET / MODE_DIRS["P"]
    log("warming the page cache ...")
    warm_cache([directory for *_, directory in sets] + [memory_set])

    print(header(runs), flush=True)
    results = {}
    for size, mode, directory in sets:
        log(f"measuring {size} {mode} ...")
        results[size, mode] = measure_set(directory, mode, data, runs)
        print(format_line(size, mode, results[size, mode]), flush=True)
    log(f"measuring the peak memory of scan on {memory_set} ...")
    reference = results[SIZES[0][0], "P"]
    if reference.scan_error is None:
        large = [run_scan(memory_set, scan_options("P", data)) for _ in range(runs)]
        print(format_memory(reference.scans, large, reference.files))
    else:
        print(f"peak memory of scan: n/a (scan failed: {reference.scan_error})")
    print(
        f"~ naive RGB: every {NAIVE_RGB_STEP}th mask timed, times {NAIVE_RGB_STEP}"
        " (np.unique(axis=0) on colour masks is too slow to run on all)"
    )


if __name__ == "__main__":
    main()
