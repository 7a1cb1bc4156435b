"""Driving scenes for domain adaptation: the synthetic GTA5 and SYNTHIA (RAND_CITYSCAPES), and
the Cityscapes class sets they are scored with (19, 16 and 13 classes).

The label mappings are those of the UDA papers' code, AdaptSegNet (wasidennis/AdaptSegNet) and
ADVENT / DADA (valeoai/ADVENT, valeoai/DADA); each table names the file it was checked against.
Every dataset gives ``dataset[i] -> (image, label, name)`` as the other datasets do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DatasetError
from .classes import (
    CITYSCAPES13_CLASSES,
    CITYSCAPES16_CLASSES,
    CITYSCAPES_CLASSES,
    scored_within,
)
from .images import read_label, read_png16_channel
from .paired import IGNORE_INDEX, PairedDataset, read_lines

__all__ = [
    "CITYSCAPES_CLASS_SETS",
    "CITYSCAPES_LABEL_IDS",
    "GTA5",
    "SYNTHIA",
    "SYNTHIA_IDS",
    "cityscapes_ids",
    "class_set",
    "label_table",
]

#: ``classes=`` of the driving datasets -> the class names; 13 is scored within the 16
#: (:data:`~deeplabv2.data.classes.SCORED_WITHIN`).
CITYSCAPES_CLASS_SETS: dict[int, tuple[str, ...]] = {
    19: CITYSCAPES_CLASSES,
    16: CITYSCAPES16_CLASSES,
    13: CITYSCAPES13_CLASSES,
}

#: Cityscapes label id -> train id of :data:`CITYSCAPES_CLASSES` (cityscapesScripts'
#: ``labels.py``); every other id is ignored. GTA5's labels hold the same ids: AdaptSegNet's
#: ``dataset/gta5_dataset.py`` (f80d115a443a227568213a6de40c13fa91c270b9) and ADVENT's
#: ``advent/dataset/gta5.py`` (7d6f78db5e90980b262243fa4a78f0092b209b97) map them with this
#: table.
CITYSCAPES_LABEL_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

#: SYNTHIA class id (the first channel of ``GT/LABELS``) -> the Cityscapes class it is, for the
#: 16 classes the two share (SYNTHIA's README; DADA's ``dada/dataset/synthia.py`` at
#: 9d0f015bdad3e561e42016b907777816a9853234 maps them to the 16 train ids in this order).
#: Void (0), parking slot (13), road work (14), lane marking (22) and the ids of classes absent
#: from SYNTHIA's images (terrain 16, truck 18, train 20) are ignored.
SYNTHIA_IDS: dict[int, str] = {
    3: "road", 4: "sidewalk", 2: "building", 21: "wall", 5: "fence", 7: "pole",
    15: "traffic light", 9: "traffic sign", 6: "vegetation", 1: "sky", 10: "person",
    17: "rider", 8: "car", 19: "bus", 12: "motorcycle", 11: "bicycle",
}  # fmt: skip


def class_set(classes: int, allowed: tuple[int, ...] = (19, 16, 13)) -> tuple[str, ...]:
    """The class names of ``classes`` (19, 16 or 13; ``allowed`` those the dataset has)."""
    if classes not in allowed:
        raise ValueError(
            f"classes={classes!r}: this dataset is scored with "
            f"{', '.join(map(str, allowed[:-1]))} or {allowed[-1]} Cityscapes classes"
        )
    return CITYSCAPES_CLASS_SETS[classes]


def label_table(ids: dict[int, str], classes: int) -> np.ndarray:
    """A ``(65536,) int64`` lookup table: a dataset's label value -> the index of its class in
    the label set of ``classes`` (13 labels the 16 classes: it is scored within them), every
    other value -> 255. ``ids``: label value -> class name."""
    names, _ = scored_within(CITYSCAPES_CLASS_SETS[classes])
    table = np.full(1 << 16, IGNORE_INDEX, dtype=np.int64)
    for value, name in ids.items():
        if name in names:
            table[value] = names.index(name)
    return table


def cityscapes_ids(train_ids: bool = False) -> dict[int, str]:
    """Cityscapes' label ids (or, with ``train_ids``, its train ids) -> class name."""
    if train_ids:
        return dict(enumerate(CITYSCAPES_CLASSES))
    return {label_id: CITYSCAPES_CLASSES[train] for label_id, train in CITYSCAPES_LABEL_IDS.items()}


class _Synthetic(PairedDataset):
    """Images and labels of the same name in two folders; a split is a list file of names
    (``<split>.txt`` under ``root``, or a path) or ``"all"``, every image of the folder.

    Subclasses set the folders and the label values' classes."""

    image_dir = "images"
    label_dir = "labels"
    data_name: Optional[str] = None
    sets: tuple[int, ...] = (19, 16, 13)

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "all",
        classes: int = 19,
        limit: Optional[int] = None,
    ) -> None:
        self.classes = classes
        self.class_names, self.mean_over = scored_within(class_set(classes, self.sets))
        self._table = label_table(self.label_ids(), classes)
        super().__init__(root, split, limit)

    def label_ids(self) -> dict[int, str]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:
        images, labels = self.root / self.image_dir, self.root / self.label_dir
        for folder in (images, labels):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"no {self.data_name} {folder.relative_to(self.root)}/ folder under "
                    f"{self.root}: expected {self.image_dir}/<name>.png and "
                    f"{self.label_dir}/<name>.png"
                )
        if split == "all":
            names = [path.stem for path in sorted(images.glob("*.png"))]
        else:
            names = self._listed(split)
        missing = [name for name in names if not (images / f"{name}.png").is_file()]
        if missing:
            raise DatasetError(
                f"{len(missing)} listed image(s) missing from {images}, e.g. {missing[0]}.png"
            )
        return [(name, images / f"{name}.png", labels / f"{name}.png") for name in names]

    def _listed(self, split: str) -> list[str]:
        """The names of a list file (``00001.png`` or ``00001``, as the papers' lists)."""
        list_file = next(
            (p for p in (Path(split), self.root / f"{split}.txt") if p.is_file()), None
        )
        if list_file is None:
            raise FileNotFoundError(
                f"no {self.data_name} split {split!r}: expected {self.root / (split + '.txt')} "
                "(one image name per line), or split='all' for every image"
            )
        return [name[: -len(".png")] if name.endswith(".png") else name
                for name in read_lines(list_file)]  # fmt: skip

    def map_labels(self, values: np.ndarray) -> np.ndarray:
        """The dataset's label values -> class indices of the class set, others 255."""
        return self._table[np.clip(values, 0, len(self._table) - 1)]


class GTA5(_Synthetic):
    """GTA5 (Richter et al., "Playing for Data"): 24,966 frames of a game, labelled with
    Cityscapes' label ids, the source domain of GTA5 -> Cityscapes.

    Layout under ``root``: ``images/<name>.png`` and ``labels/<name>.png`` (8-bit palette PNGs
    of Cityscapes label ids, mapped as :class:`~deeplabv2.data.Cityscapes` maps them: the 19
    train ids, or the 16 / 13 classes' indices, every other id 255).

    The papers train on every frame: AdaptSegNet's ``dataset/gta5_list/train.txt`` and ADVENT's
    ``advent/dataset/gta5_list/all.txt`` both list all 24,966 names (``00001.png`` ...), so
    ``split="all"`` (the default) is every image of ``images/``; another split is a list file:
    ``<split>.txt`` under ``root`` or a path, one name per line, with or without ``.png``.

    Args:
        root: the folder holding ``images/`` and ``labels/``.
        split: ``"all"``, a list file's name under ``root`` or its path.
        classes: the Cityscapes class set: 19 (the benchmark's), 16 or 13.
        limit: keep only the first ``limit`` entries.
    """

    data_name = "GTA5"

    def label_ids(self) -> dict[int, str]:
        return cityscapes_ids()

    def label(self, path: Path) -> np.ndarray:
        return self.map_labels(read_label(path))


class SYNTHIA(_Synthetic):
    """SYNTHIA-RAND-CITYSCAPES (Ros et al., CVPR 2016): 9,400 rendered frames, the source
    domain of SYNTHIA -> Cityscapes, scored with 16 classes (or 13 of them).

    Layout under ``root`` (the released one): ``RGB/<name>.png`` and ``GT/LABELS/<name>.png``,
    16-bit three-channel PNGs whose first channel is the class id (the second the instance).
    They are read with all 16 bits (:func:`~deeplabv2.data.images.read_png16_channel`), as the
    papers' loaders do (imageio's ``PNG-FI`` format and ``[:, :, 0]``); Pillow alone would keep
    only each sample's high byte. Class ids map to the 16 classes as
    :data:`SYNTHIA_IDS` says; ``classes=13`` labels the same 16 classes and averages over 13
    (``mean_over``), as the papers score them.

    Splits as :class:`GTA5`: ``"all"`` (the papers train on all 9,400 frames) or a list file.

    Args:
        root: the folder holding ``RGB/`` and ``GT/LABELS/``.
        split: ``"all"``, a list file's name under ``root`` or its path.
        classes: 16 or 13.
        limit: keep only the first ``limit`` entries.
    """

    image_dir = "RGB"
    label_dir = "GT/LABELS"
    data_name = "SYNTHIA"
    sets = (16, 13)

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "all",
        classes: int = 16,
        limit: Optional[int] = None,
    ) -> None:
        super().__init__(root, split, classes, limit)

    def label_ids(self) -> dict[int, str]:
        return SYNTHIA_IDS

    def label(self, path: Path) -> np.ndarray:
        return self.map_labels(read_png16_channel(path, channel=0))
