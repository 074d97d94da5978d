"""Class-weight methods, each exactly as published, then normalisation, absent classes and clipping.

Notation (docs/design.md, "Weight methods"): n_c = ``pixels[c]``, N = the sum of n_c (ignored
pixels are not counted), p_c = n_c / N. Every formula is evaluated in float64 on the classes present
(n_c > 0); classes with no pixels are then filled by the ``missing`` policy, so no weight is
ever NaN or infinite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from .counting import ClassCounts
from .errors import InputError, WeightError

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

#: Default ENet constant c0 (Paszke et al. 2016, section 5.2).
ENET_C = 1.02


@dataclass(frozen=True)
class Params:
    """Parameters of the methods that take one.

    Parameters
    ----------
    enet_c : float
        ENet's c in w_c = 1 / ln(c + p_c) (Paszke et al. 2016) [default: 1.02].
    beta : float, optional
        The effective number's beta in [0, 1) (Cui et al. 2019); None means 1 - 1/N.
    """

    enet_c: float = ENET_C
    beta: float | None = None


# A method maps (counts, present, params) to float64 weights for the present classes and the
# parameters it used; entries of absent classes are overwritten by the missing policy.
Method = Callable[[ClassCounts, np.ndarray, Params], tuple[np.ndarray, dict]]


def frequency(counts: ClassCounts) -> np.ndarray:
    """Return p_c = n_c / N, the share of the counted pixels that each class holds."""
    return counts.pixels / np.float64(counts.counted)


def inverse(counts: ClassCounts, present: np.ndarray, params: Params) -> tuple[np.ndarray, dict]:
    """Return w_c = N / (K n_c), scikit-learn's ``compute_class_weight("balanced")``.

    K is the number of classes present, as in scikit-learn (which requires every class to
    occur), so that the sum of w_c * n_c is N.
    """
    n = counts.pixels.astype(np.float64)
    with np.errstate(divide="ignore"):
        return counts.counted / (np.count_nonzero(present) * n), {}


def median(counts: ClassCounts, present: np.ndarray, params: Params) -> tuple[np.ndarray, dict]:
    """Return median-frequency balancing weights, w_c = median(f) / f_c.

    f_c = n_c / ``image_pixels[c]``: the pixels of class c divided by the total pixels of the
    images in which c occurs, and the median is taken over the classes present. Eigen & Fergus,
    "Predicting Depth, Surface Normals and Semantic Labels with a Common Multi-Scale
    Convolutional Architecture", ICCV 2015; used by SegNet (Badrinarayanan et al., TPAMI 2017).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        freq = counts.pixels / counts.image_pixels.astype(np.float64)
        return _median(freq[present]) / freq, {}


def _median(values: np.ndarray) -> float:
    """Return the median, the mean of the middle two for an even count (as np.median, which
    imports numpy.ma, 12 ms of start-up, on first use)."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def enet(counts: ClassCounts, present: np.ndarray, params: Params) -> tuple[np.ndarray, dict]:
    """Return w_c = 1 / ln(c0 + p_c), c0 = 1.02 by default.

    Paszke et al., "ENet: A Deep Neural Network Architecture for Real-Time Semantic
    Segmentation", 2016, section 5.2. c0 bounds the weights to [1 / ln(1 + c0), 1 / ln c0).
    """
    if not 1 < params.enet_c < math.inf:  # (nan fails too)
        raise ValueError(
            f"enet_c must be a finite number above 1 (ln(c0 + p) > 0), not {params.enet_c}"
        )
    return 1.0 / np.log(params.enet_c + frequency(counts)), {"enet_c": params.enet_c}


def sqrt(counts: ClassCounts, present: np.ndarray, params: Params) -> tuple[np.ndarray, dict]:
    """Return w_c = 1 / sqrt(p_c), inverse square-root frequency."""
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(frequency(counts)), {}


def effective(counts: ClassCounts, present: np.ndarray, params: Params) -> tuple[np.ndarray, dict]:
    """Return w_c proportional to (1 - beta) / (1 - beta^n_c), scaled so that they sum to K.

    The inverse effective number of samples of Cui et al., "Class-Balanced Loss Based on
    Effective Number of Samples", CVPR 2019, normalised as the paper does (section 4: the
    weights of the K classes present sum to K), so that they are near 1 and not near 1/N.
    The paper's betas (0.9 to 0.9999) make every class of a pixel count (millions) weigh the
    same; the default beta = 1 - 1/N keeps the method between uniform and inverse frequency:
    w_c is about proportional to 1 / (1 - exp(-p_c)).
    """
    beta = 1.0 - 1.0 / counts.counted if params.beta is None else params.beta
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), not {beta}")
    # 1 - beta^n as -expm1(n ln beta): beta is close to 1, and 1 - beta^n would cancel.
    # (Absent classes give 0/0 here, which the missing policy then replaces.)
    with np.errstate(divide="ignore", invalid="ignore"):
        effective_number = -np.expm1(counts.pixels * np.log1p(beta - 1.0))
        weights = (1.0 - beta) / effective_number
    return weights * (np.count_nonzero(present) / weights[present].sum()), {"beta": beta}


def uniform(counts: ClassCounts, present: np.ndarray, params: Params) -> tuple[np.ndarray, dict]:
    """Return w_c = 1: the unweighted baseline."""
    return np.ones(counts.num_classes), {}


#: ``--method``: the weight methods, by name (each function's docstring has its formula).
METHODS: dict[str, Method] = {
    "inverse": inverse,
    "median": median,
    "enet": enet,
    "sqrt": sqrt,
    "effective": effective,
    "uniform": uniform,
}

#: Other names users know the methods by.
ALIASES = {"balanced": "inverse", "mfb": "median"}


def _scale_mean(w: np.ndarray, p: np.ndarray) -> float:
    return w.mean()


def _scale_sum(w: np.ndarray, p: np.ndarray) -> float:
    return w.sum()


def _scale_pixels(w: np.ndarray, p: np.ndarray) -> float:
    return (w * p).sum()


def _scale_max(w: np.ndarray, p: np.ndarray) -> float:
    return w.max()


def _scale_min(w: np.ndarray, p: np.ndarray) -> float:
    return w[w > 0].min()


#: ``--normalize``: the weights are divided by this function of (weights, p) so that it is 1.
#: ``pixels`` makes the average pixel weigh 1, so the loss keeps its unweighted scale; ``min``
#: looks only at non-zero weights (absent classes filled with zero stay zero).
NORMALIZATIONS: dict[str, Callable[[np.ndarray, np.ndarray], float] | None] = {
    "none": None,
    "mean": _scale_mean,
    "sum": _scale_sum,
    "pixels": _scale_pixels,
    "max": _scale_max,
    "min": _scale_min,
}


def _absent_error(present_weights: np.ndarray, absent: list[int]) -> float:
    raise WeightError(
        f"classes {absent} have no pixels (missing='error'); check the masks or num_classes"
    )


#: ``--missing``: the weight of a class with no pixels, from the weights of the present ones.
MISSING: dict[str, Callable[[np.ndarray, list[int]], float]] = {
    "zero": lambda present_weights, absent: 0.0,
    "max": lambda present_weights, absent: present_weights.max() if present_weights.size else 1.0,
    "one": lambda present_weights, absent: 1.0,
    "error": _absent_error,
}


@dataclass(frozen=True)
class Weights:
    """Derived class weights and how they were derived.

    Attributes
    ----------
    method, normalize, missing : str
        The method, normalisation and absent-class policy used (aliases resolved).
    params : dict
        The parameters the method used, e.g. ``{"beta": 0.99999}``.
    clip : tuple of (float or None, float or None)
        The bounds applied last.
    weights : numpy.ndarray
        float64, shape ``(num_classes,)``: the weight of class id ``c`` at index ``c``.
    pos_weight : list of float
        Negatives / positives for ``BCEWithLogitsLoss``: one entry for two classes, one per
        class otherwise (`pos_weight`).
    absent : list of int
        Class ids with no pixels, whose weight the ``missing`` policy set.

    Examples
    --------
    ``Weights`` converts to what a training script takes: ``weights.tolist()``,
    ``numpy.asarray(weights)`` (or ``weights.numpy()``), and ``weights.tensor()`` when PyTorch
    is installed.
    """

    method: str
    normalize: str
    missing: str
    params: dict
    clip: tuple[float | None, float | None]
    weights: np.ndarray
    pos_weight: list[float]
    absent: list[int]

    def __len__(self) -> int:
        return len(self.weights)

    def tolist(self) -> list[float]:
        """Return the weights as a list of Python floats, class id 0 first."""
        return [float(w) for w in self.weights]

    def numpy(self) -> np.ndarray:
        """Return a float64 copy of the weights, shape ``(num_classes,)``."""
        return self.weights.copy()

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        # numpy >= 2 passes copy=; the weights are frozen with the object, so hand out a copy.
        return np.array(self.weights, dtype=dtype)

    def tensor(self, dtype: Any = None, device: Any = None) -> Any:
        """Return the weights as a 1-D ``torch.Tensor`` (float32 unless ``dtype`` says).

        PyTorch is not a dependency: this imports it, and raises `ImportError` without it.
        For the exact argument each loss takes (``pos_weight`` shapes, ``ignore_index``), see
        `targets.TARGETS`.
        """
        return as_tensor(self.tolist(), dtype=dtype, device=device)


def compute_weights(
    counts: ClassCounts,
    method: str = "median",
    *,
    normalize: str = "none",
    missing: str = "zero",
    clip: tuple[float | None, float | None] = (None, None),
    params: Params | None = None,
) -> Weights:
    """Return the class weights of ``counts`` under ``method``.

    The steps, in order: the method's formula on the classes present; ``missing`` for the
    absent ones; ``normalize`` over the whole vector; ``clip`` last, so its bounds hold on
    the output (every non-zero weight; a class filled with zero stays zero).

    Parameters
    ----------
    counts : ClassCounts
        The sums of a scan (``scan(...).counts``) or of a loaded report.
    method : str, default "median"
        A key of `METHODS` (or `ALIASES`); each formula is in its function's docstring.
    normalize : str, default "none"
        A key of `NORMALIZATIONS`: what is made 1 (mean, sum, pixel-weighted mean, max, min).
    missing : str, default "zero"
        A key of `MISSING`: the weight of a class with no pixels.
    clip : (float or None, float or None)
        Bounds on every non-zero weight, applied last.
    params : Params, optional
        ``enet_c`` and ``beta``.

    Returns
    -------
    Weights
        float64 weights of shape ``(counts.num_classes,)``, never NaN or infinite.

    Raises
    ------
    ValueError
        An unknown ``method``, ``normalize`` or ``missing``; ``clip`` bounds that are not
        finite, or a lower bound above the upper one.
    InputError
        No pixel was counted at all.
    WeightError
        ``missing="error"`` and a class has no pixels.
    """
    method = ALIASES.get(method, method)
    for name, value, registry in (
        ("method", method, METHODS),
        ("normalize", normalize, NORMALIZATIONS),
        ("missing", missing, MISSING),
    ):
        if value not in registry:
            raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(registry)}")
    low, high = clip
    for bound in (low, high):
        if bound is not None and not (isinstance(bound, Real) and np.isfinite(bound)):
            raise ValueError(f"clip bounds must be finite numbers or None, not {bound!r}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip's lower bound {low} is above its upper bound {high}")
    if counts.counted == 0:
        raise InputError("no pixels were counted (every pixel ignored, or no masks)")
    params = params or Params()
    present = counts.present
    absent = np.flatnonzero(~present).tolist()

    weights, used = METHODS[method](counts, present, params)
    weights = np.asarray(weights, np.float64).copy()
    fill = MISSING[missing](weights[present], absent) if absent else 0.0
    weights[~present] = fill

    scale = NORMALIZATIONS[normalize]
    if scale is not None:
        weights /= scale(weights, frequency(counts))
    if low is not None or high is not None:
        filled = weights != 0  # a class filled with zero stays zero: it has nothing to weigh
        weights[filled] = np.clip(weights[filled], low, high)
    if not np.isfinite(weights).all():  # a bug, never the user's input
        raise AssertionError(f"non-finite weights {weights} from {method}")
    return Weights(
        method=method,
        normalize=normalize,
        missing=missing,
        params=used,
        clip=clip,
        weights=weights,
        pos_weight=pos_weight(counts, missing),
        absent=absent,
    )


def pos_weight(counts: ClassCounts, missing: str = "zero") -> list[float]:
    """Return negatives / positives: ``[n_0 / n_1]`` for two classes, else (N - n_c) / n_c per
    class.

    What PyTorch's ``BCEWithLogitsLoss(pos_weight=...)`` takes: one entry for a binary mask
    (one logit), one per class (one-vs-rest) for a multi-label head. Always a list, so its
    type does not depend on the class count. A class with no pixels is filled by the
    ``missing`` policy, as the weights are.
    """
    n = counts.pixels.astype(np.float64)
    if counts.num_classes == 2:
        negatives, positives = n[:1], n[1:]
    else:
        negatives, positives = counts.counted - n, n
    present = positives > 0
    ratio = np.zeros_like(positives)
    ratio[present] = negatives[present] / positives[present]
    absent = np.flatnonzero(~present).tolist()
    if absent:
        ratio[~present] = MISSING[missing](ratio[present], absent)
    return [float(r) for r in ratio]


def as_tensor(values: Any, dtype: Any = None, device: Any = None) -> Any:
    """Return ``values`` as a ``torch.Tensor`` (float32 by default), importing PyTorch here.

    Raises `ImportError` saying so when PyTorch is not installed: it is never a dependency.
    """
    try:
        import torch
    except ImportError:
        raise ImportError("tensor() needs PyTorch, which is not installed") from None
    return torch.tensor(values, dtype=dtype or torch.float32, device=device)
