"""Weights shaped for each consumer: exactly the arguments a loss or framework takes.

``--for TARGET`` (`TARGETS`) writes, instead of the report, a document holding only what one
consumer takes, in the shape it takes it, so that ``json.load`` gives the keyword arguments
(README, "Using the weights", has a recipe for each). Each target returns a `Shaped`: the
document, and notes for people (what the consumer needs that a document cannot say).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import WeightError
from .scan import ScanResult
from .weights import Weights

#: Mask2Former's weight of its "no object" class (``no_object_weight``, also called
#: ``eos_coef``): Cheng et al., "Masked-attention Mask Transformer", CVPR 2022, section 4.1.
NO_OBJECT_WEIGHT = 0.1


class Shaped(NamedTuple):
    """What one consumer takes (``doc``, keyword argument names as keys) and notes for people."""

    doc: dict[str, Any]
    notes: list[str]


def _one_ignore(result: ScanResult, target: str) -> int | None:
    """Return the one ignore value a loss can take, None if there is none."""
    ignored = result.spec.ignore_index
    if len(ignored) > 1:
        first, *others = ignored
        raise WeightError(
            f"{target} takes one ignore_index, and the scan ignores {list(ignored)}; "
            f"map the others onto one, e.g. mapping={{{others[0]}: {first}}}"
        )
    return ignored[0] if ignored else None


def torch_ce(result: ScanResult, weights: Weights) -> Shaped:
    """``torch.nn.CrossEntropyLoss(weight=, ignore_index=)``: C weights, and ``ignore_index``
    only when the scan ignored a value (the loss's default, -100, matches no label)."""
    doc: dict[str, Any] = {"weight": weights.tolist()}
    ignore = _one_ignore(result, "torch-ce")
    if ignore is not None:
        doc["ignore_index"] = ignore
    return Shaped(doc, [])


def torch_bce(result: ScanResult, weights: Weights) -> Shaped:
    """``torch.nn.BCEWithLogitsLoss(pos_weight=)``: shape ``[1]`` for one logit (two classes),
    ``(C, 1, 1)`` for C one-vs-rest logits of NCHW images, so it broadcasts over H and W.

    Always nested lists, so ``torch.tensor(doc["pos_weight"])`` has the right shape.
    """
    pos = weights.pos_weight
    notes = []
    if len(pos) == 1:
        shaped: list = pos
        if pos[0] < 1:
            notes.append(
                f"pos_weight {pos[0]:.4g} is below 1: the positive class (1) is the majority; "
                "is your foreground stored as 0?"
            )
    else:
        shaped = [[[p]] for p in pos]
        majority = [c for c, p in enumerate(pos) if p < 1]
        if majority:
            notes.append(
                f"pos_weight of class {majority[0]} is below 1: it covers most pixels, "
                "so its positives are down-weighted"
            )
    if result.spec.ignore_index:
        notes.append(
            "BCEWithLogitsLoss has no ignore_index: mask the ignored pixels out of the loss "
            "(reduction='none', then average over the kept pixels)"
        )
    return Shaped({"pos_weight": shaped}, notes)


def mmseg(result: ScanResult, weights: Weights) -> Shaped:
    """mmsegmentation's decode head: ``num_classes``, ``ignore_index`` and a
    ``CrossEntropyLoss`` with ``class_weight`` (num_classes entries) and ``avg_non_ignore``
    (the loss averaged over the pixels that are not ignored, as the weights were counted)."""
    head: dict[str, Any] = {"num_classes": len(weights)}
    ignore = _one_ignore(result, "mmseg")
    if ignore is not None:
        head["ignore_index"] = ignore
    head["loss_decode"] = {
        "type": "CrossEntropyLoss",
        "use_sigmoid": False,
        "loss_weight": 1.0,
        "class_weight": weights.tolist(),
        "avg_non_ignore": True,
    }
    notes = []
    k = len(weights)
    if ignore is not None and not 0 <= ignore < k:
        # mmseg 1.x gathers class_weight at every label, the ignored ones included.
        notes.append(
            f"mmsegmentation 1.x (1.2.2 included) raises IndexError when class_weight is set "
            f"and a label holds {ignore} (open-mmlab/mmsegmentation#3734): make {ignore} a "
            f"class of its own, mapping={{{ignore}: {k}}} ignore_index={k} num_classes={k + 1}, "
            f"and map it so in your data pipeline"
        )
    return Shaped({"decode_head": head}, notes)


def monai(result: ScanResult, weights: Weights) -> Shaped:
    """MONAI's ``DiceLoss(include_background=False, weight=)``: the weights of classes 1..C-1,
    background (class 0) dropped, as the loss drops its channel.

    (``DiceCELoss`` takes all C weights and drops the first for its Dice part itself.)
    DiceLoss has no ignore index: a label of an ignored value fails its one-hot encoding, so
    ``MaskedDiceLoss`` with ``mask=labels != ignore`` takes such labels (a note says so).
    """
    notes = ["for DiceCELoss pass all C weights (--for torch-ce): it drops class 0 for Dice itself"]
    ignored = result.spec.ignore_index
    if ignored:
        kept = (
            f"labels != {ignored[0]}"
            if len(ignored) == 1
            else f"~torch.isin(labels, torch.tensor({list(ignored)}))"
        )
        notes.append(f"DiceLoss has no ignore_index: use MaskedDiceLoss(...) with mask=({kept})")
    return Shaped({"include_background": False, "weight": weights.tolist()[1:]}, notes)


def torchgeo(result: ScanResult, weights: Weights) -> Shaped:
    """TorchGeo's ``SemanticSegmentationTask(num_classes=, class_weights=, ignore_index=)``.

    Its losses "ce" and "focal" take any ignore value; "jaccard" takes only a class id
    (0..num_classes-1, often 0 for "no data"), whose weight is then 0 (a note says so).
    """
    ignore = _one_ignore(result, "torchgeo")
    values = weights.tolist()
    doc: dict[str, Any] = {"num_classes": len(values)}
    notes = []
    if ignore is not None:
        if 0 <= ignore < len(values):
            values[ignore] = 0.0
        else:
            notes.append(
                f"torchgeo's loss='jaccard' takes only a class id in 0..{len(values) - 1} as "
                f"ignore_index, not {ignore}: for it, map {ignore} onto a class (e.g. "
                f"mapping={{{ignore}: 0}} with ignore_index=0)"
            )
        doc["ignore_index"] = ignore
    doc["class_weights"] = values
    return Shaped(doc, notes)


def keras(result: ScanResult, weights: Weights) -> Shaped:
    """Per-pixel sample weights for Keras (``class_weight=`` does not take 3-D targets):
    ``weights`` to gather with the labels, plus one last entry of 0 for ignored pixels, whose
    value ``ignore_index`` is remapped to ``ignored_as`` (C) before the gather. The loss needs
    a class id at those pixels too (any: their weight is 0)."""
    ignore = _one_ignore(result, "keras")
    values = weights.tolist()
    doc: dict[str, Any] = {"weights": values}
    if ignore is not None:
        doc = {"weights": [*values, 0.0], "ignore_index": ignore, "ignored_as": len(values)}
    return Shaped(doc, [])


def mask2former(result: ScanResult, weights: Weights) -> Shaped:
    """Mask2Former's classification weights: C + 1 entries, the last the "no object" class
    (``NO_OBJECT_WEIGHT``, the paper's and the reference configs' 0.1)."""
    return Shaped({"class_weight": [*weights.tolist(), NO_OBJECT_WEIGHT]}, [])


#: ``--for``: the consumer a document is shaped for.
TARGETS: dict[str, Callable[[ScanResult, Weights], Shaped]] = {
    "torch-ce": torch_ce,
    "torch-bce": torch_bce,
    "mmseg": mmseg,
    "monai": monai,
    "torchgeo": torchgeo,
    "keras": keras,
    "mask2former": mask2former,
}


def shape_for(target: str, result: ScanResult, weights: Weights) -> Shaped:
    """Return ``weights`` shaped for ``target``, a key of `TARGETS`.

    Parameters
    ----------
    target : str
        The consumer: ``"torch-ce"``, ``"torch-bce"``, ``"mmseg"``, ``"monai"``,
        ``"torchgeo"``, ``"keras"`` or ``"mask2former"`` (README, "Using the weights").
    result : ScanResult
        The scan the weights were derived from (its ignore values, its class count).
    weights : Weights
        The weights to shape (`compute_weights`).

    Returns
    -------
    Shaped
        ``doc``, the consumer's keyword arguments, and ``notes`` for people.

    Raises
    ------
    ValueError
        For an unknown target.
    WeightError
        When the scan's settings do not fit the consumer (two ignore values for a loss that
        takes one).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[target](result, weights)
