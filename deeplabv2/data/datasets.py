"""Segmentation datasets beyond VOC: any image/label folder pair, COCO-Stuff, Cityscapes.

Each gives ``dataset[i] -> (image, label, name)`` like :class:`~deeplabv2.data.VOCSegmentation`
(``(H, W, 3) uint8`` RGB, ``(H, W) int64`` labels with 255 ignored), so ``deeplabv2 eval``,
``evaluate()`` and the training example take any of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DatasetError
from .classes import COCOSTUFF_CLASSES, scored_within
from .driving import cityscapes_ids, class_set, label_table
from .images import read_label
from .paired import IGNORE_INDEX, PairedDataset, read_lines

__all__ = ["COCOStuff", "Cityscapes", "SegmentationFolder"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class SegmentationFolder(PairedDataset):
    """Images and label PNGs in two folders, with a list file of names per split.

    Layout under ``root``::

        images/<name>.<jpg|png|...>
        labels/<name>.png          class indices (palette or grayscale PNG), 255 = ignore
        <split>.txt                one <name> per line (or pass a list file's path as split)

    Label PNGs written by ``deeplabv2 predict`` (indexed PNGs) are valid labels, so predicted
    pseudo-labels train a network directly.

    Args:
        root: the folder holding ``images/`` and ``labels/``.
        split: a list file name under ``root`` (``"train"`` -> ``train.txt``) or a path.
        class_names: the classes, index = label value (default: none known).
        limit: keep only the first ``limit`` entries.
        label_dir: the folder of the label PNGs (default ``<root>/labels``).
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "train",
        class_names: Sequence[str] = (),
        limit: Optional[int] = None,
        label_dir: Union[str, os.PathLike, None] = None,
    ) -> None:
        self.class_names = tuple(class_names)
        self.label_dir = Path(root, "labels") if label_dir is None else Path(label_dir)
        super().__init__(root, split, limit)

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:
        list_file = next(
            (p for p in (Path(split), self.root / f"{split}.txt") if p.is_file()), None
        )
        if list_file is None:
            raise FileNotFoundError(
                f"no split {split!r}: expected {self.root / (split + '.txt')} (one name per line)"
            )
        items = []
        for name in read_lines(list_file):
            image = next(
                (
                    self.root / "images" / f"{name}{suffix}"
                    for suffix in _IMAGE_SUFFIXES
                    if (self.root / "images" / f"{name}{suffix}").is_file()
                ),
                None,
            )
            if image is None:
                raise DatasetError(f"{list_file}: no image for {name!r} in {self.root / 'images'}")
            items.append((name, image, self.label_dir / f"{name}.png"))
        return items


class COCOStuff(PairedDataset):
    """COCO-Stuff 164k or 10k in their released layouts (182 classes, 255 = unlabeled).

    * 164k (``version="164k"``): ``images/<split>2017/*.jpg`` and
      ``annotations/<split>2017/*.png`` (``stuffthingmaps_trainval2017``), labels 0..181 =
      :data:`~deeplabv2.data.COCOSTUFF_CLASSES`, 255 unlabeled; ``split`` is ``train`` or
      ``val``.
    * 10k v1.1 (``version="10k"``): ``images/*.jpg``, ``annotations/*.mat`` (field ``S``) and
      ``imageLists/<split>.txt`` (``train``, ``test``, ``all``); the ``.mat`` labels are 0 =
      unlabeled and 1..182 = the classes, so they are shifted down by one and 0 becomes 255,
      as the PyTorch port does. Reading ``.mat`` files needs SciPy (``pip install scipy``).
    """

    class_names = COCOSTUFF_CLASSES

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "val",
        version: str = "164k",
        limit: Optional[int] = None,
    ) -> None:
        if version not in ("164k", "10k"):
            raise ValueError(f"version must be '164k' or '10k', got {version!r}")
        self.version = version
        self.data_name = f"COCO-Stuff {version}"
        super().__init__(root, split, limit)

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:
        if self.version == "164k":
            images = self.root / "images" / f"{split}2017"
            labels = self.root / "annotations" / f"{split}2017"
            if not images.is_dir():
                raise FileNotFoundError(f"no COCO-Stuff 164k split {split!r}: {images} is missing")
            return [(p.stem, p, labels / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))]
        list_file = self.root / "imageLists" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"no COCO-Stuff 10k split {split!r}: {list_file} is missing")
        return [
            (name, self.root / "images" / f"{name}.jpg", self.root / "annotations" / f"{name}.mat")
            for name in read_lines(list_file)
        ]

    def label(self, path: Path) -> np.ndarray:
        if self.version == "164k":
            return read_label(path)
        try:
            from scipy.io import loadmat
        except ImportError:
            raise ImportError(
                "COCO-Stuff 10k labels are MATLAB .mat files: pip install scipy to read them"
            ) from None
        labels = np.asarray(loadmat(str(path))["S"], dtype=np.int64) - 1
        labels[labels == -1] = IGNORE_INDEX
        return labels


class Cityscapes(PairedDataset):
    """Cityscapes (fine annotations) with one of its class sets, 255 = ignored.

    Layout under ``root``: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (``*_gtFine_labelTrainIds.png``, if
    present, is read instead). ``classes`` picks the class set the labels are mapped to:

    * 19: the benchmark's train ids, :data:`~deeplabv2.data.CITYSCAPES_CLASSES` (GTA5 ->
      Cityscapes);
    * 16: :data:`~deeplabv2.data.CITYSCAPES16_CLASSES`, the classes SYNTHIA shares (ADVENT /
      DADA's ``info16class.json``; terrain, truck and train are ignored);
    * 13: the 16 classes' labels, with the means over 13 of them (``mean_over``: wall, fence
      and pole left out), as the SYNTHIA -> Cityscapes papers score a 16-class network.

    Attributes:
        class_names: the classes of the labels (16 for ``classes=13``).
        mean_over: the indices of the classes the means average over (None: all).
    """

    data_name = "Cityscapes"

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "val",
        classes: int = 19,
        limit: Optional[int] = None,
    ) -> None:
        self.classes = classes
        self.class_names, self.mean_over = scored_within(class_set(classes))
        self._tables = {
            train_ids: label_table(cityscapes_ids(train_ids), classes)
            for train_ids in (False, True)
        }
        super().__init__(root, split, limit)

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise FileNotFoundError(f"no Cityscapes split {split!r}: {images} is missing")
        items = []
        for image in sorted(images.glob("*/*_leftImg8bit.png")):
            name = image.name[: -len("_leftImg8bit.png")]
            folder = self.root / "gtFine" / split / image.parent.name
            train_ids = folder / f"{name}_gtFine_labelTrainIds.png"
            label = train_ids if train_ids.is_file() else folder / f"{name}_gtFine_labelIds.png"
            items.append((name, image, label))
        return items

    def label(self, path: Path) -> np.ndarray:
        table = self._tables[path.name.endswith("_labelTrainIds.png")]
        return table[np.clip(read_label(path), 0, len(table) - 1)]
