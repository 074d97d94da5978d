"""Per-image sampling weights for rebalancing samplers, from per-image rows.

Class weights reweigh pixels in the loss; samplers reweigh images, so that those holding rare
classes are seen more often. Each method gives one number per image, aligned with the rows
(`per_image.Table`), from the classes each image holds. Ignored pixels never count: rows hold
only counted classes.

Notation: n_ic = pixels of class c in image i; an image *holds* c when n_ic > 0; M = the
number of images (those holding no class included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import WeightError
from .per_image import Table
from .weights import ALIASES, compute_weights
from .weights import METHODS as CLASS_METHODS

#: Defaults: detectron2's LVIS configs (``REPEAT_THRESHOLD: 0.001``) and DAFormer's
#: (``class_temp=0.01``); DAFormer's ``min_pixels`` (3000 in its configs) defaults to 0 here,
#: "holds at least one pixel", which suits masks of any size.
THRESHOLD, TEMPERATURE, MIN_PIXELS = 0.001, 0.01, 0


@dataclass(frozen=True)
class Params:
    """Parameters of the methods: see each method's docstring."""

    threshold: float = THRESHOLD
    temperature: float = TEMPERATURE
    min_pixels: int = MIN_PIXELS
    class_method: str = "inverse"


def repeat_factor(table: Table, params: Params) -> tuple[np.ndarray, dict]:
    """Return each image's repeat factor, as LVIS and detectron2 define it.

    f_c = (images holding c) / M; r_c = max(1, sqrt(t / f_c)); an image's factor is the
    largest r_c over the classes it holds, 1 when it holds none. t = ``threshold``.

    Gupta et al., "LVIS: A Dataset for Large Vocabulary Instance Segmentation", CVPR 2019,
    appendix B.2; detectron2,
    ``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency``, whose lines this
    follows::

        category_freq[k] = v / num_images
        category_rep = {cat_id: max(1.0, math.sqrt(repeat_thresh / cat_freq)) ...}
        rep_factor = max({category_rep[cat_id] for cat_id in cat_ids}, default=1.0)
    """
    t = params.threshold
    if not 0 < t <= 1:  # a share of the images; past 1 every class repeats, and sqrt overflows
        raise ValueError(f"threshold must be in (0, 1], not {t}")
    images = np.bincount(table.label, minlength=table.num_classes)
    with np.errstate(divide="ignore"):
        freq = images / np.float64(len(table))
        class_factor = np.maximum(1.0, np.sqrt(t / freq))  # inf for classes no image holds
    factors = np.ones(len(table))  # detectron2's default=1.0 for an image holding no class
    np.maximum.at(factors, table.image, class_factor[table.label])
    return factors, {"threshold": t}


def rare_class(table: Table, params: Params) -> tuple[np.ndarray, dict]:
    """Return each image's probability under DAFormer's rare-class sampling (RCS).

    f_c = n_c / N, the pixel frequency over the classes present; P(c) = softmax((1 - f_c) / T)
    over those classes, T = ``temperature``. RCS draws a class c from P, then uniformly one of
    the images holding more than ``min_pixels`` pixels of c (there are m_c of them), so an
    image's probability is the sum over such classes c it holds of P(c) / m_c. The
    probabilities sum to 1.

    Hoyer et al., "DAFormer: Improving Network Architectures and Training Strategies for
    Domain-Adaptive Semantic Segmentation", CVPR 2022, section 3.4; its code,
    ``get_rcs_class_probs`` and ``UDADataset.get_rare_class_sample``, whose lines this follows::

        freq = freq / torch.sum(freq)
        freq = 1 - freq
        freq = torch.softmax(freq / temperature, dim=-1)
        ...
        if pixels > self.rcs_min_pixels:
            self.samples_with_class[c].append(file.split('/')[-1])
        ...
        c = np.random.choice(self.rcs_classes, p=self.rcs_classprob)
        f1 = np.random.choice(self.samples_with_class[c])

    Raises `WeightError` for a class that no image holds more than ``min_pixels`` pixels of
    (DAFormer asserts that each class has such an image).
    """
    temperature, min_pixels = params.temperature, params.min_pixels
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    if min_pixels < 0:
        raise ValueError(f"min_pixels must be at least 0, not {min_pixels}")
    pixels = np.bincount(table.label, weights=table.pixels, minlength=table.num_classes)
    present = pixels > 0
    if not present.any():
        raise WeightError("no pixels were counted (every pixel ignored), so no class to draw")
    freq = pixels[present] / pixels.sum()
    # softmax((1 - f) / T) = softmax((min f - f) / T): shifted before the division, the
    # logits are <= 0 and one is 0, so nothing overflows to inf - inf (NaN) however small T.
    with np.errstate(over="ignore", under="ignore"):
        logits = (freq.min() - freq) / temperature
        class_prob = np.zeros(len(pixels))
        class_prob[present] = np.exp(logits)
    class_prob /= class_prob.sum()
    eligible = table.pixels > min_pixels
    holders = np.bincount(table.label[eligible], minlength=len(pixels))
    lacking = np.flatnonzero(present & (holders == 0)).tolist()
    if lacking:
        raise WeightError(
            f"no image holds more than min_pixels {min_pixels} pixels of classes {lacking}, "
            "so rare-class sampling cannot draw them; lower min_pixels"
        )
    share = class_prob[table.label[eligible]] / holders[table.label[eligible]]
    probability = np.bincount(table.image[eligible], weights=share, minlength=len(table))
    return probability, {"temperature": temperature, "min_pixels": min_pixels}


def inverse(table: Table, params: Params) -> tuple[np.ndarray, dict]:
    """Return each image's mean pixel weight: the sum over c of n_ic w_c, over n_i.

    w_c are the class weights of ``class_method`` (`weights.METHODS`, computed on the rows'
    sums, absent classes weighing 0); an image with no counted pixel weighs 0. Given to
    PyTorch's ``WeightedRandomSampler``, images are drawn in proportion to how much their
    pixels would weigh in a class-weighted loss.
    """
    method = ALIASES.get(params.class_method, params.class_method)
    if method not in CLASS_METHODS:
        raise ValueError(f"unknown class_method {method!r}; choose from {', '.join(CLASS_METHODS)}")
    class_weights = compute_weights(table.counts(), method).weights
    weighted = np.bincount(
        table.image, weights=table.pixels * class_weights[table.label], minlength=len(table)
    )
    counted = np.bincount(table.image, weights=table.pixels, minlength=len(table))
    mean = np.zeros(len(table))
    np.divide(weighted, counted, out=mean, where=counted > 0)
    return mean, {"class_method": method}


#: ``--method``: sampling-weight methods, by name.
METHODS: dict[str, Callable[[Table, Params], tuple[np.ndarray, dict]]] = {
    "repeat-factor": repeat_factor,
    "rare-class": rare_class,
    "inverse": inverse,
}


@dataclass(frozen=True)
class ImageWeights:
    """Sampling weights, one per image, aligned with ``paths``."""

    method: str
    params: dict
    paths: tuple[str, ...]
    weights: np.ndarray

    def document(self) -> dict:
        """Return the JSON document: method, parameters, and paths and weights aligned."""
        return {
            "method": self.method,
            "params": self.params,
            "images": len(self.paths),
            "paths": list(self.paths),
            "weights": self.weights.tolist(),
        }


def image_weights(table: Table, method: str, params: Params | None = None) -> ImageWeights:
    """Return the sampling weight of every image of ``table`` under ``method`` (`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if not len(table):
        raise WeightError("no images to weigh")
    weights, used = METHODS[method](table, params or Params())
    weights = np.asarray(weights, np.float64)
    if not np.isfinite(weights).all():  # never silently wrong: NaN or inf is no weight
        bad = int(np.flatnonzero(~np.isfinite(weights))[0])
        raise WeightError(
            f"{method} gives {weights[bad]} for {table.paths[bad]} with {used}; "
            "the parameters are out of the range the formula can use"
        )
    return ImageWeights(method, used, table.paths, weights)
