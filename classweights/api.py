"""From masks to weights in one call: the library's front door (README, "From Python").

`class_weights` does what ``classweights scan`` does, for a training script: it resolves a
preset and explicit settings the way the command line does (an argument given wins over the
preset's value), scans, derives the weights, and reports what looks wrong through
`warnings.warn` with the `ClassWeightsWarning` category.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any

from .counting import LabelSpec
from .errors import ClassWeightsWarning
from .presets import find_preset
from .scan import ScanResult, scan
from .weights import ENET_C, Params, Weights, compute_weights

#: What a path argument may be: one path, or several.
Paths = str | os.PathLike | Iterable[str | os.PathLike]


def class_weights(
    paths: Paths,
    *,
    preset: str | None = None,
    method: str = "median",
    normalize: str = "none",
    missing: str = "zero",
    clip: tuple[float | None, float | None] = (None, None),
    num_classes: int | None = None,
    ignore_index: int | Iterable[int] | None = None,
    mapping: Mapping[int, int] | Iterable[tuple[int, int]] | None = None,
    reduce_zero_label: bool | None = None,
    names: Sequence[str] | None = None,
    pattern: str | None = None,
    regions: str | os.PathLike | None = None,
    pair_key: str | None = None,
    enet_c: float = ENET_C,
    beta: float | None = None,
    workers: int | None = None,
) -> Weights:
    """Return the class weights of the masks under ``paths``, in one call.

    Parameters
    ----------
    paths : str, os.PathLike, or an iterable of them
        Directories (searched recursively), mask files or globs.
    preset : str, optional
        A dataset's label settings by name (``"cityscapes"``, ``"voc"``, ``"ade20k"``,
        ``"camvid"``; any case): class count, names, ignore values, value map and mask glob.
        Any of the arguments below that is given replaces the preset's value.
    method : str, default "median"
        A key of `METHODS` or `ALIASES`: ``"inverse"``, ``"median"``, ``"enet"``, ``"sqrt"``,
        ``"effective"``, ``"uniform"``.
    normalize : str, default "none"
        A key of `NORMALIZATIONS`: ``"mean"``, ``"sum"``, ``"pixels"``, ``"max"``, ``"min"``.
    missing : str, default "zero"
        The weight of a class with no pixels, a key of `MISSING`.
    clip : (float or None, float or None)
        Bounds applied last, to every non-zero weight.
    num_classes : int, optional
        Class ids are ``0..num_classes-1`` (default: the largest label + 1).
    ignore_index : int or iterable of int, optional
        Values that count as no class, e.g. ``255``.
    mapping : mapping or iterable of (int, int), optional
        Raw values replaced before counting, e.g. ``{255: 1}``.
    reduce_zero_label : bool, optional
        ADE20K's convention: 0 is ignored, every other value v becomes v - 1.
    names : sequence of str, optional
        Class names, id 0 first (their count is the class count).
    pattern : str, optional
        Which files count in a directory (a glob), e.g. ``"*_labelIds.png"``.
    regions : str or os.PathLike, optional
        A folder of region masks (fields of view): only the pixels where a mask's region is
        non-zero count.
    pair_key : str, optional
        How masks pair with their regions: a regular expression whose one group is the
        sample id, e.g. ``r"^(\\d+)_"`` (default: the relative path without extension).
    enet_c, beta : float
        The parameters of ``"enet"`` and ``"effective"`` (see `Params`).
    workers : int, optional
        Worker processes (default: all cores). The result is the same for any count.

    Returns
    -------
    Weights
        ``weights.weights`` (float64, one per class), ``pos_weight``, ``absent``; converts
        with ``tolist()``, ``numpy.asarray`` and ``tensor()``.

    Raises
    ------
    InputError
        No masks, no pixels counted, or a value that may not occur.
    MaskError
        A mask cannot be read.

    Warns
    -----
    ClassWeightsWarning
        The labels look sparse (a void value counted as a class), masks are JPEG, or classes
        have no pixels.

    Examples
    --------
    >>> weights = class_weights("sample_masks/", ignore_index=255)
    >>> weights.tolist()
    [0.2105652925..., 0.6432880844..., 2.2447368421..., 35.541666666...]
    """
    result = count(
        paths,
        preset=preset,
        num_classes=num_classes,
        ignore_index=ignore_index,
        mapping=mapping,
        reduce_zero_label=reduce_zero_label,
        names=names,
        pattern=pattern,
        regions=regions,
        pair_key=pair_key,
        workers=workers,
    )
    weights = compute_weights(
        result.counts,
        method,
        normalize=normalize,
        missing=missing,
        clip=clip,
        params=Params(enet_c=enet_c, beta=beta),
    )
    if weights.absent and missing != "error":
        _warn(
            f"classes {weights.absent} have no pixels; their weight is {weights.missing} "
            f"(missing={weights.missing!r})"
        )
    return weights


def count(
    paths: Paths,
    *,
    preset: str | None = None,
    num_classes: int | None = None,
    ignore_index: int | Iterable[int] | None = None,
    mapping: Mapping[int, int] | Iterable[tuple[int, int]] | None = None,
    reduce_zero_label: bool | None = None,
    names: Sequence[str] | None = None,
    pattern: str | None = None,
    regions: str | os.PathLike | None = None,
    pair_key: str | None = None,
    workers: int | None = None,
) -> ScanResult:
    """Return the counts of the masks under ``paths``: `class_weights` without the weights.

    The scan's warnings go to `warnings.warn` (and stay in ``result.warnings``).

    Parameters
    ----------
    paths, preset, num_classes, ignore_index, mapping, reduce_zero_label, names, pattern
        As for `class_weights`.
    regions, pair_key, workers
        As for `class_weights`.

    Returns
    -------
    ScanResult
        The counts (``result.counts``), the label settings and what was scanned; weigh
        them with `compute_weights`.

    Raises
    ------
    MaskError, InputError
        As `class_weights` does.
    """
    given = {
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "mapping": mapping,
        "reduce_zero_label": reduce_zero_label,
    }
    explicit: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if preset is not None:
        spec = LabelSpec.from_preset(preset, **explicit)
        chosen = find_preset(preset)
        if names is None and spec.num_classes == chosen.num_classes:
            names = chosen.names  # another num_classes drops the preset's names
        pattern = pattern or chosen.glob
        pair_key = pair_key or chosen.pair_key
    else:
        spec = LabelSpec(**explicit)
    if names is not None and spec.num_classes is None:
        spec = replace(spec, num_classes=len(names))
    result = scan(
        paths,
        spec,
        pattern=pattern,
        regions=regions,
        pair_key=pair_key,
        names=names,
        workers=workers,
    )
    for message in result.warnings:
        _warn(message)
    return result


def _warn(message: str) -> None:
    """Warn, attributed to the line of the user's code that called into this module."""
    # stacklevel 2 is _warn's caller; go up past every frame of this module.
    frame: FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, ClassWeightsWarning, stacklevel=level)
