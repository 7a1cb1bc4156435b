"""Class names and colour palettes of the datasets DeepLab v2 was released for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # numpy is imported by the functions: the class names load without it
    import numpy as np

__all__ = [
    "CITYSCAPES13_CLASSES",
    "CITYSCAPES16_CLASSES",
    "CITYSCAPES_CLASSES",
    "CLASS_LISTS",
    "COCOSTUFF_CLASSES",
    "COCO_CLASSES",
    "SCORED_WITHIN",
    "VOC_CLASSES",
    "overlay",
    "resolve_class_names",
    "scored_within",
    "voc_palette",
]

#: PASCAL VOC 2012: background + 20 object classes (label values 0..20; 255 = ignore).
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: COCO-Stuff (164k/10k): 91 thing ids (80 used) + 91 stuff classes. Model output ``i`` is the
#: dataset's label ``i + 1`` (label 0, "unlabeled", is ignored), as in the PyTorch port.
COCOSTUFF_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror",
    "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "blender",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip


#: MS-COCO 2014 as weakly supervised segmentation uses it: background + the 80 thing classes, in
#: the order of their COCO category ids (1..90 without the 10 unused ids), label values 0..80
#: (255 = ignore), as in the COCO setups of IRN-based methods (RIB, CLIMS: 81 classes).
COCO_CLASSES: tuple[str, ...] = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


#: Cityscapes' 19 evaluation classes (train ids 0..18), as cityscapesScripts' ``labels.py``; the
#: GTA5 -> Cityscapes benchmark scores them.
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

#: The 16 classes Cityscapes shares with SYNTHIA (no terrain, truck, train), in the order of
#: the 19: the SYNTHIA -> Cityscapes benchmark (DADA's ``info16class.json``, valeoai/DADA
#: ``dada/dataset/cityscapes_list/info16class.json`` at d657af66ee3e18a052f3fba6c34707e46ed6ea96).
CITYSCAPES16_CLASSES: tuple[str, ...] = tuple(
    name for name in CITYSCAPES_CLASSES if name not in ("terrain", "truck", "train")
)

#: The 13 of the 16 without wall, fence and pole: the SYNTHIA -> Cityscapes benchmark's second
#: score (ADVENT's "mIoU*"). Scored within the 16 (:data:`SCORED_WITHIN`).
CITYSCAPES13_CLASSES: tuple[str, ...] = tuple(
    name for name in CITYSCAPES16_CLASSES if name not in ("wall", "fence", "pole")
)

#: Class lists that are scored as part of a larger one: the list -> the classes of the
#: confusion matrix whose per-class IoUs its means average. The SYNTHIA -> Cityscapes papers
#: (ADVENT, Vu et al. CVPR 2019, table 2, "mIoU*"; the methods after it) run the 16-class
#: network on the 16-class labels and average its IoUs over 13 classes: wall, fence and pole are
#: left out of the mean, not out of the labels (a wall pixel predicted as road still counts
#: against road).
SCORED_WITHIN: dict[tuple[str, ...], tuple[str, ...]] = {
    CITYSCAPES13_CLASSES: CITYSCAPES16_CLASSES,
}


def scored_within(names: Sequence[str]) -> tuple[tuple[str, ...], Optional[tuple[int, ...]]]:
    """The classes whose confusion matrix scores ``names``, and the indices (into them) of the
    classes the means average over: ``(names, None)`` for a list scored on its own, e.g.
    ``(CITYSCAPES16_CLASSES, (0, 1, 2, 6, ...))`` for :data:`CITYSCAPES13_CLASSES`."""
    names = tuple(names)
    full = SCORED_WITHIN.get(names)
    if full is None:
        return names, None
    return full, tuple(full.index(name) for name in names)


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: ``(num_colors, 3) uint8``, label ``i`` -> RGB (bit-interleaved).

    Label 255 (ignore / object boundaries) is (224, 224, 192), as in the dataset's PNGs.
    """
    import numpy as np

    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for label in range(num_colors):
        value, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (r, g, b)
    return palette


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image blended half-and-half with the palette colours of its labels.

    ``(H, W, 3) uint8`` RGB and ``(H, W)`` integer labels -> ``(H, W, 3) uint8``.
    """
    import numpy as np

    colours = voc_palette()[np.asarray(labels).astype(np.int64) % 256]
    blend = (np.asarray(rgb).astype(np.float32) * 0.5 + colours.astype(np.float32) * 0.5).round()
    return blend.astype(np.uint8)


#: Named class lists accepted by :func:`resolve_class_names` (and ``--classes``).
CLASS_LISTS: dict[str, tuple[str, ...]] = {
    "voc": VOC_CLASSES,
    "coco": COCO_CLASSES,
    "cocostuff": COCOSTUFF_CLASSES,
    "cityscapes": CITYSCAPES_CLASSES,
    "cityscapes16": CITYSCAPES16_CLASSES,
    "cityscapes13": CITYSCAPES13_CLASSES,
}


def resolve_class_names(spec: str) -> tuple[str, ...]:
    """A name of :data:`CLASS_LISTS` (``"voc"``, ``"coco"``, ``"cocostuff"``, ``"cityscapes"``,
    ``"cityscapes16"``, ``"cityscapes13"``), or a text file with one class name per line (in
    order)."""
    if spec in CLASS_LISTS:
        return CLASS_LISTS[spec]
    try:
        with open(spec, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as error:
        raise FileNotFoundError(
            f"--classes {spec!r}: not one of {', '.join(CLASS_LISTS)} and not a readable file "
            f"({error.strerror or error})"
        ) from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"--classes {spec}: the file names no classes")
    if "" in lines:  # the names after it would shift by one label value
        raise ValueError(
            f"--classes {spec}: line {lines.index('') + 1} is empty; the list has one class name "
            "per line, line i + 1 naming label value i"
        )
    repeated = sorted({name for name in lines if lines.count(name) > 1})
    if repeated:
        raise ValueError(f"--classes {spec}: {', '.join(repeated)} named more than once")
    return tuple(lines)
