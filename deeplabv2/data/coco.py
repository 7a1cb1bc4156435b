"""MS-COCO 2014 with the 81 classes of weakly supervised segmentation (background + 80 things).

The COCO 2014 setups of IRN-based methods share the images of COCO's own ``train2014`` /
``val2014`` folders, label PNGs of class indices 0..80 (255 = ignore) named after the image,
and list files of image ids; they differ in the names. This dataset reads the common ones:

* images: ``<root>/<split>2014/COCO_<split>2014_<12-digit id>.jpg`` (COCO's own folders) or
  ``<root>/JPEGImages/<12-digit id>.jpg`` (RIB's single folder);
* labels: under ``label_dir`` (default ``<root>/SegmentationClass``; a pseudo-label folder
  for training), or its ``<split>2014/`` subfolder, named ``COCO_<split>2014_<id>.png``,
  ``<12-digit id>.png`` (RIB, IRN-style label folders) or ``<id>.png`` (CLIMS' ground truth);
* lists: ``<root>/<split>14.txt`` (CLIMS' ``mscoco/train14.txt``) or ``<root>/<split>_14.txt``
  or a list file's path, one image per line (a 12-digit id, an integer id or a
  ``COCO_<split>2014_<id>`` name); without a list file, every ``.jpg`` of ``<split>2014/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

from ..errors import DatasetError
from .classes import COCO_CLASSES
from .paired import PairedDataset, read_lines

__all__ = ["COCO2014"]

_NAME = re.compile(r"^(?:COCO_(train|val)2014_)?0*(\d+)$")


class COCO2014(PairedDataset):
    """MS-COCO 2014, 81 classes (:data:`~deeplabv2.data.classes.COCO_CLASSES`), 255 = ignore.

    ``dataset[i] -> (image, label, name)`` as every dataset here; ``name`` is the image's file
    stem (``COCO_val2014_000000000042`` or ``000000000042``).

    Args:
        root: the folder holding ``train2014/`` and ``val2014/`` (or ``JPEGImages/``).
        split: ``"train"`` or ``"val"`` (its list file, else its whole image folder), or a
            list file's path.
        label_dir: the folder of label PNGs (default ``<root>/SegmentationClass``).
        limit: keep only the first ``limit`` entries.

    Raises:
        FileNotFoundError: no such root, list file or image folder.
        DatasetError: a list line that is not an image id, or an image that is not there.
    """

    class_names = COCO_CLASSES
    data_name = "MS-COCO 2014"

    def __init__(
        self,
        root: Union[str, os.PathLike],
        split: str = "val",
        label_dir: Union[str, os.PathLike, None] = None,
        limit: Optional[int] = None,
    ) -> None:
        self.label_dir = Path(
            label_dir if label_dir is not None else Path(root, "SegmentationClass")
        )
        super().__init__(root, split, limit)

    @property
    def split_name(self) -> str:
        """``train`` or ``val`` when the split names one (``val``, ``val14.txt``), else the
        list file's stem."""
        stem = Path(self.split).stem.lower()
        return next((s for s in ("train", "val") if stem.startswith(s)), stem)

    def _items(self, split: str) -> list[tuple[str, Path, Path]]:
        if not self.label_dir.is_dir():
            raise FileNotFoundError(
                f"no label folder {self.label_dir}: pass the folder of label PNGs (label_dir)"
            )
        given = Path(split)
        if given.suffix or len(given.parts) > 1:  # a list file's path
            if not given.is_file():
                raise FileNotFoundError(f"no list file {given} (one COCO image id per line)")
            return [self._item(line, given) for line in read_lines(given)]
        candidates = [self.root / f"{split}14.txt", self.root / f"{split}_14.txt"]
        list_file = next((p for p in candidates if p.is_file()), None)
        if list_file is None:
            folder = self.root / f"{split}2014"
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"no COCO 2014 split {split!r}: expected a list file ({candidates[0]} or "
                    f"{candidates[1]}) or the image folder {folder}"
                )
            lines = [p.stem for p in sorted(folder.glob("*.jpg"))]
        else:
            lines = read_lines(list_file)
        return [self._item(line, list_file) for line in lines]

    def _item(self, line: str, list_file: Optional[Path]) -> tuple[str, Path, Path]:
        """``(name, image, label)`` of one list line."""
        match = _NAME.match(Path(line).stem)
        if match is None:
            raise DatasetError(
                f"{list_file}: {line!r} is not a COCO 2014 image id (12 digits, an integer or "
                "COCO_<split>2014_<id>)"
            )
        folders = [match.group(1)] if match.group(1) else []
        folders += [s for s in ("train", "val") if s not in folders]
        number = int(match.group(2))
        images = [self.root / f"{s}2014" / f"COCO_{s}2014_{number:012d}.jpg" for s in folders]
        images.append(self.root / "JPEGImages" / f"{number:012d}.jpg")
        image = next((p for p in images if p.is_file()), None)
        if image is None:
            raise DatasetError(
                f"{list_file or self.root}: no image for {line!r} (looked for "
                f"{', '.join(str(p) for p in images)})"
            )
        return image.stem, image, self._label(image.stem, number)

    def _label(self, stem: str, number: int) -> Path:
        """The label PNG of an image: the first of the known names that exists."""
        names = [f"{stem}.png", f"{number:012d}.png", f"{number}.png"]
        folders = [self.label_dir]
        if stem.startswith("COCO_"):
            folders.append(self.label_dir / stem.split("_")[1])  # e.g. SegmentationClass/val2014
        paths = [folder / name for folder in folders for name in names]
        found = next((p for p in paths if p.is_file()), None)
        if found is None:
            raise DatasetError(
                f"no label PNG for {stem} (looked for {', '.join(str(p) for p in paths)}); "
                "every listed image needs one (or list only the images that have labels)"
            )
        return found
