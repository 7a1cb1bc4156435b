"""COCO instance annotation files (``instances_train2014.json``, ``instances_val2014.json``)
read and checked before any label is made: :func:`load_instances` refuses a file that would spoil
labels (categories that are not COCO's 80, unknown images, malformed polygons or RLEs), naming
the first problems. :mod:`deeplabv2.data.coco_masks` paints the label maps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .._files import read_bytes
from .classes import COCO_CLASSES

__all__ = ["COCO_CATEGORY_IDS", "LABEL_OF", "CocoImage", "CocoInstances", "load_instances"]

PathLike = Union[str, os.PathLike]

#: COCO's ids of the 80 thing categories, ascending; id ``COCO_CATEGORY_IDS[i]`` is label
#: ``i + 1`` (:data:`~deeplabv2.data.classes.COCO_CLASSES` ``[i + 1]``), as in ReCAM's
#: ``category_map``.
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
)
#: COCO's category id -> its label (1..80)
LABEL_OF = {category: label for label, category in enumerate(COCO_CATEGORY_IDS, start=1)}
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "iscrowd", "segmentation")
#: problems of a file listed before the rest are counted
_SHOWN = 5


@dataclass(frozen=True)
class CocoImage:
    """One entry of the file's ``images``: COCO's ``id``, ``file_name``, ``height``, ``width``."""

    id: int
    file_name: str
    height: int
    width: int

    @property
    def stem(self) -> str:
        """``file_name`` without its suffix: the name of the image's label PNG, ``<stem>.png``."""
        return Path(self.file_name).stem


@dataclass
class CocoInstances:
    """A checked instances file: its ``images`` in file order and each image's annotations
    (``annotations[image.id]``, the file's dicts in file order; absent: none)."""

    path: Path
    images: list[CocoImage]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, image: CocoImage) -> list[dict[str, Any]]:
        """The annotations of ``image``, in file order."""
        return self.annotations.get(image.id, [])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _raise(path: Path, problems: list[str], fix: str) -> None:
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise ValueError(f"{path}: {'; '.join(problems[:_SHOWN])}{more}. {fix}")


def _section(path: Path, data: object, key: str) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(
            f"{path}: no {key!r} list; this is not a COCO instances file (instances_train2014."
            "json / instances_val2014.json from cocodataset.org)"
        )
    return data[key]


def _check_categories(path: Path, categories: list) -> None:
    problems = []
    for entry in categories:
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            problems.append(f"category {entry!r} has no integer 'id'")
        elif entry["id"] not in LABEL_OF:
            problems.append(
                f"category id {entry['id']} ({entry.get('name')!r}) is not one of COCO's 80"
            )
        elif entry.get("name") != COCO_CLASSES[LABEL_OF[entry["id"]]]:
            expected = COCO_CLASSES[LABEL_OF[entry["id"]]]
            problems.append(
                f"category {entry['id']} is {entry.get('name')!r}, COCO's is {expected!r}"
            )
    _raise(path, problems, "The labels are COCO 2014's 80 categories by id; give COCO's own file")


def _image(entry: object) -> Union[CocoImage, str]:
    """The image an ``images`` entry describes, or what is wrong with it."""
    if not isinstance(entry, dict):
        return f"image entry {entry!r} is not an object"
    name = entry.get("file_name")
    if not _is_int(entry.get("id")) or not isinstance(name, str):
        return f"image entry {entry!r} lacks an integer 'id' or a 'file_name'"
    if name != os.path.basename(name) or name in ("", ".", "..") or "\\" in name:
        return f"image {entry['id']}: file_name {name!r} is not a plain file name"
    height, width = entry.get("height"), entry.get("width")
    if not all(type(value) is int and value > 0 for value in (height, width)):
        return (
            f"image {entry['id']} ({name}): height {height!r} and width {width!r} must be "
            "positive integers"
        )
    return CocoImage(entry["id"], name, entry["height"], entry["width"])


def _check_images(path: Path, entries: list) -> list[CocoImage]:
    images: list[CocoImage] = []
    problems: list[str] = []
    ids: set[int] = set()
    stems: dict[str, str] = {}
    for entry in entries:
        image = _image(entry)
        if isinstance(image, str):
            problems.append(image)
        elif image.id in ids:
            problems.append(f"image id {image.id} is listed twice")
        elif image.stem in stems:
            problems.append(
                f"images {stems[image.stem]} and {image.file_name} would both get the label "
                f"{image.stem}.png"
            )
        else:
            ids.add(image.id)
            stems[image.stem] = image.file_name
            images.append(image)
    _raise(path, problems, "Give COCO's own file, or fix these entries")
    return images


def _segmentation_problem(segmentation: object, image: CocoImage) -> Optional[str]:
    """What is wrong with a (non-crowd) annotation's ``segmentation``, if anything: polygons
    (lists of at least 3 points, ``[x1, y1, x2, y2, ...]``) or an RLE of the image's size."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "has no polygon"
        for polygon in segmentation:
            if not isinstance(polygon, list):
                return f"has a polygon that is a {type(polygon).__name__}, not a list"
            if len(polygon) < 6 or len(polygon) % 2:
                return f"has a polygon of {len(polygon)} coordinates (an even number, at least 6)"
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [image.height, image.width]:
            return f"is an RLE of size {size!r}, the image is [{image.height}, {image.width}]"
        if not isinstance(counts, (str, list)):
            return "is an RLE without 'counts' (a list or a string)"
        if isinstance(counts, list) and not all(_is_int(c) and c >= 0 for c in counts):
            return "is an RLE whose counts are not non-negative integers"
        return None
    return f"is a {type(segmentation).__name__}, neither polygons nor an RLE"


def _annotation_problem(entry: object, images: dict[int, CocoImage]) -> Optional[str]:
    if not isinstance(entry, dict):
        return f"annotation {entry!r} is not an object"
    missing = [key for key in _ANNOTATION_KEYS if key not in entry]
    if missing:
        return f"annotation {entry.get('id', entry)!r} has no {', '.join(missing)}"
    name = f"annotation {entry['id']!r}"
    if not _is_int(entry["image_id"]) or entry["image_id"] not in images:
        return f"{name} is of image {entry['image_id']!r}, which 'images' does not list"
    if not _is_int(entry["category_id"]) or entry["category_id"] not in LABEL_OF:
        return f"{name} has category {entry['category_id']!r}, not one of COCO's 80"
    if entry["iscrowd"] not in (0, 1):
        return f"{name} has iscrowd {entry['iscrowd']!r} (0 or 1)"
    if entry["iscrowd"] == 0:
        problem = _segmentation_problem(entry["segmentation"], images[entry["image_id"]])
        if problem is not None:
            return f"{name} (image {entry['image_id']}): its segmentation {problem}"
    return None


def load_instances(path: PathLike) -> CocoInstances:
    """Read and check a COCO instances file (``instances_train2014.json``).

    Everything that would spoil labels is refused here, before any is made: entries without
    the keys the labels need, images listed twice or whose labels would share a name, file
    names with folders, categories that are not COCO's 80 (by id and name), annotations of
    unlisted images or unknown categories, and (of the instances that are painted, not the
    crowds) polygons of fewer than 3 points or an odd count, and RLEs of another size.

    Raises:
        FileNotFoundError / OSError: no such file, or unreadable.
        ValueError: not JSON, or not a COCO instances file; the first problems are named.
    """
    path = Path(path)
    try:
        data = json.loads(read_bytes(path, "COCO instances file"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not JSON ({error}); give COCO's instances_<split>2014.json"
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 JSON file ({error})") from None
    categories = _section(path, data, "categories")
    entries = _section(path, data, "images")
    annotations = _section(path, data, "annotations")
    _check_categories(path, categories)
    images = _check_images(path, entries)
    by_id = {image.id: image for image in images}
    grouped: dict[int, list[dict[str, Any]]] = {}
    problems = []
    for entry in annotations:
        problem = _annotation_problem(entry, by_id)
        if problem is not None:
            problems.append(problem)
        else:
            grouped.setdefault(entry["image_id"], []).append(entry)
    _raise(path, problems, "Give COCO's own file, or fix these annotations")
    return CocoInstances(path, images, grouped)
