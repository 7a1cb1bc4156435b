"""PASCAL VOC-format segmentation datasets (VOC 2012, SBD "trainaug" lists)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from ..errors import DatasetError
from .classes import VOC_CLASSES
from .paired import IGNORE_INDEX, PairedDataset, read_lines

__all__ = ["IGNORE_INDEX", "VOCSegmentation"]


class VOCSegmentation(PairedDataset):
    """A VOC-format dataset: ``dataset[i] -> (image, label, name)``.

    ``image`` is ``(H, W, 3) uint8`` RGB, ``label`` ``(H, W) int64``.

    Layout under ``root``::

        JPEGImages/<name>.jpg
        SegmentationClassAug/<name>.png   (SBD + VOC "trainaug" labels; used when present)
        SegmentationClass/<name>.png      (VOC 2012 labels)
        ImageSets/Segmentation/<split>.txt   one <name> per line

    ``split`` may also be a list file (a path, or ``root/list/<split>.txt`` as in the DeepLab
    release) whose lines are ``/JPEGImages/<name>.jpg /SegmentationClassAug/<name>.png``, paths
    relative to ``root``. Label PNGs hold class indices; 255 marks ignored pixels.

    Args:
        root: the dataset directory (e.g. ``VOCdevkit/VOC2012``).
        split: ``"train"``, ``"val"``, ``"trainaug"``... or a list file.
        limit: keep only the first ``limit`` entries.
        label_dir: a folder of ``<name>.png`` labels that replaces the dataset's own (e.g.
            the pseudo-labels of weakly supervised segmentation); the list file's label
            column is then not used.

    Raises:
        FileNotFoundError: no such root, split or label folder.
        DatasetError: a split that lists no images, or a malformed list file.
    """

    class_names = VOC_CLASSES
    data_name = "VOC 2012"

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "val",
        limit: Optional[int] = None,
        label_dir: Union[str, os.PathLike, None] = None,
    ) -> None:
        self.label_dir = None if label_dir is None else Path(label_dir)
        if self.label_dir is not None and not self.label_dir.is_dir():
            raise FileNotFoundError(f"label_dir {self.label_dir} is not a directory")
        super().__init__(root, split, limit)

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:
        names_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        candidates = [Path(split), self.root / "list" / f"{split}.txt"]
        if names_file.is_file():
            label_dir = self._label_dir()
            items = []
            for name in read_lines(names_file):
                items.append(
                    (name, self.root / "JPEGImages" / f"{name}.jpg", label_dir / f"{name}.png")
                )
            return items
        for list_file in candidates:
            if list_file.is_file():
                items = []
                for line in read_lines(list_file):
                    parts = line.split()
                    if len(parts) != 2:
                        raise DatasetError(
                            f"{list_file}: expected '<image> <label>' per line, got {line!r}"
                        )
                    image, label = (self.root / p.lstrip("/") for p in parts)
                    if self.label_dir is not None:
                        label = self.label_dir / f"{image.stem}.png"
                    items.append((image.stem, image, label))
                return items
        raise FileNotFoundError(
            f"no split {split!r} under {self.root}: expected {names_file} (one name per line) or "
            f"a list file {candidates[1]} ('<image> <label>' per line)"
        )

    def _label_dir(self) -> Path:
        if self.label_dir is not None:
            return self.label_dir
        for name in ("SegmentationClassAug", "SegmentationClass"):
            if (self.root / name).is_dir():
                return self.root / name
        raise FileNotFoundError(
            f"no label directory under {self.root}: expected SegmentationClassAug/ or "
            "SegmentationClass/"
        )
