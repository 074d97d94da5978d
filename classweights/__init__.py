"""classweights: per-class pixel statistics and class weights from semantic-segmentation masks.

>>> from classweights import LabelSpec, scan, compute_weights
>>> result = scan(["masks/"], LabelSpec(ignore_index=(255,)))
>>> compute_weights(result.counts, "median").weights
"""

__version__ = "0.1.0"

from .counting import ClassCounts, LabelSpec
from .errors import ClassWeightsError, InputError, MaskError, ReportError, WeightError
from .masks import find_masks, read_histogram
from .report import FORMATS, document, load, merge
from .scan import ScanResult, Source, scan
from .weights import ALIASES, METHODS, MISSING, NORMALIZATIONS, Params, Weights, compute_weights

__all__ = [
    "ALIASES",
    "FORMATS",
    "METHODS",
    "MISSING",
    "NORMALIZATIONS",
    "ClassCounts",
    "ClassWeightsError",
    "InputError",
    "LabelSpec",
    "MaskError",
    "Params",
    "ReportError",
    "ScanResult",
    "Source",
    "WeightError",
    "Weights",
    "__version__",
    "compute_weights",
    "document",
    "find_masks",
    "load",
    "merge",
    "read_histogram",
    "scan",
]
