"""Data checks for CI: rules over a scan's counts, each failing with a clear `Violation`.

A rule is off unless asked for. Values that may not occur (labels out of range, values not
allowed, unknown colours) and unreadable files are collected by the scan with example files;
the rules here turn them, and the class shares, into violations.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .counting import MAX_EXAMPLES, MAX_VALUES, MORE, ClassCounts
from .errors import InputError, MaskError, one_line, plural
from .masks import MaskFile, find_masks, mask_size, refuse_twins, sample_id, shape_text
from .report import settings_differ
from .scan import ScanResult


@dataclass(frozen=True)
class Violation:
    """One broken rule: the rule, what is wrong (with the value), and up to five example files."""

    rule: str
    message: str
    examples: tuple[tuple[str, str], ...] = ()  # (file, what is wrong there)

    def line(self) -> str:
        """Return the violation as one line of text (a newline in a file name escaped)."""
        text = f"{self.rule}: {self.message}"
        if self.examples:
            text += "; e.g. " + ", ".join(f"{path} ({detail})" for path, detail in self.examples)
        return one_line(text)


@dataclass(frozen=True)
class Rules:
    """The rules asked for; None (or empty) leaves a rule off.

    Classes are given by id or by name. Shares are fractions of the counted pixels.
    """

    require_classes: Sequence[str] | None = None  # ["all"] for every class
    min_share: dict[str, float] = field(default_factory=dict)
    max_imbalance: float | None = None
    images: str | None = None
    pair_key: str | None = None  # how masks and images pair: `masks.sample_id`
    baseline: ScanResult | None = None
    max_drift: float | None = None


def check(result: ScanResult, rules: Rules, masks: Sequence[MaskFile] = ()) -> list[Violation]:
    """Return every violation of ``rules`` (and of the scan's own value checks) in ``result``.

    ``masks`` are the scanned files, which the ``images`` rule pairs with images.
    """
    violations = _unreadable(result.counts) + _unexpected(result)
    for applies in RULES.values():
        violations += applies(result, rules, masks)
    return violations


def _unreadable(counts: ClassCounts) -> list[Violation]:
    if not counts.errors:
        return []
    examples = tuple(counts.errors[:MAX_EXAMPLES])
    return [Violation("readable", f"{plural(len(counts.errors), 'file')} cannot be read", examples)]


#: The rule each kind of unexpected value breaks.
_UNEXPECTED_RULES = {"label": "num-classes", "value": "allowed-values", "colour": "colors"}


def _unexpected(result: ScanResult) -> list[Violation]:
    violations: list[Violation] = []
    for key, tally in result.counts.unexpected.items():
        if key == MORE:  # the tally is bounded: no output grows without bound with the data
            message = (
                f"and more values past the first {MAX_VALUES:,}: {tally.pixels:,} pixels "
                "not listed one by one"
            )
            violations.append(Violation(violations[-1].rule if violations else "values", message))
            continue
        examples = tuple((path, plural(pixels, "pixel")) for path, pixels in tally.examples)
        message = (
            f"{result.spec.describe(key)}: {plural(tally.pixels, 'pixel')} in "
            f"{plural(tally.files, 'file')}"
        )
        violations.append(Violation(_UNEXPECTED_RULES[key[0]], message, examples))
    return violations


def _class_id(result: ScanResult, given: str) -> int:
    """Return the id of a class given by id or by name; raises InputError if there is none."""
    names = list(result.names or ())
    if given in names:
        return names.index(given)
    try:
        class_id = int(given)
    except ValueError:
        known = (
            f"the classes are {', '.join(map(str, names))}"
            if names
            else f"classes have no names: give an id in 0..{result.counts.num_classes - 1}"
        )
        raise InputError(f"no class named {given!r}; {known}") from None
    if not 0 <= class_id < result.counts.num_classes:
        raise InputError(f"no class {class_id}: class ids are 0..{result.counts.num_classes - 1}")
    return class_id


def _label(result: ScanResult, class_id: int) -> str:
    name = result.names[class_id] if result.names else None
    return f"class {class_id} ({name})" if name else f"class {class_id}"


def _shares(counts: ClassCounts) -> np.ndarray:
    return counts.pixels / max(counts.counted, 1)


def _require_classes(result: ScanResult, rules: Rules, masks) -> list[Violation]:
    if not rules.require_classes:
        return []
    if list(rules.require_classes) == ["all"]:
        wanted = list(range(result.counts.num_classes))
    else:
        wanted = [_class_id(result, c) for c in rules.require_classes]
    missing = [c for c in wanted if result.counts.pixels[c] == 0]
    if not missing:
        return []
    listed = ", ".join(_label(result, c) for c in missing)
    verb = "never occurs" if len(missing) == 1 else "never occur"
    return [Violation("require-classes", f"{listed} {verb}")]


def _min_share(result: ScanResult, rules: Rules, masks) -> list[Violation]:
    shares = _shares(result.counts)
    violations = []
    for given, least in rules.min_share.items():
        c = _class_id(result, given)
        if shares[c] < least:
            violations.append(
                Violation(
                    "min-share",
                    f"{_label(result, c)} has {shares[c]:.4%} of the pixels, less than {least:.4%}",
                )
            )
    return violations


def _max_imbalance(result: ScanResult, rules: Rules, masks) -> list[Violation]:
    if rules.max_imbalance is None:
        return []
    shares = _shares(result.counts)
    present = np.flatnonzero(shares > 0)
    if present.size < 2:
        return []
    most, least = present[shares[present].argmax()], present[shares[present].argmin()]
    ratio = shares[most] / shares[least]
    if ratio <= rules.max_imbalance:
        return []
    return [
        Violation(
            "max-imbalance",
            f"{_label(result, most)} has {ratio:,.1f} times the pixels of "
            f"{_label(result, least)}, more than {rules.max_imbalance:g}",
        )
    ]


def _max_drift(result: ScanResult, rules: Rules, masks) -> list[Violation]:
    if rules.baseline is None or rules.max_drift is None:
        return []
    baseline = rules.baseline.counts
    differ = settings_differ(rules.baseline, result, "the baseline")
    if differ:
        raise InputError(f"this scan's {differ}; scan as the baseline was scanned")
    now, before = _shares(result.counts), _shares(baseline)
    violations = []
    for c in np.flatnonzero(np.abs(now - before) > rules.max_drift):
        violations.append(
            Violation(
                "max-drift",
                f"{_label(result, int(c))} share moved from {before[c]:.4%} to {now[c]:.4%}, "
                f"by {100 * abs(now[c] - before[c]):.4g} points, more than "
                f"{100 * rules.max_drift:.4g}",
            )
        )
    return violations


def _images(result: ScanResult, rules: Rules, masks: Sequence[MaskFile]) -> list[Violation]:
    if rules.images is None:
        return []
    found = find_masks([rules.images])
    refuse_twins(found, rules.pair_key)
    refuse_twins(masks, rules.pair_key)
    images = {sample_id(m.name, rules.pair_key, m.path): m for m in found}
    labels = {sample_id(m.name, rules.pair_key, m.path): m for m in masks}
    lonely_masks = [labels[k].path for k in sorted(labels.keys() - images.keys())]
    lonely_images = [images[k].path for k in sorted(images.keys() - labels.keys())]
    resized = []
    for key in sorted(labels.keys() & images.keys()):
        try:
            label_size, image_size = mask_size(labels[key].path), mask_size(images[key].path)
        except MaskError as error:
            resized.append((error.path, error.message))
            continue
        if label_size != image_size:
            resized.append(
                (labels[key].path, f"{shape_text(label_size)}, its image {shape_text(image_size)}")
            )
    violations = []
    for lonely, one, many in (
        (lonely_masks, "mask has no image", "masks have no image"),
        (lonely_images, "image has no mask", "images have no mask"),
    ):
        if lonely:
            examples = tuple((path, "alone") for path in lonely[:MAX_EXAMPLES])
            message = f"{len(lonely):,} {one if len(lonely) == 1 else many}"
            violations.append(Violation("images", message, examples))
    if resized:
        differ = "mask differs" if len(resized) == 1 else "masks differ"
        message = f"{len(resized):,} {differ} in size from their image"
        violations.append(Violation("images", message, tuple(resized[:MAX_EXAMPLES])))
    return violations


#: The rules, in the order they are reported.
RULES: dict[str, Callable[[ScanResult, Rules, Sequence[MaskFile]], list[Violation]]] = {
    "require-classes": _require_classes,
    "min-share": _min_share,
    "max-imbalance": _max_imbalance,
    "max-drift": _max_drift,
    "images": _images,
}


def _text(result: ScanResult, violations: list[Violation]) -> str:
    lines = [violation.line() for violation in violations]
    files = result.source.files
    if violations:
        noun = "violation" if len(violations) == 1 else "violations"
        lines.append(f"{len(violations)} {noun} in {files:,} {_masks(files)}")
    else:
        lines.append(f"ok: {files:,} {_masks(files)}, every rule holds")
    return "\n".join(lines) + "\n"


def _json(result: ScanResult, violations: list[Violation]) -> str:
    doc = {
        "ok": not violations,
        "files": result.source.files,
        "violations": [
            {
                "rule": v.rule,
                "message": v.message,
                "examples": [{"file": path, "detail": detail} for path, detail in v.examples],
            }
            for v in violations
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def _masks(count: int) -> str:
    return "mask" if count == 1 else "masks"


#: ``check --format``: how the violations are written out.
CHECK_FORMATS: dict[str, Callable[[ScanResult, list[Violation]], str]] = {
    "text": _text,
    "json": _json,
}
