"""What every segmentation dataset here shares: ``(name, image file, label file)`` items."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DatasetError
from .images import load_image, orientation_hint, read_label

__all__ = ["IGNORE_INDEX", "PairedDataset", "read_lines"]

#: Label value of pixels that are ignored in training and evaluation.
IGNORE_INDEX = 255


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a list file, stripped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class PairedDataset:
    """``dataset[i] -> (image, label, name)``: ``(H, W, 3) uint8`` RGB, ``(H, W) int64``.

    Images are read in their stored pixel grid (no EXIF rotation; MS-COCO 2014 holds JPEGs
    with orientation tags), the grid their label PNGs are made on; a label that fits the
    turned image instead is refused, and the error says so.

    Subclasses fill ``items`` with ``(name, image path, label path)`` in ``_items`` and may
    override :meth:`label` (e.g. to map label values); everything else is shared.

    Attributes:
        class_names: the dataset's classes (index = label value); 255 is ignored.
        data_name: the data set as a weights lineage names it (``"VOC 2012"``), or None when
            unknown (a folder of any images): what the seen-data check of
            :func:`deeplabv2.evaluate.evaluate` compares with the weights' lineage.
        mean_over: the indices of the classes that the scores' class means average over, or
            None for all (Cityscapes' 13-class score averages 13 of the 16 classes' IoUs).
    """

    class_names: tuple[str, ...] = ()
    data_name: Optional[str] = None
    mean_over: Optional[tuple[int, ...]] = None

    def __init__(
        self, root: Union[str, os.PathLike], split: str = "val", limit: Optional[int] = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} is not a directory")
        self.split = split
        self.items: list[tuple[str, Path, Path]] = self._items(split)
        if not self.items:
            raise DatasetError(f"the split {split!r} under {self.root} lists no images")
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            self.items = self.items[:limit]

    @property
    def split_name(self) -> str:
        """The split as a lineage names it: the list file's stem, lower case, without ``_`` and
        ``-`` (``train_aug.txt`` -> ``trainaug``)."""
        return re.sub(r"[_-]", "", Path(self.split).stem.lower())

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:  # pragma: no cover
        raise NotImplementedError

    def label(self, path: Path) -> np.ndarray:
        """The label map of ``path``: ``(H, W) int64`` class indices, 255 = ignore."""
        return read_label(path)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        name, image_path, label_path = self.items[index]
        image = load_image(image_path)
        label = self.label(label_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"{name}: label {label_path} is {label.shape[::-1]} (W, H) but the image is "
                f"{image.shape[1::-1]}" + orientation_hint(image_path, label.shape, "the label")
            )
        return image, label, name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
        )
