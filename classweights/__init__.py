"""classweights: per-class pixel statistics and class weights from semantic-segmentation masks.

One call from masks to weights (README, "From Python")::

    import classweights

    weights = classweights.class_weights("masks/", preset="voc", method="median")
    weights.tolist()  # or numpy.asarray(weights), weights.tensor()

``classweights.scan`` is the scan driver *module* (``classweights.scan.Workers``,
``import classweights.scan as s``, ``mock.patch("classweights.scan....")`` all reach it), and
it can be called as its `scan.scan` function: ``classweights.scan("masks/", spec)``. A plain
``from .scan import scan`` would have bound the function over the module's name on the
package, hiding the module; a callable module keeps both without renaming either.
"""

from __future__ import annotations

import types
from typing import Any

from . import scan
from ._version import __version__
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
from .weights import ALIASES, METHODS, MISSING, NORMALIZATIONS, Params, Weights, compute_weights


class _CallableModule(types.ModuleType):
    """A module that calls its function of the same name: ``classweights.scan(...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


scan.__class__ = _CallableModule

__all__ = [
    "ALIASES",
    "FORMATS",
    "METHODS",
    "MISSING",
    "NORMALIZATIONS",
    "PRESETS",
    "ClassCounts",
    "ClassWeightsError",
    "ClassWeightsWarning",
    "InputError",
    "LabelSpec",
    "MaskError",
    "Params",
    "Preset",
    "ReportError",
    "ScanResult",
    "Source",
    "WeightError",
    "Weights",
    "__version__",
    "class_weights",
    "compute_weights",
    "count",
    "document",
    "find_masks",
    "find_preset",
    "load",
    "merge",
    "read_histogram",
    "scan",
]
