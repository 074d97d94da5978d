"""classweights: per-class pixel statistics and class weights from semantic-segmentation masks.

One call from masks to weights (README, "From Python")::

    import classweights

    weights = classweights.class_weights("masks/", preset="voc", method="median")
    weights.tolist()  # or numpy.asarray(weights), weights.tensor()

``classweights.scan`` is the scan driver *module*, which can also be called as its `scan`
function: ``classweights.scan("masks/", spec)`` (see ``_callable.py``).

The names below are imported when first used, so that ``classweights --version`` and
``--help`` do not pay for numpy and the decoders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import scan
    from .api import class_weights, count
    from .counting import ClassCounts, LabelSpec
    from .errors import (
        ClassWeightsError,
        ClassWeightsWarning,
        InputError,
        MaskError,
        ReportError,
        WeightError,
    )
    from .masks import find_masks, read_histogram
    from .presets import PRESETS, Preset, find_preset
    from .report import FORMATS, document, load, merge
    from .scan import ScanResult, Source
    from .targets import TARGETS, shape_for
    from .weights import (
        ALIASES,
        METHODS,
        MISSING,
        NORMALIZATIONS,
        Params,
        Weights,
        compute_weights,
    )

#: Where each public name lives.
_HOMES = {
    "class_weights": "api",
    "count": "api",
    "ClassCounts": "counting",
    "LabelSpec": "counting",
    "ClassWeightsError": "errors",
    "ClassWeightsWarning": "errors",
    "InputError": "errors",
    "MaskError": "errors",
    "ReportError": "errors",
    "WeightError": "errors",
    "find_masks": "masks",
    "read_histogram": "masks",
    "PRESETS": "presets",
    "Preset": "presets",
    "find_preset": "presets",
    "FORMATS": "report",
    "document": "report",
    "load": "report",
    "merge": "report",
    "ScanResult": "scan",
    "Source": "scan",
    "TARGETS": "targets",
    "shape_for": "targets",
    "ALIASES": "weights",
    "METHODS": "weights",
    "MISSING": "weights",
    "NORMALIZATIONS": "weights",
    "Params": "weights",
    "Weights": "weights",
    "compute_weights": "weights",
}


def __getattr__(name: str) -> Any:
    if name == "scan":
        return importlib.import_module(".scan", __name__)
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # once: the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = sorted([*_HOMES, "scan", "__version__"])
