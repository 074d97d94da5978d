"""--for TARGET: each consumer gets exactly what it takes, in its shape; checked by value and
shape here, and against the framework itself where it is installed (never a dependency)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from classweights.targets import NO_OBJECT_WEIGHT, TARGETS
from helpers import MASK_A, MASK_B, REPO, assert_one_line_error, run, run_json, save_mask


@pytest.fixture
def tiny(tmp_path):
    # pixels [20, 8, 2] of classes 0, 1, 2; 2 pixels of 255 (void)
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    save_mask(tmp_path / "m" / "b.png", MASK_B)
    return tmp_path / "m"


def weights_of(tiny, *options):
    return run_json("scan", tiny, "-q", *options)


def target(tiny, name, *options):
    result = run("scan", tiny, "--for", name, *options)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_every_target_is_a_choice_of_scan_weights_and_merge(tiny, tmp_path):
    # 0 ignored and 255 mapped onto it: a setting every target takes (torchgeo's is a class)
    run("scan", tiny, "--ignore-index", "0", "--map", "255:0", "-q", "-o", tmp_path / "r.json")
    for name in TARGETS:
        for args in (("weights", tmp_path / "r.json"), ("merge", tmp_path / "r.json")):
            result = run(*args, "--for", name, "-q")
            assert result.exit_code == 0, (name, args, result.stderr)
            assert "classes" not in json.loads(result.stdout)  # not the report


def test_torch_ce_has_c_weights_and_ignore_index_only_when_there_is_one(tiny):
    report = weights_of(tiny, "--ignore-index", "255")
    doc, _ = target(tiny, "torch-ce", "--ignore-index", "255", "-q")
    assert doc == {"weight": report["weights"], "ignore_index": 255}
    doc, _ = target(tiny, "torch-ce", "--map", "255:2", "-q")
    assert list(doc) == ["weight"] and len(doc["weight"]) == 3


def test_torch_ce_refuses_two_ignore_values(tiny):
    result = run("scan", tiny, "--ignore-index", "255", "--ignore-index", "2", "--for", "torch-ce")
    assert_one_line_error(result, 3, "torch-ce takes one --ignore-index", "--map 255:2")


def test_torch_bce_shape_1_for_one_logit_and_c11_for_nchw(tiny, tmp_path):
    save_mask(tmp_path / "bin" / "m.png", [[0, 0, 0, 1]])
    doc, stderr = target(tmp_path / "bin", "torch-bce")
    assert doc == {"pos_weight": [3.0]}  # shape [1], negatives / positives
    assert "below 1" not in stderr
    doc, stderr = target(tiny, "torch-bce", "--ignore-index", "255")
    pos = np.array(doc["pos_weight"])
    assert pos.shape == (3, 1, 1)
    assert pos.ravel().tolist() == pytest.approx([10 / 20, 22 / 8, 28 / 2], rel=1e-5)
    assert "no ignore_index" not in stderr and "BCEWithLogitsLoss has no --ignore-index" in stderr


def test_torch_bce_hints_when_the_positive_class_is_the_majority(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 1, 1, 1]])
    doc, stderr = target(tmp_path, "torch-bce")
    assert doc == {"pos_weight": [pytest.approx(1 / 3, rel=1e-5)]}
    assert "the positive class (1) is the majority; is your foreground stored as 0?" in stderr


def test_mmseg_decode_head(tiny):
    report = weights_of(tiny, "--ignore-index", "255")
    doc, _ = target(tiny, "mmseg", "--ignore-index", "255", "-q")
    head = doc["decode_head"]
    assert head["num_classes"] == 3 and head["ignore_index"] == 255
    loss = head["loss_decode"]
    assert loss["type"] == "CrossEntropyLoss" and loss["avg_non_ignore"] is True
    assert loss["class_weight"] == report["weights"]


def test_monai_drops_background(tiny):
    report = weights_of(tiny, "--ignore-index", "255")
    doc, _ = target(tiny, "monai", "--ignore-index", "255", "-q")
    assert doc == {"include_background": False, "weight": report["weights"][1:]}


def test_torchgeo_ignore_index_as_a_class_has_weight_0(tiny):
    doc, _ = target(tiny, "torchgeo", "--ignore-index", "0", "--map", "255:0", "-q")
    assert doc["num_classes"] == 3 and doc["ignore_index"] == 0
    assert doc["class_weights"][0] == 0 and all(w > 0 for w in doc["class_weights"][1:])
    # Its "ce" and "focal" losses take 255 too; "jaccard" does not, which a note says.
    report = weights_of(tiny, "--ignore-index", "255")
    doc, err = target(tiny, "torchgeo", "--ignore-index", "255")
    assert doc == {"num_classes": 3, "ignore_index": 255, "class_weights": report["weights"]}
    assert "loss='jaccard' takes only a class id in 0..2" in " ".join(err.split())


def test_monai_and_mmseg_say_what_their_losses_need(tiny):
    _, err = target(tiny, "monai", "--ignore-index", "255")
    assert "MaskedDiceLoss(...) with mask=(labels != 255)" in " ".join(err.split())
    _, err = target(tiny, "mmseg", "--ignore-index", "255")
    assert "--map 255:3 --ignore-index 3 --num-classes 4" in " ".join(err.split())
    _, err = target(tiny, "mmseg", "--ignore-index", "0", "--map", "255:0")
    assert "IndexError" not in err  # the ignore value is a class id already


def test_keras_remaps_the_ignore_value_before_the_gather(tiny):
    report = weights_of(tiny, "--ignore-index", "255")
    doc, _ = target(tiny, "keras", "--ignore-index", "255", "-q")
    assert doc == {"weights": [*report["weights"], 0.0], "ignore_index": 255, "ignored_as": 3}
    labels = np.array(MASK_B)
    labels = np.where(labels == doc["ignore_index"], doc["ignored_as"], labels)
    per_pixel = np.take(doc["weights"], labels)
    assert per_pixel[3, 3] == 0 and per_pixel[0, 0] == report["weights"][0]


def test_mask2former_has_c_plus_one_entries_the_last_no_object(tiny):
    report = weights_of(tiny, "--ignore-index", "255")
    doc, _ = target(tiny, "mask2former", "--ignore-index", "255", "-q")
    assert doc == {"class_weight": [*report["weights"], NO_OBJECT_WEIGHT]}


def test_for_writes_json_or_yaml_only(tiny):
    result = run("scan", tiny, "--ignore-index", "255", "--for", "torch-ce", "--format", "csv")
    assert result.exit_code == 2 and "--for torch-ce writes json or yaml" in result.stderr
    result = run("scan", tiny, "--ignore-index", "255", "--for", "torch-ce", "--format", "yaml")
    assert result.stdout.startswith("weight: [")


def test_the_effective_method_is_normalised_as_the_paper_does(tiny):
    doc = weights_of(tiny, "--ignore-index", "255", "--method", "effective")
    assert sum(doc["weights"]) == pytest.approx(3, rel=1e-5)  # K weights sum to K
    assert doc["weights"][0] < doc["weights"][1] < doc["weights"][2]


def readme_recipes():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using the weights\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\$ classweights (.*)$", section, re.M)
    return commands, re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def recipes_dir(tmp_path, monkeypatch):
    shutil.copytree(REPO / "sample_masks", tmp_path / "sample_masks")
    save_mask(tmp_path / "membranes" / "0.png", [[0, 0, 0, 0], [0, 0, 0, 0], [255] * 4, [0] * 4])
    monkeypatch.chdir(tmp_path)
    commands, blocks = readme_recipes()
    for command in commands:
        result = run(*command.split())
        assert result.exit_code == 0, (command, result.stderr)
    return blocks


def test_readme_recipes_without_frameworks(recipes_dir):
    keras_block = next(b for b in recipes_dir if "sample_weight" in b)
    expected = [line[2:] for line in keras_block.splitlines() if line.startswith("# ")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(keras_block, {})
    assert out.getvalue().splitlines() == expected


def test_readme_recipes_against_pytorch_and_monai(recipes_dir):
    """Runs where PyTorch (and MONAI) are installed: the losses built from the documents
    accept logits and labels of the documented shapes."""
    torch = pytest.importorskip("torch")
    ce, bce, mon = (json.loads(Path(f"{n}.json").read_text()) for n in ("ce", "bce", "monai"))
    losses = {}
    namespace: dict = {}  # the blocks run in order, as a reader would run them
    for block in recipes_dir:
        if "monai" in block and not _importable("monai"):
            continue
        exec(block, namespace)
        losses[type(namespace.get("loss")).__name__] = namespace.get("loss")
    # 4 classes, 255 ignored: logits (N, C, H, W), labels (N, H, W) with some 255.
    logits, labels = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    labels[0, 0, :] = ce["ignore_index"]
    assert torch.isfinite(losses["CrossEntropyLoss"](logits, labels))
    # Binary: one logit, pos_weight of shape [1].
    assert torch.tensor(bce["pos_weight"]).shape == (1,)
    target = torch.rand(2, 1, 8, 8).round()
    assert torch.isfinite(losses["BCEWithLogitsLoss"](torch.randn(2, 1, 8, 8), target))
    # Multi-label NCHW: pos_weight (C, 1, 1) broadcasts over H and W.
    result = run("scan", "sample_masks", "--ignore-index", "255", "--for", "torch-bce", "-q")
    multi = torch.tensor(json.loads(result.stdout)["pos_weight"])
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=multi)
    assert torch.isfinite(loss(torch.randn(2, 4, 8, 8), torch.rand(2, 4, 8, 8).round()))
    if "DiceLoss" in losses:  # MONAI: C - 1 weights with include_background=False
        assert len(mon["weight"]) == 3
        dice = losses["DiceLoss"](torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 1, 8, 8)))
        assert torch.isfinite(dice)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
