"""The datasets by name, as ``deeplabv2 eval --dataset`` and the training example open them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional, Union

from .classes import CLASS_LISTS
from .coco import COCO2014
from .constants import DATASETS, LABEL_DIR_DATASETS
from .datasets import Cityscapes, COCOStuff, SegmentationFolder
from .driving import CITYSCAPES_CLASS_SETS, GTA5, SYNTHIA
from .paired import PairedDataset
from .voc import VOCSegmentation

__all__ = ["DATASETS", "LABEL_DIR_DATASETS", "open_dataset"]

#: The datasets scored with one of several Cityscapes class sets (``classes=``): their sets.
_CLASS_SETS = {"cityscapes": (19, 16, 13), "gta5": (19, 16, 13), "synthia": (16, 13)}


def _named(names: tuple[str, ...]) -> str:
    """A class list as ``--classes`` names it (its :data:`CLASS_LISTS` name), else its size."""
    known = [key for key, value in CLASS_LISTS.items() if value == names]
    return known[0] if known else f"a list of {len(names)} classes ({', '.join(names[:3])}, ...)"


def _class_set(kind: str, class_names: tuple[str, ...]) -> dict[str, int]:
    """``{"classes": n}`` for the set of ``kind`` that ``class_names`` names ({} for none)."""
    if not class_names:
        return {}
    sets = {CITYSCAPES_CLASS_SETS[n]: n for n in _CLASS_SETS[kind]}
    if class_names not in sets:
        raise ValueError(
            f"the {kind} dataset is scored with the classes "
            f"{', '.join(_named(names) for names in sets)}, not {_named(class_names)} "
            "(--classes / class_names)"
        )
    return {"classes": sets[class_names]}


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
            ``cocostuff10k`` (:class:`~deeplabv2.data.COCOStuff`), ``cityscapes``
            (:class:`~deeplabv2.data.Cityscapes`), ``gta5`` (:class:`~deeplabv2.data.GTA5`),
            ``synthia`` (:class:`~deeplabv2.data.SYNTHIA`).
        root: the dataset's folder.
        split: a split name or a list file.
        class_names: the classes of a ``folder`` dataset; for ``cityscapes``, ``gta5`` and
            ``synthia`` the Cityscapes class set (:data:`~deeplabv2.data.CITYSCAPES_CLASSES`,
            ``CITYSCAPES16_CLASSES`` or ``CITYSCAPES13_CLASSES``; SYNTHIA: 16 or 13; default:
            19, SYNTHIA 16); for the others their own classes, or nothing.
        limit: keep only the first ``limit`` entries.
        label_dir: a folder of label PNGs that replaces the dataset's own labels (pseudo-labels);
            only for :data:`LABEL_DIR_DATASETS`.

    Raises:
        ValueError: an unknown ``kind``, ``label_dir`` for a dataset whose labels are not
            plain index PNGs, or ``class_names`` that are not a class set of the dataset.
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset {kind!r}; known: {', '.join(DATASETS)}")
    if label_dir is not None and kind not in LABEL_DIR_DATASETS:
        raise ValueError(
            "a label folder (pseudo-labels) replaces the labels of "
            f"{', '.join(LABEL_DIR_DATASETS)} only, not of {kind}: put the labels in a "
            "'folder' dataset instead"
        )
    names = tuple(class_names)
    if kind in _CLASS_SETS:
        driving = {"cityscapes": Cityscapes, "gta5": GTA5, "synthia": SYNTHIA}[kind]
        return driving(root, split, limit=limit, **_class_set(kind, names))
    if kind == "folder":
        return SegmentationFolder(root, split, class_names=names, limit=limit, label_dir=label_dir)
    own = {"voc": VOCSegmentation.class_names, "coco": COCO2014.class_names}.get(
        kind, COCOStuff.class_names
    )
    if names and names != own:
        raise ValueError(
            f"the {kind} dataset is scored with its own classes, {_named(own)}, not "
            f"{_named(names)} (--classes / class_names)"
        )
    if kind == "voc":
        return VOCSegmentation(root, split, limit=limit, label_dir=label_dir)
    if kind == "coco":
        return COCO2014(root, split, label_dir=label_dir, limit=limit)
    return COCOStuff(root, split, version=kind[len("cocostuff") :], limit=limit)
