"""The datasets by name, as ``deeplabv2 eval --dataset`` and the training example open them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional, Union

from .coco import COCO2014
from .constants import DATASETS, LABEL_DIR_DATASETS
from .datasets import Cityscapes, COCOStuff, SegmentationFolder
from .paired import PairedDataset
from .voc import VOCSegmentation

__all__ = ["DATASETS", "LABEL_DIR_DATASETS", "open_dataset"]


def open_dataset(
    kind: str,
    root: Union[str, os.PathLike],
    split: str,
    *,
    class_names: Sequence[str] = (),
    limit: Optional[int] = None,
    label_dir: Union[str, os.PathLike, None] = None,
) -> PairedDataset:
    """The ``(image, label, name)`` dataset ``kind`` under ``root``.

    Args:
        kind: one of :data:`DATASETS`: ``voc`` (:class:`~deeplabv2.data.VOCSegmentation`),
            ``coco`` (:class:`~deeplabv2.data.COCO2014`, 81 classes), ``folder``
            (:class:`~deeplabv2.data.SegmentationFolder`), ``cocostuff164k``,
            ``cocostuff10k`` (:class:`~deeplabv2.data.COCOStuff`), ``cityscapes``.
        root: the dataset's folder.
        split: a split name or a list file.
        class_names: the classes of a ``folder`` dataset (the others know theirs).
        limit: keep only the first ``limit`` entries.
        label_dir: a folder of label PNGs that replaces the dataset's own labels (pseudo-labels);
            only for :data:`LABEL_DIR_DATASETS`.

    Raises:
        ValueError: an unknown ``kind``, or ``label_dir`` for a dataset whose labels are not
            plain index PNGs.
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset {kind!r}; known: {', '.join(DATASETS)}")
    if label_dir is not None and kind not in LABEL_DIR_DATASETS:
        raise ValueError(
            "a label folder (pseudo-labels) replaces the labels of "
            f"{', '.join(LABEL_DIR_DATASETS)} only, not of {kind}: put the labels in a "
            "'folder' dataset instead"
        )
    if kind == "voc":
        return VOCSegmentation(root, split, limit=limit, label_dir=label_dir)
    if kind == "coco":
        return COCO2014(root, split, label_dir=label_dir, limit=limit)
    if kind == "folder":
        return SegmentationFolder(
            root, split, class_names=class_names, limit=limit, label_dir=label_dir
        )
    if kind.startswith("cocostuff"):
        return COCOStuff(root, split, version=kind[len("cocostuff") :], limit=limit)
    return Cityscapes(root, split, limit=limit)
