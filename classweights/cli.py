"""The command line: a thin layer of click over the library.

Every command parses its options into library objects, calls the library, and writes one
document to stdout (or ``-o``); people's output goes to stderr through `display.Display`.
Library errors become one line and their exit code: 2 usage, 3 input (DESIGN.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from . import __version__
from .counting import LabelSpec, sparse_label_hint
from .display import Display, id_ranges
from .errors import ClassWeightsError
from .report import DIGITS, FORMATS, document, load, merge, write_atomic
from .scan import ScanResult, scan
from .weights import ALIASES, ENET_C, METHODS, MISSING, NORMALIZATIONS, Params, compute_weights


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


def _parse_map(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    pairs = []
    for value in values:
        src, sep, dst = value.partition(":")
        try:
            pairs.append((int(src), int(dst)))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not SRC:DST with integer values") from None
        if not sep:
            raise click.BadParameter(f"{value!r} is not SRC:DST")
    if len({src for src, _ in pairs}) != len(pairs):
        raise click.BadParameter(f"a value is mapped twice in {', '.join(values)}")
    return tuple(pairs)


def _options(*options: Callable) -> Callable:
    def apply(command: Callable) -> Callable:
        return functools.reduce(lambda f, option: option(f), reversed(options), command)

    return apply


label_options = _options(
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
    click.option("--glob", "pattern", metavar="PATTERN", help="Which files count in a directory."),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes [default: all cores].",
    ),
)

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
    click.option("--clip-min", type=click.FloatRange(min=0, min_open=True), help="Lower bound."),
    click.option("--clip-max", type=click.FloatRange(min=0, min_open=True), help="Upper bound."),
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
        help="Write the document here (atomically) instead of to stdout.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No table, progress or warnings on stderr."),
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="classweights")
def cli() -> None:
    """Per-class pixel statistics and class weights from semantic-segmentation masks.

    The document goes to stdout (or -o); the table, progress and warnings to stderr.
    Exit codes: 0 success, 2 usage error, 3 input error.
    """


@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@label_options
@weight_options
@output_options
def scan_command(paths, num_classes, ignore_index, mapping, pattern, workers, **options) -> None:
    """Count pixels per class in the masks under PATH... and derive class weights.

    PATH is a directory (searched recursively), a mask file, or a glob.

    Example:

        classweights scan masks/ --ignore-index 255 --method median
    """
    display = Display(options["quiet"])
    spec = LabelSpec(num_classes, ignore_index, mapping)
    with display.progress() as progress:
        result = scan(paths, spec, pattern=pattern, workers=workers, progress=progress)
    hint = sparse_label_hint(result.counts, spec)
    if hint:
        display.warn(hint)
    _emit(result, display, **options)


@cli.command("weights")
@click.argument("report", type=click.Path(dir_okay=False))
@weight_options
@output_options
def weights_command(report, **options) -> None:
    """Derive weights again from a saved JSON or YAML REPORT, without reading masks.

    Example:

        classweights weights weights.json --method enet --normalize pixels
    """
    _emit(load(report), Display(options["quiet"]), **options)


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
    _emit(merged, Display(options["quiet"]), **options)


def _emit(
    result: ScanResult,
    display: Display,
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
    if clip_min is not None and clip_max is not None and clip_min > clip_max:
        raise click.BadParameter(
            f"--clip-min {clip_min} is above --clip-max {clip_max}", param_hint="--clip-min"
        )
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
            f"classes with no pixels: {id_ranges(weights.absent)}; "
            f"their weight is {missing} (--missing {missing})"
        )
    text = FORMATS[fmt](doc)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)


def main() -> None:
    """Run the command line (the ``classweights`` console script)."""
    cli(prog_name="classweights")
