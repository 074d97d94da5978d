"""The command line: a thin layer of click over the library.

Every command parses its options into library objects, calls the library, and writes one
document to stdout (or ``-o``); people's output goes to stderr through `display.Display`.
Library errors become one line and their exit code: 2 usage, 3 input (DESIGN.md).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import click

from . import __version__, _native
from .checks import CHECK_FORMATS, Rules, check
from .counting import LabelSpec
from .errors import ClassWeightsError
from .labelmaps import ColorMap, load_colors, load_map, load_names
from .masks import MAX_PIXELS, ReadOptions, find_masks
from .presets import PRESETS, Preset
from .report import DIGITS, FORMATS, document, load, merge, write_atomic
from .scan import ScanResult, scan
from .weights import ALIASES, ENET_C, METHODS, MISSING, NORMALIZATIONS, Params, compute_weights

if TYPE_CHECKING:
    from .display import Display


class _Failure(click.ClickException):
    """A library error on its way out: one line on stderr and the error's own exit code."""

    def __init__(self, error: ClassWeightsError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClassWeightsError as error:
            raise _Failure(error) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


class _Silent:
    """The stderr side of a ``-q`` run: nothing at all."""

    def warn(self, message: str) -> None:
        pass

    @contextmanager
    def progress(self) -> Iterator[None]:
        yield None

    def summary(self, doc: dict) -> None:
        pass


def _display(quiet: bool):
    """Return what shows progress, the table and warnings on stderr (`display.Display`)."""
    if quiet:
        return _Silent()
    from .display import Display  # here: rich takes tens of ms to import, which -q runs skip

    return Display()


def _id_ranges(ids: list[int]) -> str:
    """Return class ids as short ranges: [1, 3, 4, 5, 9] gives "1, 3-5, 9"."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _parse_map(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    pairs = []
    for value in values:
        src, _, dst = value.partition(":")
        try:
            pairs.append((int(src), int(dst)))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not SRC:DST with integer values") from None
    if len({src for src, _ in pairs}) != len(pairs):
        raise click.BadParameter(f"a value is mapped twice in {', '.join(values)}")
    return tuple(pairs)


def _check_clip(ctx: click.Context, param: click.Parameter, value: float | None):
    # On both bounds, so that whichever click parses second compares them, before any scan.
    low = value if param.name == "clip_min" else ctx.params.get("clip_min")
    high = value if param.name == "clip_max" else ctx.params.get("clip_max")
    if low is not None and high is not None and low > high:
        raise click.BadParameter(f"--clip-min {low} is above --clip-max {high}")
    return value


def _check_output(ctx: click.Context, param: click.Parameter, value: str | None):
    # Before any scan, so that a typo in -o does not cost a whole scan.
    if value is not None:
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise click.BadParameter(f"cannot write into {folder}: no such folder, or read-only")
    return value


def _options(*options: Callable) -> Callable:
    def apply(command: Callable) -> Callable:
        return functools.reduce(lambda f, option: option(f), reversed(options), command)

    return apply


label_options = _options(
    click.option(
        "--preset",
        type=click.Choice(list(PRESETS)),
        help="A dataset's classes, names, map and ignore values (see `classweights presets`).",
    ),
    click.option(
        "--num-classes",
        type=click.IntRange(min=1),
        help="Class ids are 0..K-1 [default: largest label + 1].",
    ),
    click.option(
        "--ignore-index",
        type=int,
        multiple=True,
        metavar="V",
        help="Pixels with this value count as no class (repeatable), e.g. 255.",
    ),
    click.option(
        "--map",
        "mapping",
        multiple=True,
        metavar="SRC:DST",
        callback=_parse_map,
        help="Remap a raw value before counting (repeatable), e.g. 255:1.",
    ),
    click.option(
        "--map-file",
        type=click.Path(dir_okay=False),
        help="Value map: JSON/YAML {src: dst} or pairs, or CSV src,dst.",
    ),
    click.option(
        "--reduce-zero-label/--no-reduce-zero-label",
        default=None,
        help="ADE20K: 0 is ignored and every other value v becomes v-1.",
    ),
    click.option(
        "--colors",
        type=click.Path(dir_okay=False),
        help="Colour map for RGB masks: JSON/YAML/CSV with id, color and optional name.",
    ),
    click.option(
        "--unknown-colors",
        type=click.Choice(["error", "ignore"]),
        default="error",
        show_default=True,
        help="A colour that is not in the colour map: exit 3, or count it as ignored.",
    ),
    click.option(
        "--class-names",
        type=click.Path(dir_okay=False),
        help="Class names: text one per line, or a JSON/YAML list.",
    ),
    click.option("--glob", "pattern", metavar="PATTERN", help="Which files count in a directory."),
    click.option(
        "--roi",
        type=click.Path(file_okay=False),
        help="Folder of region masks: count only pixels where the same-named mask is non-zero.",
    ),
    click.option("--npz-key", metavar="KEY", help="The array to read from .npz files."),
    click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        default=MAX_PIXELS,
        show_default=True,
        help="Largest image to decode, a guard against decompression bombs.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes [default: all cores].",
    ),
)


@dataclass(frozen=True)
class _Reading:
    """The reading options of `scan`, resolved against the preset."""

    spec: LabelSpec
    names: tuple[str, ...] | None
    colour_names: dict[int, str]
    pattern: str | None
    roi: str | None
    options: ReadOptions
    workers: int | None


def _reading(
    preset: str | None,
    num_classes: int | None,
    ignore_index: tuple[int, ...],
    mapping: tuple[tuple[int, int], ...],
    map_file: str | None,
    reduce_zero_label: bool | None,
    colors: str | None,
    unknown_colors: str,
    class_names: str | None,
    pattern: str | None,
    roi: str | None,
    npz_key: str | None,
    max_pixels: int,
    workers: int | None,
) -> _Reading:
    """Resolve the reading options; an option given explicitly wins over the preset's value."""
    base = PRESETS[preset] if preset else Preset("", ())
    if map_file:
        # --map entries win over the file's for the same source value.
        mapping = tuple({**dict(load_map(map_file)), **dict(mapping)}.items())
    colour_map = load_colors(colors) if colors else ColorMap((), {})
    names = load_names(class_names) if class_names else None
    if names and num_classes is not None and len(names) != num_classes:
        raise click.BadParameter(
            f"{len(names)} class names for --num-classes {num_classes}", param_hint="--class-names"
        )
    if names is None and base.names and num_classes in (None, base.num_classes):
        names = base.names  # an explicit --num-classes of another count drops the preset's
    if num_classes is None:
        num_classes = len(names) if names else None
    spec = LabelSpec(
        num_classes=num_classes,
        ignore_index=ignore_index or base.ignore_index,
        mapping=mapping or base.mapping,
        reduce_zero_label=base.reduce_zero_label
        if reduce_zero_label is None
        else reduce_zero_label,
        colors=colour_map.colors,
        unknown_colors=unknown_colors,
    )
    options = ReadOptions(npz_key, max_pixels)
    return _Reading(spec, names, colour_map.names, pattern or base.glob, roi, options, workers)


def _scan(paths: tuple[str, ...], reading: _Reading, display, **how: bool) -> ScanResult:
    """Scan ``paths`` as ``reading`` says, with a progress bar; ``how``: see `scan.scan`."""
    with display.progress() as progress:
        result = scan(
            paths,
            reading.spec,
            pattern=reading.pattern,
            regions=reading.roi,
            options=reading.options,
            names=reading.names,
            workers=reading.workers,
            progress=progress,
            **how,
        )
    if result.names is None and reading.colour_names:
        names = tuple(reading.colour_names.get(c) for c in range(result.counts.num_classes))
        result = replace(result, names=names)
    for warning in result.warnings:
        display.warn(warning)
    return result


_READING_OPTIONS = list(inspect.signature(_reading).parameters)


weight_options = _options(
    click.option(
        "--method",
        type=click.Choice([*METHODS, *ALIASES]),
        default="median",
        show_default=True,
        help="Weight formula (balanced = inverse, mfb = median).",
    ),
    click.option(
        "--normalize",
        type=click.Choice(list(NORMALIZATIONS)),
        default="none",
        show_default=True,
        help="Rescale the weights so their mean, sum, pixel-weighted mean, max or min is 1.",
    ),
    click.option(
        "--missing",
        type=click.Choice(list(MISSING)),
        default="zero",
        show_default=True,
        help="Weight of a class with no pixels.",
    ),
    click.option(
        "--clip-min",
        type=click.FloatRange(min=0, min_open=True),
        callback=_check_clip,
        help="Lower bound.",
    ),
    click.option(
        "--clip-max",
        type=click.FloatRange(min=0, min_open=True),
        callback=_check_clip,
        help="Upper bound.",
    ),
    click.option(
        "--enet-c",
        type=click.FloatRange(min=1, min_open=True),
        default=ENET_C,
        show_default=True,
        help="ENet's c0 in 1 / ln(c0 + p).",
    ),
    click.option(
        "--beta",
        type=click.FloatRange(min=0, max=1, max_open=True),
        help="Class-balanced loss beta [default: 1 - 1/N].",
    ),
)

output_options = _options(
    click.option(
        "--format",
        "fmt",
        type=click.Choice(list(FORMATS)),
        default="json",
        show_default=True,
        help="Document format; list is the bare weight list.",
    ),
    click.option(
        "--digits",
        type=click.IntRange(1, 17),
        default=DIGITS,
        show_default=True,
        help="Significant digits of weights and frequencies.",
    ),
    click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True),
        callback=_check_output,
        help="Write the document here (atomically) instead of to stdout.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No table, progress or warnings on stderr."),
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__,
    "--version",
    prog_name="classweights",
    message=f"%(prog)s, version %(version)s\n{_native.description()}",
)
def cli() -> None:
    """Per-class pixel statistics and class weights from semantic-segmentation masks.

    The document goes to stdout (or -o); the table, progress and warnings to stderr.
    Exit codes: 0 success, 1 check found violations, 2 usage error, 3 input error,
    130 interrupted.
    """


@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@label_options
@click.option(
    "--skip-errors",
    is_flag=True,
    help="Go on past masks that cannot be read, and list them in the document's errors.",
)
@weight_options
@output_options
def scan_command(paths, skip_errors, **options) -> None:
    """Count pixels per class in the masks under PATH... and derive class weights.

    PATH is a directory (searched recursively), a mask file, or a glob.

    Example:

        classweights scan masks/ --ignore-index 255 --method median
    """
    reading = _reading(**{k: options.pop(k) for k in _READING_OPTIONS})
    display = _display(options["quiet"])
    result = _scan(paths, reading, display, skip_errors=skip_errors)
    for path, error in result.counts.errors:
        display.warn(f"skipped {path}: {error}")
    _emit(result, display, **options)


def _parse_values(ctx: click.Context, param: click.Parameter, value: str | None):
    """Parse ``0-18,255`` into (0, 1, ..., 18, 255)."""
    if value is None:
        return None
    values = []
    for part in value.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            values += range(int(low), int(high) + 1) if dash else [int(low)]
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a value or a range like 0-18") from None
    return tuple(values)


def _parse_shares(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    shares = {}
    for value in values:
        name, _, share = value.rpartition("=")
        try:
            shares[name] = float(share)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not CLASS=SHARE, e.g. person=0.001") from None
        if not name or not 0 <= shares[name] <= 1:
            raise click.BadParameter(f"{value!r} is not CLASS=SHARE with a share in 0..1")
    return shares


@cli.command("check")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@label_options
@click.option(
    "--allowed-values",
    callback=_parse_values,
    metavar="LIST",
    help="The only raw values masks may hold, e.g. 0-18,255.",
)
@click.option(
    "--require-classes",
    metavar="all|LIST",
    help="Classes that must occur: all, or ids and names, e.g. 0,3,person.",
)
@click.option(
    "--min-share",
    multiple=True,
    callback=_parse_shares,
    metavar="CLASS=F",
    help="A class must hold at least this share of the pixels (repeatable).",
)
@click.option(
    "--max-imbalance",
    type=click.FloatRange(min=1),
    metavar="R",
    help="Largest class share / smallest present class share may be at most R.",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, exists=True),
    help="Folder of images: each mask has one of the same stem and size, and each image a mask.",
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False),
    help="A saved report to compare the class shares with (see --max-drift).",
)
@click.option(
    "--max-drift",
    type=click.FloatRange(min=0, max=1),
    metavar="D",
    help="No class share may move by more than D (0.01 = one point) from --baseline.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line per violation; json: for machines.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    callback=_check_output,
    help="Write the report here (atomically) instead of to stdout.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")
def check_command(
    paths,
    allowed_values,
    require_classes,
    min_share,
    max_imbalance,
    images,
    baseline,
    max_drift,
    fmt,
    output,
    quiet,
    **options,
) -> None:
    """Check the masks under PATH... for CI: exit 1 when a rule is broken.

    Every rule is off unless asked for; unreadable masks always break the
    check. --num-classes makes a label outside 0..K-1 that is not ignored
    a violation. Exit codes: 0 every rule holds, 1 a rule is broken,
    3 the check cannot run.

    Example:

        classweights check masks/ --num-classes 19 --ignore-index 255 --require-classes all
    """
    if (baseline is None) != (max_drift is None):
        raise click.UsageError("--baseline and --max-drift go together")
    baseline = load(baseline) if baseline else None  # before the scan: a bad path fails fast
    reading = _reading(**options)
    reading = replace(reading, spec=replace(reading.spec, allowed_values=allowed_values))
    display = _display(quiet)
    result = _scan(paths, reading, display, skip_errors=True, strict=False)
    rules = Rules(
        require_classes=require_classes.split(",") if require_classes else None,
        min_share=min_share,
        max_imbalance=max_imbalance,
        images=images,
        baseline=baseline,
        max_drift=max_drift,
    )
    masks = find_masks(paths, reading.pattern) if images else ()
    violations = check(result, rules, masks)
    _write(CHECK_FORMATS[fmt](result, violations), output)
    if violations:
        raise click.exceptions.Exit(1)


@cli.command("presets")
def presets_command() -> None:
    """List the dataset presets that --preset takes, with what each sets.

    Example:

        classweights presets
    """
    for name, preset in PRESETS.items():
        settings = [f"{preset.num_classes} classes"]
        if preset.ignore_index:
            settings.append("ignore " + ", ".join(map(str, preset.ignore_index)))
        if preset.mapping:
            settings.append(f"maps {len(preset.mapping)} raw values")
        if preset.reduce_zero_label:
            settings.append("reduce-zero-label")
        if preset.glob:
            settings.append(f"glob {preset.glob}")
        click.echo(f"{name}: {preset.description} ({'; '.join(settings)})")


@cli.command("weights")
@click.argument("report", type=click.Path(dir_okay=False))
@weight_options
@output_options
def weights_command(report, **options) -> None:
    """Derive weights again from a saved JSON or YAML REPORT, without reading masks.

    Example:

        classweights weights weights.json --method enet --normalize pixels
    """
    _emit(load(report), _display(options["quiet"]), **options)


@cli.command("merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@weight_options
@output_options
def merge_command(reports, **options) -> None:
    """Add up the REPORTs of disjoint shards of one dataset into one report.

    The reports must agree on --num-classes, --ignore-index and --map.

    Example:

        classweights merge part1.json part2.json -o weights.json
    """
    merged = merge([(path, load(path)) for path in reports])
    _emit(merged, _display(options["quiet"]), **options)


def _emit(
    result: ScanResult,
    display: Display | _Silent,
    *,
    method: str,
    normalize: str,
    missing: str,
    clip_min: float | None,
    clip_max: float | None,
    enet_c: float,
    beta: float | None,
    fmt: str,
    digits: int,
    output: str | None,
    quiet: bool,
) -> None:
    """Derive the weights, show the table and warnings, and write the document."""
    weights = compute_weights(
        result.counts,
        method,
        normalize=normalize,
        missing=missing,
        clip=(clip_min, clip_max),
        params=Params(enet_c=enet_c, beta=beta),
    )
    doc = document(result, weights, digits=digits)
    display.summary(doc)
    if weights.absent and missing != "error":
        display.warn(
            f"classes with no pixels: {_id_ranges(weights.absent)}; "
            f"their weight is {missing} (--missing {missing})"
        )
    _write(FORMATS[fmt](doc), output)


def _write(text: str, output: str | None) -> None:
    """Write a command's document to ``output`` (atomically) or to stdout."""
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)


def main() -> None:
    """Run the command line (the ``classweights`` console script)."""
    _keep_freed_memory()
    cli(prog_name="classweights")


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for the next mask instead of giving it back.

    Each mask is decoded into buffers of the same few sizes, megabytes each. By default glibc
    returns such buffers to the system when they are freed and faults fresh pages in for the
    next mask, which costs two to four times the counting itself (bench/run.py). The command
    line owns its process, so it may keep them; the library leaves its host's allocator alone.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: buffers below come from the heap
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)  # and the heap keeps up to this much free memory
