"""Each --for recipe against the real framework, where it is installed (never a dependency:
these tests are skipped without it, as in CI).

For each consumer: ``classweights scan --for X`` on a hand-made mask, the loss built exactly
as the README ("Using the weights") says, one forward pass on fixed logits, and the value
checked against the loss computed by hand in numpy from its published definition.
"""

from __future__ import annotations

import json
import os
import sys
import types
import warnings

import numpy as np
import pytest

from helpers import run, run_json, save_mask

#: 4x5 pixels: 8 of class 0, 4 of class 1, 2 of class 2, 2 of class 3, 4 of 255 (ignored).
#: N = 16 and K = 4, so the inverse weights N / (K n_c) are [0.5, 1, 2, 2].
MASK = [
    [0, 0, 0, 0, 1],
    [0, 0, 0, 0, 1],
    [1, 1, 2, 2, 255],
    [3, 3, 255, 255, 255],
]
WEIGHTS = [0.5, 1.0, 2.0, 2.0]


@pytest.fixture
def masks(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK)
    return tmp_path / "m"


def shaped(masks, target, *options):
    """The document ``scan --for target`` writes (inverse weights, 255 ignored)."""
    return run_json(
        "scan", masks, "--method", "inverse", "--ignore-index", "255", "--for", target, "-q",
        *options,
    )  # fmt: skip


def logits(channels_last: bool = False) -> np.ndarray:
    """Fixed logits (1, C, H, W), or (1, H, W, C) for Keras."""
    x = np.random.default_rng(13).normal(size=(1, 4, 4, 5)).astype(np.float32)
    return np.moveaxis(x, 1, -1) if channels_last else x


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def labels() -> np.ndarray:
    return np.array([MASK])  # (1, H, W)


def weighted_ce_by_hand(weight: list[float], ignore: int, y: np.ndarray | None = None) -> float:
    """PyTorch's CrossEntropyLoss, reduction 'mean': sum w_y * -log p_y / sum w_y over the
    pixels that are not ignored (of ``y``, by default `labels`)."""
    y = labels() if y is None else y
    kept = y != ignore
    logp = log_softmax(logits(), axis=1)[0]  # (C, H, W)
    nll = -np.take_along_axis(logp, np.where(kept, y, 0), axis=0)[0]
    w = np.asarray(weight)[np.where(kept, y, 0)[0]] * kept[0]
    return float((w * nll).sum() / w.sum())


def test_torch_ce(masks):
    torch = pytest.importorskip("torch")
    args = shaped(masks, "torch-ce")
    assert args == {"weight": WEIGHTS, "ignore_index": 255}
    # The README's recipe, as written.
    loss = torch.nn.CrossEntropyLoss(
        weight=torch.tensor(args["weight"]), ignore_index=args.get("ignore_index", -100)
    )
    value = loss(torch.from_numpy(logits()), torch.from_numpy(labels()))
    assert float(value) == pytest.approx(weighted_ce_by_hand(WEIGHTS, 255), rel=1e-5)


def bce_by_hand(x: np.ndarray, y: np.ndarray, pos_weight: np.ndarray) -> float:
    """BCEWithLogitsLoss: mean of -(p * y * log s(x) + (1 - y) * log(1 - s(x)))."""
    x = x.astype(np.float64)
    log_s, log_not_s = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    return float(np.mean(-(pos_weight * y * log_s + (1 - y) * log_not_s)))


def test_torch_bce_one_logit(tmp_path):
    torch = pytest.importorskip("torch")
    binary = [[0, 0, 0, 1], [0, 1, 0, 0]]  # 6 negatives, 2 positives: pos_weight 3
    save_mask(tmp_path / "b" / "a.png", binary)
    args = run_json("scan", tmp_path / "b", "--num-classes", "2", "--for", "torch-bce", "-q")
    assert args == {"pos_weight": [3.0]}
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(args["pos_weight"]))
    x = logits()[:, :1, :2, :4]  # (N, 1, H, W): one logit
    y = np.array(binary, np.float32)[None, None]
    value = loss(torch.from_numpy(x), torch.from_numpy(y))
    assert float(value) == pytest.approx(bce_by_hand(x, y, np.array(3.0)), rel=1e-5)


def test_torch_bce_one_vs_rest_nchw(masks):
    torch = pytest.importorskip("torch")
    args = shaped(masks, "torch-bce")
    # negatives / positives of each class among the 16 counted: 8/8, 12/4, 14/2, 14/2
    assert args == {"pos_weight": [[[1.0]], [[3.0]], [[7.0]], [[7.0]]]}
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(args["pos_weight"]))
    y = (labels()[:, None] == np.arange(4)[None, :, None, None]).astype(np.float32)  # one-hot
    value = loss(torch.from_numpy(logits()), torch.from_numpy(y))
    by_hand = bce_by_hand(logits(), y, np.array([1.0, 3.0, 7.0, 7.0])[None, :, None, None])
    assert float(value) == pytest.approx(by_hand, rel=1e-5)


def dice_by_hand(weight: list[float], kept: np.ndarray) -> float:
    """MONAI's Dice loss over classes 1..C-1 (include_background=False), softmax of the
    logits, smooth_nr = smooth_dr = 1e-5, each class's loss times its weight, then the mean;
    pixels outside ``kept`` count for nothing."""
    p = np.exp(log_softmax(logits(), axis=1))[0] * kept  # (C, H, W)
    g = (np.where(kept, labels()[0], 0)[None] == np.arange(4)[:, None, None]) * kept
    losses = []
    for c in (1, 2, 3):
        inter, denom = (p[c] * g[c]).sum(), p[c].sum() + g[c].sum()
        losses.append(1 - (2 * inter + 1e-5) / (denom + 1e-5))
    return float(np.mean(np.array(weight) * losses))


def test_monai_dice(masks):
    torch = pytest.importorskip("torch")
    monai_losses = pytest.importorskip("monai.losses")
    args = shaped(masks, "monai")
    assert args == {"include_background": False, "weight": WEIGHTS[1:]}
    # The README's recipe: labels holding an ignored value go through MaskedDiceLoss.
    y = torch.from_numpy(labels())[:, None]  # (N, 1, H, W)
    loss = monai_losses.MaskedDiceLoss(
        to_onehot_y=True, softmax=True, include_background=args["include_background"],
        weight=torch.tensor(args["weight"]),
    )  # fmt: skip
    value = loss(torch.from_numpy(logits()), y, mask=y != 255)
    assert float(value) == pytest.approx(dice_by_hand(WEIGHTS[1:], MASK_KEPT), rel=1e-5)
    # Without ignored pixels, DiceLoss itself, as the README writes it.
    clean = torch.where(y == 255, 0, y)
    dice = monai_losses.DiceLoss(
        to_onehot_y=True, softmax=True, include_background=False,
        weight=torch.tensor(args["weight"]),
    )  # fmt: skip
    expected = dice_by_hand(WEIGHTS[1:], np.ones_like(MASK_KEPT))
    assert float(dice(torch.from_numpy(logits()), clean)) == pytest.approx(expected, rel=1e-5)


MASK_KEPT = np.array(MASK) != 255


def test_monai_dice_ce_takes_all_c_weights(masks):
    torch = pytest.importorskip("torch")
    monai_losses = pytest.importorskip("monai.losses")
    args = shaped(masks, "torch-ce")
    y = torch.where(torch.from_numpy(labels()) == 255, 0, torch.from_numpy(labels()))[:, None]
    loss = monai_losses.DiceCELoss(
        to_onehot_y=True, softmax=True, include_background=False,
        weight=torch.tensor(args["weight"]),
    )  # fmt: skip
    value = loss(torch.from_numpy(logits()), y)
    # Dice over classes 1..3 with weights 1..3 of the 4, plus CE with all 4 (no pixel ignored).
    dice = dice_by_hand(WEIGHTS[1:], np.ones_like(MASK_KEPT))
    by_hand = dice + weighted_ce_by_hand(WEIGHTS, -100, y[:, 0].numpy())
    assert float(value) == pytest.approx(by_hand, rel=1e-5)


def test_torchgeo_task(masks):
    torch = pytest.importorskip("torch")
    trainers = pytest.importorskip("torchgeo.trainers")
    args = shaped(masks, "torchgeo")
    assert args == {"num_classes": 4, "ignore_index": 255, "class_weights": WEIGHTS}
    # The README's recipe: the document's keys are the task's arguments.
    task = trainers.SemanticSegmentationTask(
        model="unet", backbone="resnet18", weights=None, in_channels=3, loss="ce", **args
    )
    value = task.criterion(torch.from_numpy(logits()), torch.from_numpy(labels()))
    assert float(value) == pytest.approx(weighted_ce_by_hand(WEIGHTS, 255), rel=1e-5)
    # A class id as the ignore index ("no data" = 0): its weight is 0, the loss skips it.
    zero = run_json(
        "scan", masks, "--method", "inverse", "--ignore-index", "0", "--map", "255:0",
        "--for", "torchgeo", "-q",
    )  # fmt: skip
    assert zero["ignore_index"] == 0 and zero["class_weights"][0] == 0
    task = trainers.SemanticSegmentationTask(
        model="unet", backbone="resnet18", weights=None, in_channels=3, loss="jaccard", **zero
    )
    remapped = np.where(labels() == 255, 0, labels())
    assert torch.isfinite(task.criterion(torch.from_numpy(logits()), torch.from_numpy(remapped)))


def test_keras_sample_weights(masks, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    args = shaped(masks, "keras")
    assert args == {"weights": [*WEIGHTS, 0.0], "ignore_index": 255, "ignored_as": 4}
    # The README's recipe, as written.
    y = labels()
    ignored = y == args["ignore_index"]
    sample_weight = np.take(args["weights"], np.where(ignored, args["ignored_as"], y))
    y = np.where(ignored, 0, y)  # a class the loss takes; its weight here is 0
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    value = loss(y, logits(channels_last=True), sample_weight=sample_weight)
    # Keras' default reduction: the weighted sum over all pixels, ignored ones included.
    logp = log_softmax(logits(channels_last=True), axis=-1)
    nll = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    assert float(value) == pytest.approx((sample_weight * nll).sum() / y.size, rel=1e-5)


def mmseg_cross_entropy(monkeypatch):
    """mmsegmentation's CrossEntropyLoss class. With mmcv-lite (no compiled ops, which only
    other losses import) its module is loaded on its own, past ``mmseg.models``' imports."""
    with warnings.catch_warnings():  # its imports use torch.jit.script, deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        mmseg = pytest.importorskip("mmseg")
        try:
            from mmseg.models.losses import CrossEntropyLoss
        except ImportError:
            for name in ("mmseg.models", "mmseg.models.losses"):
                package = types.ModuleType(name)
                package.__path__ = [os.path.join(mmseg.__path__[0], *name.split(".")[1:])]
                monkeypatch.setitem(sys.modules, name, package)
            from mmseg.models.losses.cross_entropy_loss import CrossEntropyLoss
    return CrossEntropyLoss


def test_mmseg_loss(masks, monkeypatch):
    torch = pytest.importorskip("torch")
    cross_entropy = mmseg_cross_entropy(monkeypatch)
    # mmseg 1.x fails with class_weight when a label holds a value out of 0..C-1 (the usual
    # 255), so the ignore value becomes a class id of its own, C, with weight 0 (the target
    # says so in a note).
    args = run_json(
        "scan", masks, "--method", "inverse", "--map", "255:4", "--ignore-index", "4",
        "--num-classes", "5", "--for", "mmseg", "-q",
    )  # fmt: skip
    head = args["decode_head"]
    assert head["num_classes"] == 5 and head["ignore_index"] == 4
    config = dict(head["loss_decode"])
    assert config.pop("type") == "CrossEntropyLoss" and config["class_weight"] == [*WEIGHTS, 0]
    loss = cross_entropy(**config)
    x = np.random.default_rng(5).normal(size=(1, 5, 4, 5)).astype(np.float32)
    y = np.where(labels() == 255, 4, labels())
    value = loss(torch.from_numpy(x), torch.from_numpy(y), ignore_index=head["ignore_index"])
    # avg_non_ignore with class weights: the weighted sum over the pixels not ignored divided
    # by the sum of their weights, as PyTorch's CrossEntropyLoss.
    kept = y != 4
    nll = -np.take_along_axis(log_softmax(x, axis=1)[0], y, axis=0)[0]
    w = np.asarray([*WEIGHTS, 0])[y[0]] * kept[0]
    assert float(value) == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-5)


def test_mmseg_notes_its_class_weight_bug(masks):
    result = run("scan", masks, "--ignore-index", "255", "--for", "mmseg")
    assert result.exit_code == 0
    text = " ".join(result.stderr.split())
    assert "--map 255:4 --ignore-index 4 --num-classes 5" in text


def test_mask2former_no_object_last(masks):
    torch = pytest.importorskip("torch")
    pytest.importorskip("scipy")  # the loss's Hungarian matcher needs it
    m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    transformers = pytest.importorskip("transformers")
    args = shaped(masks, "mask2former")
    assert args == {"class_weight": [*WEIGHTS, 0.1]}
    # The README's recipe: the loss's empty_weight buffer (C + 1 entries, the last "no
    # object"), set after the model is built or loaded (its initialisation resets it).
    loss = m2f.Mask2FormerLoss(transformers.Mask2FormerConfig(num_labels=4), weight_dict={})
    with torch.no_grad():
        loss.empty_weight.copy_(torch.tensor(args["class_weight"]))
    # 3 queries: query 0 matched to class 2, query 2 to class 0, query 1 to nothing.
    x = np.random.default_rng(3).normal(size=(1, 3, 5)).astype(np.float32)
    indices = [(torch.tensor([0, 2]), torch.tensor([0, 1]))]
    value = loss.loss_labels(torch.from_numpy(x), [torch.tensor([2, 0])], indices)
    targets = np.array([2, 4, 0])  # 4: "no object"
    nll = -log_softmax(x[0], axis=-1)[np.arange(3), targets]
    w = np.array([*WEIGHTS, 0.1])[targets]
    by_hand = float((w * nll).sum() / w.sum())
    assert float(value["loss_cross_entropy"]) == pytest.approx(by_hand, rel=1e-5)


def test_the_documents_are_json(masks):
    for target in ("torch-ce", "torch-bce", "monai", "torchgeo", "keras", "mmseg", "mask2former"):
        result = run("scan", masks, "--ignore-index", "255", "--for", target, "-q")
        assert result.exit_code == 0 and isinstance(json.loads(result.stdout), dict)
