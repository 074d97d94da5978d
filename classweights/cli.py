"""The command line: a thin layer of click over the library.

Every command parses its options into library objects, calls the library, and writes one
document to stdout (or ``-o``); people's output goes to stderr through `display.Display`.
Library errors become one line and their exit code: 2 usage, 3 input (docs/design.md,
"Streams and exit codes").
"""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib
import inspect
import io
import math
import os
import re
import shutil
import signal
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import click

from . import _native
from ._version import __version__
from .errors import ClassWeightsError, ReportError, one_line
from .limits import MAX_ALLOWED_VALUES, MAX_CLASSES, MAX_RESAMPLES, VALUES
from .presets import PRESETS, Preset


class _Deferred:
    """A name of a module that is imported when the name is first called or read: the
    commands import numpy and the decoders, ``--help`` and ``--version`` do not."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def get(self) -> Any:
        return getattr(importlib.import_module(f"classweights.{self.module}"), self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.get()(*args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self.get()[key]

    def __iter__(self) -> Iterator:
        return iter(self.get())


def _deferred(module: str, *names: str) -> list[Any]:
    return [_Deferred(module, name) for name in names]


if TYPE_CHECKING:
    from .checks import CHECK_FORMATS, Rules, Violation, check
    from .counting import LabelSpec
    from .display import Display
    from .labelmaps import ColorMap, load_colors, load_map, load_names
    from .masks import MAX_PIXELS, ReadOptions, find_masks
    from .report import DIGITS, FORMATS, document, load, merge, write_output
    from .scan import ScanResult, check_shard, scan, shard_of
    from .sources import freeze, parse_storage_options
    from .targets import TARGETS, shape_for
    from .weights import ALIASES, ENET_C, METHODS, MISSING, NORMALIZATIONS, Params, compute_weights
else:
    CHECK_FORMATS, Rules, check = _deferred("checks", "CHECK_FORMATS", "Rules", "check")
    (LabelSpec,) = _deferred("counting", "LabelSpec")
    ColorMap, load_colors, load_map, load_names = _deferred(
        "labelmaps", "ColorMap", "load_colors", "load_map", "load_names"
    )
    MAX_PIXELS, ReadOptions, find_masks = _deferred(
        "masks", "MAX_PIXELS", "ReadOptions", "find_masks"
    )
    DIGITS, FORMATS, document, load, merge, write_output = _deferred(
        "report", "DIGITS", "FORMATS", "document", "load", "merge", "write_output"
    )
    check_shard, scan, shard_of = _deferred("scan", "check_shard", "scan", "shard_of")
    freeze, parse_storage_options = _deferred("sources", "freeze", "parse_storage_options")
    TARGETS, shape_for = _deferred("targets", "TARGETS", "shape_for")
    ALIASES, ENET_C, METHODS, MISSING, NORMALIZATIONS, Params, compute_weights = _deferred(
        "weights", "ALIASES", "ENET_C", "METHODS", "MISSING", "NORMALIZATIONS", "Params",
        "compute_weights",
    )


class _Choice(click.Choice):
    """A choice among the names of registries that are looked up when first needed."""

    def __init__(self, *registries: Any) -> None:
        self.registries = registries
        self.case_sensitive = True

    @property  # type: ignore[override]  # click's is set once; here it is looked up
    def choices(self) -> tuple[str, ...]:
        return tuple(name for registry in self.registries for name in registry)

    @choices.setter
    def choices(self, value: tuple[str, ...]) -> None:
        raise AttributeError("the choices are the registries' names")


#: The flag of each library parameter that messages name, where it is not the parameter's
#: name with dashes; `_flags` rewrites the library's words into the command line's.
_FLAG_NAMES = {"mapping": "--map"}

#: Parameters whose name is a word of its own ("missing", "colors") are rewritten only in
#: ``name=value`` form; the others also bare (``num_classes``).
_PARAMETERS = ("ignore_index", "num_classes", "mapping", "unknown_colors", "colors", "missing",
               "max_pixels", "npz_key", "workers", "pair_key")  # fmt: skip

_PARAMETER = re.compile(
    r"(?<!['\"])\b(" + "|".join(_PARAMETERS) + r")"
    r"(?:=(\{(-?\w+): (\w+)\}|'[^']*'|-?[\w.]+)|\b(?!=))"
)


def _flags(message: str) -> str:
    """Return a library message with its parameters named as flags: ``ignore_index=255``
    becomes ``--ignore-index 255``, ``mapping={255: DST}`` becomes ``--map 255:DST``."""

    def flag(match: re.Match) -> str:
        name, value, source, target = match.groups()
        option = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        if value is None:
            return option if "_" in name else name  # "missing" alone is a word
        if source is not None:
            value = f"{source}:{target}"
        if re.fullmatch(r"'\w+'", value):  # a quoted word needs no quotes in a shell
            value = value[1:-1]
        return f"{option} {value}"

    return _PARAMETER.sub(flag, message)


class _Failure(click.ClickException):
    """A library error on its way out: one line on stderr and the error's own exit code."""

    def __init__(self, error: ClassWeightsError) -> None:
        super().__init__(_flags(error.command_line()))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click's is a class default

    def format_message(self) -> str:
        # The one place error lines are formatted: a newline in a file name never splits one.
        return one_line(self.message)


class Interrupted(BaseException):
    """Ctrl-C during a command run by `main`. Not a KeyboardInterrupt, which click would turn
    into "Aborted!" and exit 1; a BaseException, so that every clean-up still runs."""


def _interrupted(signum: int, frame: object) -> None:
    raise Interrupted


def _say_interrupted() -> None:
    with contextlib.suppress(OSError, ValueError):
        click.echo("interrupted", err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        _shown.clear()
        try:
            result = super().invoke(ctx)
        except ClassWeightsError as error:
            for display in _shown:  # what was found before the error, then the error
                display.flush()
            raise _Failure(error) from None
        except click.exceptions.Exit:  # check's exit 1: its warnings still count
            for display in _shown:
                display.flush()
            raise
        except KeyboardInterrupt:  # raised by the library itself, or under CliRunner
            _say_interrupted()
            raise click.exceptions.Exit(130) from None
        for display in _shown:  # a warning is never lost, whichever command kept it
            display.flush()
        return result


class _Silent:
    """The stderr side of a ``-q`` run: nothing at all."""

    def warn(self, message: str) -> None:
        pass

    def flush(self) -> None:
        pass

    @contextmanager
    def progress(self) -> Iterator[None]:
        yield None

    def summary(self, doc: dict, *, pos_weight: bool = False) -> None:
        pass

    def done(self, output: str | None) -> None:
        pass

    def note(self, message: str) -> None:
        pass


#: The displays of the command running, whose warnings an error flushes first.
_shown: list[Display] = []


def _display(quiet: bool) -> Display | _Silent:
    """Return what shows progress, the table and warnings on stderr (`display.Display`)."""
    if quiet:
        return _Silent()
    from .display import Display  # here: rich takes tens of ms to import, which -q runs skip

    display = Display()
    warn = display.warn
    # A warning is one line, as an error is (`_Failure`): a file name cannot split it.
    display.warn = lambda message: warn(one_line(message))  # type: ignore[method-assign]
    _shown.append(display)
    return display


def _id_ranges(ids: list[int]) -> str:
    """Return class ids as short ranges: [1, 3, 4, 5, 9] gives "1, 3-5, 9"."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class _Finite(click.FloatRange):
    """A FloatRange that refuses nan and inf: nan passes every bound (no comparison with it
    holds), and either would reach the weights or a rule as it is."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


#: Raw values and class ids are 64-bit integers: what numpy counts them in.
_VALUE = click.IntRange(VALUES.start, VALUES.stop - 1)


def _parse_map(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    pairs = []
    for value in values:
        src, _, dst = value.partition(":")
        try:
            pair = (int(src), int(dst))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not SRC:DST with integer values") from None
        pairs.append(tuple(_VALUE.convert(v, param, ctx) for v in pair))
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


def _check_pair_key(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    try:
        groups = re.compile(value).groups
    except re.error as error:
        raise click.BadParameter(f"{value!r} is not a regular expression: {error}") from None
    if groups != 1:
        raise click.BadParameter(f"{value!r} has {groups} groups; the sample id is its one group")
    return value


def _check_output(ctx: click.Context, param: click.Parameter, value: str | None):
    # Before any scan, so that a typo in -o does not cost a whole scan.
    if value == "":
        raise click.BadParameter("an empty path")
    if value is not None and value != "-":
        try:
            in_place = not stat.S_ISREG(os.stat(value).st_mode)  # a device, a FIFO
        except FileNotFoundError:
            in_place = False  # a new file, or a link to one
        except OSError as error:  # a loop of links, a folder that cannot be searched
            raise click.BadParameter(f"cannot write {value}: {error.strerror}") from None
        if in_place:  # written as it is (report.write_output): /dev/null needs no writable /dev
            return value
        # A link's target is replaced, beside the target.
        folder = os.path.dirname(os.path.realpath(value))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise click.BadParameter(f"cannot write into {folder}: no such folder, or read-only")
    return value


def _same_file(first: str, second: str) -> bool:
    """Whether two output paths name one file (through links too)."""
    return second != "-" and os.path.realpath(first) == os.path.realpath(second)


def _parse_storage_options(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    try:
        return freeze(parse_storage_options(values))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _options(*options: Callable) -> Callable:
    def apply(command: Callable) -> Callable:
        return functools.reduce(lambda f, option: option(f), reversed(options), command)

    return apply


label_options = _options(
    click.option(
        "--preset",
        type=click.Choice(list(PRESETS), case_sensitive=False),
        help="A dataset's classes, names, map and ignore values (see `classweights presets`).",
    ),
    click.option(
        "--num-classes",
        type=click.IntRange(min=1, max=MAX_CLASSES),
        help="Class ids are 0..K-1 [default: largest label + 1].",
    ),
    click.option(
        "--ignore-index",
        type=_VALUE,
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
    click.option(
        "--pair-key",
        metavar="REGEX",
        callback=_check_pair_key,
        help="How --roi and check --images pair files: the sample id is this regex's group, "
        "searched in the name without extension, e.g. '^(\\d+)_' [default: the whole name].",
    ),
    click.option("--npz-key", metavar="KEY", help="The array to read from .npz files."),
    click.option(
        "--column",
        metavar="NAME",
        help="A Parquet file's image column [default: its only one].",
    ),
    click.option(
        "--storage-option",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_parse_storage_options,
        help="Passed to the filesystem of a URL (repeatable), e.g. anon=true, "
        "client_kwargs.endpoint_url=http://host:9000.",
    ),
    click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        default=_Deferred("masks", "MAX_PIXELS").get,
        show_default="Pillow's limit",
        help="Largest image to decode, a guard against decompression bombs.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes [default: all cores].",
    ),
)


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    index, slash, count = value.partition("/")
    try:
        if not slash:
            raise ValueError(value)
        return check_shard((int(index), int(count)))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not I/N with 0 <= I < N, e.g. 0/4") from None


#: ``--executor``: where the tasks of a scan run.
EXECUTORS = ("local", "dask")

scale_options = _options(
    click.option(
        "--shard",
        callback=_parse_shard,
        metavar="I/N",
        help="Scan only part I of N (0 <= I < N) of the masks, by a hash of each relative "
        "path; `merge` the N reports.",
    ),
    click.option(
        "--executor",
        type=click.Choice(EXECUTORS),
        default="local",
        show_default=True,
        help="Where the counting runs: this machine's processes, or a local Dask cluster "
        "(classweights[dask]).",
    ),
    click.option(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="Run on the Dask cluster of this scheduler (implies --executor dask).",
    ),
    click.option(
        "--cache",
        type=click.Path(dir_okay=False),
        callback=_check_output,  # before any scan: a folder that is not there
        help="SQLite file of per-mask histograms: a re-scan reads only new and changed masks.",
    ),
)

_SCALE_OPTIONS = ("shard", "executor", "scheduler", "cache")


@contextmanager
def _executor(kind: str, scheduler: str | None, workers: int | None):
    """Yield the executor ``--executor``/``--scheduler`` ask for, and its worker count (None,
    None: the library's own)."""
    if kind == "local" and scheduler is None:
        yield None, workers
        return
    from .scan import dask_executor

    with dask_executor(scheduler, workers) as running:
        yield running


@dataclass(frozen=True)
class _Reading:
    """The reading options of `scan`, resolved against the preset."""

    spec: LabelSpec
    names: tuple[str, ...] | None
    colour_names: dict[int, str]
    pattern: str | None
    roi: str | None
    pair_key: str | None
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
    pair_key: str | None,
    npz_key: str | None,
    column: str | None,
    storage_option: tuple[tuple[str, object], ...],
    max_pixels: int,
    workers: int | None,
) -> _Reading:
    """Resolve the reading options; an option given explicitly wins over the preset's value."""
    base = PRESETS[preset] if preset else Preset("", ())
    if pattern and not base.accepts(pattern):
        fits = [name for name, other in PRESETS.items() if other.glob and other.accepts(pattern)]
        fix = f"use --preset {fits[0]}" if fits else f"drop --glob, or pick files named {base.glob}"
        raise click.BadParameter(
            f"{pattern!r} contradicts --preset {preset}, which reads {base.glob} files; {fix}",
            param_hint="--glob",
        )
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
    options = ReadOptions(npz_key, max_pixels, storage_option, column)
    pair_key = pair_key or base.pair_key
    return _Reading(
        spec, names, colour_map.names, pattern or base.glob, roi, pair_key, options, workers
    )


def _scan(
    paths: tuple[str, ...],
    reading: _Reading,
    display,
    *,
    executor: str = "local",
    scheduler: str | None = None,
    **how,
) -> ScanResult:
    """Scan ``paths`` as ``reading`` says, with a progress bar; ``how``: see `scan.scan`."""
    with (
        _executor(executor, scheduler, reading.workers) as (pool, workers),
        display.progress() as progress,
    ):
        result = scan(
            paths,
            reading.spec,
            pattern=reading.pattern,
            regions=reading.roi,
            pair_key=reading.pair_key,
            options=reading.options,
            names=reading.names,
            workers=workers,
            executor=pool,
            progress=progress,
            **how,
        )
    if result.names is None and reading.colour_names:
        names = tuple(reading.colour_names.get(c) for c in range(result.counts.num_classes))
        result = replace(result, names=names)
    for warning in result.warnings:
        display.warn(_flags(warning))
    return result


_READING_OPTIONS = list(inspect.signature(_reading).parameters)


weight_options = _options(
    click.option(
        "--method",
        type=_Choice(METHODS, ALIASES),
        default="median",
        show_default=True,
        help="Weight formula (balanced = inverse, mfb = median).",
    ),
    click.option(
        "--normalize",
        type=_Choice(NORMALIZATIONS),
        default="none",
        show_default=True,
        help="Rescale the weights so their mean, sum, pixel-weighted mean, max or min is 1.",
    ),
    click.option(
        "--missing",
        type=_Choice(MISSING),
        default="zero",
        show_default=True,
        help="Weight of a class with no pixels.",
    ),
    click.option(
        "--clip-min",
        type=_Finite(min=0, min_open=True),
        callback=_check_clip,
        help="Lower bound.",
    ),
    click.option(
        "--clip-max",
        type=_Finite(min=0, min_open=True),
        callback=_check_clip,
        help="Upper bound.",
    ),
    click.option(
        "--enet-c",
        type=_Finite(min=1, min_open=True),
        default=_Deferred("weights", "ENET_C").get,
        show_default="1.02",
        help="ENet's c0 in 1 / ln(c0 + p).",
    ),
    click.option(
        "--beta",
        type=_Finite(min=0, max=1, max_open=True),
        help="Class-balanced loss beta [default: 1 - 1/N].",
    ),
)

output_options = _options(
    click.option(
        "--format",
        "fmt",
        type=_Choice(FORMATS),
        default="json",
        show_default=True,
        help="Document format; list is the bare weight list.",
    ),
    click.option(
        "--for",
        "target",
        type=_Choice(TARGETS),
        help="Write only what one consumer takes, in its shape (json or yaml), e.g. torch-ce.",
    ),
    click.option(
        "--digits",
        type=click.IntRange(1, 17),
        default=_Deferred("report", "DIGITS").get,
        show_default="6",
        help="Significant digits of weights and shares (the report's frequency field).",
    ),
    click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True, allow_dash=True),
        callback=_check_output,
        help="Write the document here (atomically; - is stdout) instead of to stdout.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No table, progress or warnings on stderr."),
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__,
    "--version",
    "-V",
    prog_name="classweights",
    message=f"%(prog)s, version %(version)s\n{_native.description()}",
)
def cli() -> None:
    """Per-class pixel statistics and class weights from semantic-segmentation masks.

    The document goes to stdout (or -o); the table, progress and warnings to stderr.
    Exit codes: 0 success, 1 check found violations, 2 usage error, 3 input error,
    130 interrupted.
    """


def _check_per_image(ctx: click.Context, param: click.Parameter, value: str | None):
    # Before any scan: a per-image file the scan could not write would cost a whole scan.
    if value is None:
        return None
    from . import per_image

    try:
        parquet = per_image.file_format(value) == ".parquet"
    except ValueError as error:
        raise click.BadParameter(str(error).replace(f"per_image {value!r}", value)) from None
    if parquet and not per_image.has_parquet():
        raise click.BadParameter(per_image.NO_PYARROW)
    return _check_output(ctx, param, value)


@contextmanager
def _per_image_rows(path: str | None) -> Iterator[Callable | None]:
    """Yield the ``rows`` callback of `scan.scan` that writes ``path``, or None without one."""
    if path is None:
        yield None
        return
    from . import per_image

    with per_image.writing(path) as write:
        yield write


@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@label_options
@click.option(
    "--skip-errors",
    is_flag=True,
    help="Go on past masks that cannot be read, and list them in the document's errors.",
)
@scale_options
@click.option(
    "--per-image",
    type=click.Path(dir_okay=False),
    callback=_check_per_image,
    metavar="FILE",
    help="Also write one row per mask (path, size, ignored, pixels per class): "
    ".csv, .jsonl or .parquet.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    metavar="N",
    help="Count a random sample of N masks (seeded by --seed), and bootstrap the weights' "
    "intervals.",
)
@click.option(
    "--until-stable",
    type=_Finite(min=0, min_open=True),
    metavar="R",
    help="Read masks in a random order until every weight's 95% interval is within R "
    "(relative, 0.05 = 5%) of it.",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(min=0, max=MAX_RESAMPLES),
    metavar="B",
    help="Bootstrap resamples for the 95% intervals; 0 for none [default: 1000 with "
    f"--sample or --until-stable, else none; at most {MAX_RESAMPLES:,}].",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of --sample, --until-stable and --bootstrap.",
)
@weight_options
@output_options
def scan_command(
    paths, skip_errors, per_image, sample, until_stable, resamples, seed, **options
) -> None:
    """Count pixels per class in the masks under PATH... and derive class weights.

    PATH is a directory (searched recursively), a mask file, a glob, a URL
    (s3://, gs://, az://, hf://, https://, memory://), a .tar, .tar.gz or .zip
    archive, or a .parquet file (see --column).

    Example:

        classweights scan masks/ --ignore-index 255 --method median
    """
    reading = _reading(**{k: options.pop(k) for k in _READING_OPTIONS})
    scale = {k: options.pop(k) for k in _SCALE_OPTIONS}
    display = _display(options["quiet"])
    if resamples is None:
        resamples = 1000 if sample or until_stable else 0
    if until_stable and not resamples:
        raise click.UsageError("--until-stable needs --bootstrap resamples, not 0")
    if per_image and scale["cache"]:
        raise click.UsageError("--per-image reads every mask: it cannot go with --cache")
    if per_image and options["output"] and _same_file(per_image, options["output"]):
        raise click.UsageError(f"--per-image and -o are one file ({per_image}): one would be lost")
    sampled = sample or until_stable or resamples
    if sampled and (scale["shard"] or scale["cache"] or scale["executor"] != "local"):
        raise click.UsageError(
            "--sample, --until-stable and --bootstrap scan on this machine: "
            "not with --shard, --cache or --executor"
        )
    extra = None
    with _per_image_rows(per_image) as rows:
        if sampled:
            how = {"sample": sample, "until_stable": until_stable, "seed": seed}
            result, extra = _sample_scan(
                paths, reading, display, rows, how, resamples, skip_errors, options
            )
        else:
            result = _scan(paths, reading, display, skip_errors=skip_errors, rows=rows, **scale)
        # The document of a command-line run names flags too.
        result.counts.errors[:] = [(path, _flags(e)) for path, e in result.counts.errors]
        for path, error in result.counts.errors:
            display.warn(f"skipped {path}: {error}")
        # Inside the block: if the weights cannot be derived, no per-image file is left.
        _emit(result, display, extra=extra, **options)


def _weigh(options: dict) -> Callable:
    """Return ``weigh(counts)``: the weights of counts under the weight options of a command."""
    settings = {
        "method": options["method"],
        "normalize": options["normalize"],
        "missing": options["missing"],
        "clip": (options["clip_min"], options["clip_max"]),
        "params": Params(enet_c=options["enet_c"], beta=options["beta"]),
    }
    return lambda counts: compute_weights(counts, **settings).weights


def _sample_scan(
    paths, reading: _Reading, display, rows, how: dict, resamples: int, skip_errors, options
) -> tuple[ScanResult, dict | None]:
    """Scan a sample of the masks (or all) and bootstrap the weights' intervals (issue 12):
    the result, and the document's ``interval`` entry (None without resamples)."""
    from .intervals import scan_sample

    with display.progress() as progress:
        sampled = scan_sample(
            paths,
            reading.spec,
            _weigh(options),
            **how,
            resamples=resamples,
            rows=rows,
            pattern=reading.pattern,
            regions=reading.roi,
            options=reading.options,
            names=reading.names,
            workers=reading.workers,
            progress=progress,
            skip_errors=skip_errors,
        )
    result = sampled.result
    if result.names is None and reading.colour_names:
        names = tuple(reading.colour_names.get(c) for c in range(result.counts.num_classes))
        result = replace(result, names=names)
    for warning in result.warnings:
        display.warn(warning)
    read = len(sampled.table)
    worst = (
        f"; widest interval +/-{sampled.worst:.1%} of its weight (class {sampled.worst_class})"
        if sampled.worst_class is not None
        else ""
    )
    if how["until_stable"]:
        verdict = "stable" if sampled.stable else "not stable"
        display.note(
            f"read {read:,} of {sampled.found:,} masks in a random order (seed {how['seed']}): "
            f"{verdict} within {how['until_stable']:g}{worst}"
        )
    elif how["sample"]:
        display.note(
            f"counted a random sample of {read:,} of {sampled.found:,} masks "
            f"(seed {how['seed']}){worst if resamples else ''}"
        )
    # In the document too: a sample must not pass for a full scan (merge refuses it).
    extra: dict = {}
    if how["sample"] or how["until_stable"]:
        extra["sample"] = {"masks": read, "found": sampled.found, "seed": how["seed"]}
        if how["until_stable"]:
            extra["sample"]["order"] = "random"
    if not resamples:
        return result, extra or None
    digits = options["digits"]
    interval = sampled.interval
    assert interval is not None  # resamples were asked for

    def rounded(values) -> list[float]:
        return [float(f"{v:.{digits}g}") for v in values.tolist()]

    entry = {
        "low": rounded(interval.low),
        "high": rounded(interval.high),
        "level": interval.level,
        "bootstrap": interval.bootstrap,
        "images": interval.images,
        "seed": how["seed"],
    }
    if how["until_stable"]:
        entry.update(until_stable=how["until_stable"], stable=sampled.stable)
    if sampled.worst_class is not None:
        relative = float(f"{sampled.worst:.{digits}g}")
        entry.update(widest={"class": sampled.worst_class, "relative": relative})
    extra["interval"] = entry
    return result, extra


def _parse_values(ctx: click.Context, param: click.Parameter, value: str | None):
    """Parse ``0-18,255`` into (0, 1, ..., 18, 255)."""
    if value is None:
        return None
    values: list[int] = []
    for part in value.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a value or a range like 0-18") from None
        if last < first:
            raise click.BadParameter(f"{part!r} runs backwards; write {last}-{first}")
        if len(values) + last - first >= MAX_ALLOWED_VALUES:
            raise click.BadParameter(f"{value!r} holds more than {MAX_ALLOWED_VALUES:,} values")
        values += range(first, last + 1)
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
    type=_Finite(min=1),
    metavar="R",
    help="Largest class share / smallest present class share may be at most R.",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, exists=True),
    help="Folder of images: each mask has one of the same sample id (--pair-key) and size, "
    "and each image a mask.",
)
@click.option(
    "--baseline",
    type=click.Path(),
    help="A saved report to compare the class shares with (see --max-drift).",
)
@click.option(
    "--max-drift",
    type=_Finite(min=0, max=1),
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
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    callback=_check_output,
    help="Write the report here (atomically; - is stdout) instead of to stdout.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")
@scale_options
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
    scale = {k: options.pop(k) for k in _SCALE_OPTIONS}
    reading = _reading(**options)
    reading = replace(reading, spec=replace(reading.spec, allowed_values=allowed_values))
    rule_given = (
        reading.spec.num_classes is not None  # labels outside 0..K-1
        or reading.spec.colors  # colours not in the colour map
        or allowed_values is not None
        or any((require_classes, min_share, max_imbalance, images, baseline))
    )
    if not rule_given:  # "every rule holds" would be true of anything
        raise click.UsageError(
            "no rule to check: give --num-classes (or --preset), --allowed-values, "
            "--require-classes, --min-share, --max-imbalance, --images, --colors or --baseline"
        )
    display = _display(quiet)
    result = _scan(paths, reading, display, skip_errors=True, strict=False, **scale)
    rules = Rules(
        require_classes=require_classes.split(",") if require_classes else None,
        min_share=min_share,
        max_imbalance=max_imbalance,
        images=images,
        pair_key=reading.pair_key,
        baseline=baseline,
        max_drift=max_drift,
    )
    stored = dict(reading.options.storage_options)
    masks = (
        find_masks(paths, reading.pattern, storage_options=stored, column=reading.options.column)
        if images
        else []
    )
    if scale["shard"]:  # the images rule pairs this shard's masks alone
        index, count = scale["shard"]
        masks = [mask for mask in masks if shard_of(mask.name, count) == index]
    violations = check(result, rules, masks)
    text = CHECK_FORMATS[fmt](result, violations)
    width = _terminal_width() if fmt == "text" and output in (None, "-") else None
    if width and violations:  # wrapped for people; in a pipe, one line each for grep
        from .display import wrapped_violations

        flagged = [_flagged(violation) for violation in violations]
        text = wrapped_violations(flagged, text.splitlines()[-1], width)
    _write(_flags(text), output)
    display.done(output)
    if violations:
        raise click.exceptions.Exit(1)


@cli.command("presets")
@click.argument("name", required=False, type=click.Choice(list(PRESETS), case_sensitive=False))
def presets_command(name: str | None) -> None:
    """List the dataset presets that --preset takes, with what each sets; with NAME, that
    preset's classes, one line each (id, name), and what it maps and ignores.

    Example:

        classweights presets cityscapes
    """
    if name:
        _show_preset(PRESETS[name])
        return
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
        if preset.pair_key:
            settings.append(f"pair key {preset.pair_key}")
        click.echo(f"{name}: {preset.description} ({'; '.join(settings)})")


def _show_preset(preset: Preset) -> None:
    click.echo(preset.description)
    for class_id, class_name in enumerate(preset.names):
        click.echo(f"{class_id:>4}  {class_name}")
    if preset.ignore_index:
        click.echo(f"ignored: {', '.join(map(str, preset.ignore_index))}")
    if preset.reduce_zero_label:
        click.echo("raw 0 ignored, every other raw value v counted as v - 1 (reduce-zero-label)")
    if preset.mapping:
        pairs = ", ".join(f"{src}:{dst}" for src, dst in preset.mapping)
        click.echo(f"raw values mapped (raw:class): {pairs}")
    if preset.glob:
        click.echo(f"masks: {preset.glob}")
    if preset.pair_key:
        click.echo(f"pairs files by the sample id {preset.pair_key} finds (--pair-key)")


@cli.command("weights")
@click.argument("report", type=click.Path())  # checked by report.load: exit 3, not 2
@weight_options
@output_options
def weights_command(report, **options) -> None:
    """Derive weights again from a saved JSON or YAML REPORT, without reading masks.

    Example:

        classweights weights weights.json --method enet --normalize pixels
    """
    result = load(report)
    if result.counts.counted == 0:
        raise ReportError(report, "counts no pixel (every pixel ignored): no weights to derive")
    sample = {"sample": result.sample} if result.sample else None  # still a sample
    _emit(result, _display(options["quiet"]), extra=sample, **options)


@cli.command("merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path())
@click.option(
    "--complete",
    is_flag=True,
    help="Exit 3 when a shard of a --shard split is missing (else a warning).",
)
@weight_options
@output_options
def merge_command(reports, complete, **options) -> None:
    """Add up the REPORTs of disjoint shards of one dataset into one report.

    The reports must agree on --num-classes, --ignore-index and --map. Reports of
    --shard I/N scans may not repeat a shard; a missing one is named.

    Example:

        classweights merge part1.json part2.json -o weights.json
    """
    results = [(path, load(path)) for path in reports]
    for path, result in results:
        if result.sample is not None:
            raise ReportError(
                path,
                f"counts a random sample ({result.sample.get('masks')} of "
                f"{result.sample.get('found')} masks), not a shard: merge adds up full scans "
                "of disjoint shards",
            )
    merged = merge(results, complete=complete)
    display = _display(options["quiet"])
    for warning in merged.warnings:
        display.warn(warning)
    _emit(merged, display, **options)


def _per_image_file(paths: tuple[str, ...]) -> str | None:
    """Return the per-image file ``paths`` name, or None when they name masks to scan (no mask
    format has a per-image file's extension)."""
    from .per_image import FORMATS as ROW_FORMATS

    if len(paths) == 1 and os.path.splitext(paths[0])[1].lower() in ROW_FORMATS:
        return paths[0]
    return None


def _refuse_reading_options(ctx: click.Context, source: str) -> None:
    """Exit 2 when a label or reading option was given with a per-image file: its rows were
    counted already, so the option would be silently ignored."""
    from click.core import ParameterSource

    given = [
        param.opts[0]
        for param in ctx.command.params
        if param.name in _READING_OPTIONS
        and ctx.get_parameter_source(param.name) not in (None, ParameterSource.DEFAULT)
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} cannot apply to {source}: its rows were counted already; "
            "give them to scan --per-image, or give image-weights the masks"
        )


@cli.command("image-weights")
@click.argument("paths", nargs=-1, required=True, metavar="PER_IMAGE_OR_PATH...")
@label_options
@click.option(
    "--method",
    "sampling_method",
    type=_Choice(_Deferred("sampling", "METHODS")),
    required=True,
    help="repeat-factor (LVIS, detectron2), rare-class (DAFormer) or inverse (mean pixel "
    "weight, for WeightedRandomSampler).",
)
@click.option(
    "--threshold",
    type=_Finite(min=0, max=1, min_open=True),
    metavar="T",
    help="repeat-factor: classes in fewer than this share of the images are repeated "
    "[default: 0.001].",
)
@click.option(
    "--temperature",
    type=_Finite(min=0, min_open=True),
    metavar="T",
    help="rare-class: softmax temperature; smaller favours rare classes more [default: 0.01].",
)
@click.option(
    "--min-pixels",
    type=click.IntRange(min=0),
    metavar="N",
    help="rare-class: an image is drawn for a class only if it holds more than N of its "
    "pixels [default: 0].",
)
@click.option(
    "--class-method",
    type=_Choice(METHODS, ALIASES),
    help="inverse: the class weights whose mean over an image's pixels is its weight "
    "[default: inverse].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv: path,weight rows; json: method, params, and paths and weights aligned.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    callback=_check_output,
    help="Write the weights here (atomically) instead of to stdout.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")
def image_weights_command(
    paths,
    sampling_method,
    threshold,
    temperature,
    min_pixels,
    class_method,
    fmt,
    output,
    quiet,
    **options,
) -> None:
    """Write a sampling weight per image, for a rebalancing sampler.

    PER_IMAGE_OR_PATH is a per-image file written by `scan --per-image`
    (.csv, .jsonl, .parquet), or masks to scan (as `scan` takes them).
    The weights are aligned with the images, in path order.

    Example:

        classweights image-weights rows.csv --method repeat-factor
    """
    from . import sampling
    from .per_image import Table, read_rows

    given = {
        "--threshold": (threshold, "repeat-factor"),
        "--temperature": (temperature, "rare-class"),
        "--min-pixels": (min_pixels, "rare-class"),
        "--class-method": (class_method, "inverse"),
    }
    for flag, (value, method) in given.items():
        if value is not None and sampling_method != method:
            raise click.UsageError(f"{flag} applies to --method {method}, not {sampling_method}")
    params = sampling.Params(
        threshold=sampling.THRESHOLD if threshold is None else threshold,
        temperature=sampling.TEMPERATURE if temperature is None else temperature,
        min_pixels=sampling.MIN_PIXELS if min_pixels is None else min_pixels,
        class_method=class_method or "inverse",
    )
    source = _per_image_file(paths)
    if source is not None:
        _refuse_reading_options(click.get_current_context(), source)
        table = Table.of(read_rows(source))
    else:
        rows: list = []
        _scan(paths, _reading(**options), _display(quiet), rows=rows.extend)
        table = Table.of(rows)
    try:
        result = sampling.image_weights(table, sampling_method, params)
    except ClassWeightsError as error:  # name the flag, not the library's parameter
        said = str(error).replace("min_pixels", "--min-pixels")
        error.args = (f"{source}: {said}" if source is not None and not table.paths else said,)
        raise
    if fmt == "json":
        _write(FORMATS["json"](result.document()), output)  # allow_nan=False, as every document
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("path", "weight"))
        writer.writerows(zip(result.paths, result.weights.tolist(), strict=True))
        _write(out.getvalue(), output)


@cli.command("multilabel")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--channels",
    type=click.Choice(["first", "last"]),
    help="Arrays hold one binary mask per class on their first (C,H,W) or last (H,W,C) axis; "
    "images on their pages or channels.",
)
@click.option(
    "--class-folders",
    is_flag=True,
    help="PATH holds one folder per class of binary masks: PATH/<class>/<stem>.png.",
)
@click.option(
    "--one-hot",
    is_flag=True,
    help="The masks are one-hot: exit 1 if a pixel holds no class or several.",
)
@click.option(
    "--class-names",
    type=click.Path(dir_okay=False),
    help="Class names: text one per line, or a JSON/YAML list.",
)
@click.option("--glob", "pattern", metavar="PATTERN", help="Which files count in a directory.")
@click.option("--npz-key", metavar="KEY", help="The array to read from .npz files.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=_Deferred("masks", "MAX_PIXELS").get,
    show_default="Pillow's limit",
    help="Largest image to decode, a guard against decompression bombs.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Worker processes [default: all cores]."
)
@click.option(
    "--missing",
    type=_Choice(MISSING),
    default="zero",
    show_default=True,
    help="pos_weight of a class with no pixels.",
)
@click.option(
    "--digits",
    type=click.IntRange(1, 17),
    default=_Deferred("report", "DIGITS").get,
    show_default="6",
    help="Significant digits of pos_weight and shares.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    callback=_check_output,
    help="Write the document here (atomically) instead of to stdout.",
)
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr.")
def multilabel_command(
    paths,
    channels,
    class_folders,
    one_hot,
    class_names,
    pattern,
    npz_key,
    max_pixels,
    workers,
    missing,
    digits,
    output,
    quiet,
) -> None:
    """Count multi-label or one-hot masks, one binary mask per class, and derive pos_weight.

    A pixel may hold several classes. pos_weight[c] = (N - n_c) / n_c, shaped
    (C, 1, 1) for BCEWithLogitsLoss on (N, C, H, W) logits.

    Example:

        classweights multilabel masks/ --channels first
    """
    from . import multilabel
    from .scan import Source

    if (channels is None) == (not class_folders):
        raise click.UsageError("give one of --channels first|last and --class-folders")
    options = ReadOptions(npz_key, max_pixels)
    names = load_names(class_names) if class_names else None
    if class_folders:
        if len(paths) != 1:
            raise click.UsageError("--class-folders takes one PATH, the folder of class folders")
        folders, items = multilabel.class_folders(paths[0], pattern)
        names = names or tuple(folders)
        layout, classes = "class folders", len(folders)
    else:
        items = multilabel.arrays(paths, pattern)
        layout, classes = f"channels {channels}", None
    counts = multilabel.count(items, classes, channels or "first", options, workers=workers)
    source = Source.of(paths, multilabel.masks_of(items))
    doc = multilabel.document(
        counts,
        layout=layout,
        names=names,
        missing=missing,
        source={
            "paths": list(source.paths),
            "files": source.files,
            "fingerprint": source.fingerprint,
        },
        digits=digits,
    )
    display = _display(quiet)
    if counts.not_one_hot:
        example = counts.examples[0][0]
        message = (
            f"{counts.not_one_hot:,} of {counts.files:,} masks are not one-hot: "
            f"{counts.no_class:,} pixels hold no class and {counts.several:,} several; "
            f"e.g. {example}"
        )
        if one_hot:
            _write(FORMATS["json"](doc), output)
            click.echo(f"one-hot: {message}", err=True)
            raise click.exceptions.Exit(1)
        display.warn(message)
    _write(FORMATS["json"](doc), output)


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
    target: str | None,
    digits: int,
    output: str | None,
    quiet: bool,
    extra: dict | None = None,
) -> None:
    """Derive the weights, show the table and warnings, and write the document (with the
    ``extra`` entries at its end; or, with ``target``, what that consumer takes)."""
    if target and fmt not in ("json", "yaml"):
        raise click.UsageError(f"--for {target} writes json or yaml, not --format {fmt}")
    weights = compute_weights(
        result.counts,
        method,
        normalize=normalize,
        missing=missing,
        clip=(clip_min, clip_max),
        params=Params(enet_c=enet_c, beta=beta),
    )
    doc = document(result, weights, digits=digits)
    doc.update(extra or {})
    out: dict = doc
    notes: list[str] = []
    if target:
        import numpy as np  # here: --help and --version do not pay for numpy

        # The weights as the report rounds them (--digits), so both documents agree.
        rounded = replace(weights, weights=np.array(doc["weights"]), pos_weight=doc["pos_weight"])
        out, notes = shape_for(target, result, rounded)
    if fmt == "html":  # the page shows the scan's warnings too (the report does not hold them)
        out = {**doc, "warnings": [_flags(warning) for warning in result.warnings]}
    _write(FORMATS[fmt](out), output)
    # After the document, so that in a terminal the table and warnings do not scroll away.
    display.summary(doc, pos_weight=target == "torch-bce")
    if weights.absent and missing != "error":
        display.warn(
            f"classes with no pixels: {_class_list(weights.absent, result.names)}; "
            f"their weight is {missing} (--missing {missing})"
        )
    for note in notes:
        display.warn(_flags(note))
    display.done(output)


def _class_list(ids: list[int], names: Sequence[str | None] | None) -> str:
    """Return class ids by name where known ("3 car, 4 bus"), else as short ranges."""
    if names and all(names[i] for i in ids):
        return ", ".join(f"{i} {names[i]}" for i in ids)
    return _id_ranges(ids)


def _flagged(violation: Violation) -> Violation:
    """Return a violation as the command line words it: parameters named as flags."""
    examples = tuple((_flags(path), _flags(detail)) for path, detail in violation.examples)
    return replace(violation, message=_flags(violation.message), examples=examples)


def _terminal_width() -> int | None:
    """Return the width of the terminal stdout is, None when stdout is a pipe or a file."""
    if sys.stdout is None or not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def _write(text: str, output: str | None) -> None:
    """Write a command's document to ``output`` or stdout (`report.write_output`)."""
    write_output(output, text)


def main() -> None:
    """Run the command line (the ``classweights`` console script) and exit with its code.

    Ctrl-C at any moment exits 130 with "interrupted" on stderr, never a traceback: here it
    raises `Interrupted`, which ends the workers and removes a half-written output on its way
    out. (``classweights.__main__`` covers the imports before this.)
    """
    code: int | None = 0
    try:
        signal.signal(signal.SIGINT, _interrupted)
        _keep_freed_memory()
        code = cli.main(prog_name="classweights", standalone_mode=False)
    except (Interrupted, KeyboardInterrupt):
        code = 130
        _say_interrupted()
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        code = 1
    finally:
        # Past this point the run is over: a late Ctrl-C only stops the interpreter's exit.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code or 0)


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
